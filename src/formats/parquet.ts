import { FILE_INDEX_COLUMN, readOptionsSql, ROW_NUMBER_COLUMN, sqlString, type FormatReader, type GroupReader } from './types.ts';

/** Parquet: DuckDB's built-in reader; `file_row_number` is exact even when DuckDB reads row groups in parallel. */
export const readParquet: FormatReader = (file, { readOptions }) => ({
  sql: `(SELECT file_row_number + 1 AS ${ROW_NUMBER_COLUMN}, * EXCLUDE (file_row_number) FROM read_parquet(${sqlString(file.path)}, file_row_number = true${readOptionsSql(readOptions)}))`,
  rowNumberColumn: ROW_NUMBER_COLUMN,
  columnar: true,
});

/**
 * Several parquet files of one schema in one scan, for a group import: DuckDB reads the row groups
 * of all of them in parallel; `file_index` (a virtual column) tells each row's file.
 */
export const readParquetFiles: GroupReader = (files, { readOptions }) => ({
  sql: `(SELECT file_row_number + 1 AS ${ROW_NUMBER_COLUMN}, file_index AS ${FILE_INDEX_COLUMN}, * EXCLUDE (file_row_number)
         FROM read_parquet([${files.map((f) => sqlString(f.path)).join(', ')}], file_row_number = true${readOptionsSql(readOptions)}))`,
  rowNumberColumn: ROW_NUMBER_COLUMN,
  fileIndexColumn: FILE_INDEX_COLUMN,
  columnar: true,
});
