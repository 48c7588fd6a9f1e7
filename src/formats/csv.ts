import { readOptionsSql, ROW_NUMBER_COLUMN, sqlString, type FormatReader } from './types.ts';

/**
 * CSV with a header row, plain or gzip (by the `.gz` name). Types are sniffed by DuckDB unless read
 * options say otherwise; the row number counts data rows from 1, in file order (DuckDB keeps
 * insertion order by default).
 */
export const readCsv: FormatReader = (file, { readOptions }) => ({
  sql: `(SELECT row_number() OVER () AS ${ROW_NUMBER_COLUMN}, * FROM read_csv(${sqlString(file.path)}${readOptionsSql({ header: true, auto_detect: true, ...readOptions })}))`,
  rowNumberColumn: ROW_NUMBER_COLUMN,
});
