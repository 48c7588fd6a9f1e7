import { orderedRelation, readOptionsSql, sqlString, type FormatReader } from './types.ts';

/**
 * CSV with a header row, plain or gzip (by the `.gz` name). Types are sniffed by DuckDB unless read
 * options say otherwise; the row number counts data rows from 1, in file order (DuckDB keeps
 * insertion order by default, also when it reads the file in parallel).
 */
export const readCsv: FormatReader = (file, { readOptions }) =>
  orderedRelation(`SELECT * FROM read_csv(${sqlString(file.path)}${readOptionsSql({ header: true, auto_detect: true, ...readOptions })})`);
