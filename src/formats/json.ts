import { orderedRelation, readOptionsSql, sqlString, type FormatReader } from './types.ts';

/** JSON: a top-level array of objects or newline-delimited objects, plain or gzip; DuckDB tells which. */
export const readJson: FormatReader = (file, { readOptions }) =>
  orderedRelation(`SELECT * FROM read_json(${sqlString(file.path)}${readOptionsSql({ format: 'auto', ...readOptions })})`);
