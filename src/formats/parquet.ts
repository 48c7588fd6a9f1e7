import { FILE_INDEX_COLUMN, readOptionsSql, ROW_NUMBER_COLUMN, sqlString, type FormatReader, type GroupReader, type ReadOptions } from './types.ts';

/** DuckDB's parquet scan of `files` (a path or a list literal) with the 1-based row number in each file; `extra` adds columns. */
const scan = (files: string, readOptions: ReadOptions | undefined, extra = '') =>
  `(SELECT file_row_number + 1 AS ${ROW_NUMBER_COLUMN}, ${extra}* EXCLUDE (file_row_number) FROM read_parquet(${files}, file_row_number = true${readOptionsSql(readOptions)}))`;

/** Parquet: DuckDB's built-in reader; `file_row_number` is exact even when DuckDB reads row groups in parallel. */
export const readParquet: FormatReader = (file, { readOptions }) => ({
  sql: scan(sqlString(file.path), readOptions),
  rowNumberColumn: ROW_NUMBER_COLUMN,
  columnar: true,
});

/**
 * Several parquet files of one schema in one scan, for a group import: DuckDB reads the row groups
 * of all of them in parallel; `file_index` (a virtual column) tells each row's file.
 */
export const readParquetFiles: GroupReader = (files, { readOptions }) => ({
  sql: scan(`[${files.map((f) => sqlString(f.path)).join(', ')}]`, readOptions, `file_index AS ${FILE_INDEX_COLUMN}, `),
  rowNumberColumn: ROW_NUMBER_COLUMN,
  fileIndexColumn: FILE_INDEX_COLUMN,
  columnar: true,
});
