import { readOptionsSql, ROW_NUMBER_COLUMN, sqlString, type FormatReader } from './types.ts';

/** JSON: a top-level array of objects or newline-delimited objects, plain or gzip; DuckDB tells which. */
export const readJson: FormatReader = (file, { readOptions }) => ({
  sql: `(SELECT row_number() OVER () AS ${ROW_NUMBER_COLUMN}, * FROM read_json(${sqlString(file.path)}${readOptionsSql({ format: 'auto', ...readOptions })}))`,
  rowNumberColumn: ROW_NUMBER_COLUMN,
});
