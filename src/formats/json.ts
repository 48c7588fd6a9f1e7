import { orderedRelation, readOptionsSql, sqlString, type FormatReader } from './types.ts';

/**
 * How deep DuckDB infers nested types; deeper values stay JSON. Unbounded, a 60 KB document nested
 * 10,000 levels took DuckDB half a minute to type (and held the read that long); 64 takes 0.2 s
 * and is far deeper than any real record. `readOptions.maximum_depth` overrides it.
 */
const MAXIMUM_DEPTH = 64;

/** JSON: a top-level array of objects or newline-delimited objects, plain or gzip; DuckDB tells which. */
export const readJson: FormatReader = (file, { readOptions }) =>
  orderedRelation(`SELECT * FROM read_json(${sqlString(file.path)}${readOptionsSql({ format: 'auto', maximum_depth: MAXIMUM_DEPTH, ...readOptions })})`);
