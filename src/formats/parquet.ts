import { readOptionsSql, ROW_NUMBER_COLUMN, sqlString, type FormatReader } from './types.ts';

/** Parquet: DuckDB's built-in reader; `file_row_number` is exact even when DuckDB reads row groups in parallel. */
export const readParquet: FormatReader = (file, { readOptions }) => ({
  sql: `(SELECT file_row_number + 1 AS ${ROW_NUMBER_COLUMN}, * EXCLUDE (file_row_number) FROM read_parquet(${sqlString(file.path)}, file_row_number = true${readOptionsSql(readOptions)}))`,
  rowNumberColumn: ROW_NUMBER_COLUMN,
  columnar: true,
});
