import { sqlString, type FormatReader } from './types.ts';

/**
 * CSV with a header row, plain or gzip (by the `.gz` name). Types are sniffed by DuckDB; the row
 * number counts data rows from 1, in file order (DuckDB keeps insertion order by default).
 */
export const readCsv: FormatReader = (file) => ({
  sql: `(SELECT row_number() OVER () AS __row, * FROM read_csv(${sqlString(file.path)}, header = true, auto_detect = true))`,
  rowNumberColumn: '__row',
});
