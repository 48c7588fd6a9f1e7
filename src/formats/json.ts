import { sqlString, type FormatReader } from './types.ts';

/** JSON: a top-level array of objects or newline-delimited objects, plain or gzip; DuckDB tells which. */
export const readJson: FormatReader = (file) => ({
  sql: `(SELECT row_number() OVER () AS __row, * FROM read_json(${sqlString(file.path)}, format = 'auto'))`,
  rowNumberColumn: '__row',
});
