import { sqlString, type FormatReader } from './types.ts';

/** Parquet: DuckDB's built-in reader; `file_row_number` is exact even when DuckDB reads row groups in parallel. */
export const readParquet: FormatReader = (file) => ({
  sql: `(SELECT file_row_number + 1 AS __row, * EXCLUDE (file_row_number) FROM read_parquet(${sqlString(file.path)}, file_row_number = true))`,
  rowNumberColumn: '__row',
});
