import { ImporterError } from '../errors.ts';
import { unreadableError } from './errors.ts';
import { FILE_INDEX_COLUMN, readOptionsSql, ROW_NUMBER_COLUMN, sqlString, type FormatReader, type GroupReader, type LocalFile, type ReadOptions } from './types.ts';

/** DuckDB's parquet scan of `files` (a path or a list literal) with the 1-based row number in each file; `extra` adds columns. */
const scan = (files: string, readOptions: ReadOptions | undefined, extra = '') =>
  `(SELECT file_row_number + 1 AS ${ROW_NUMBER_COLUMN}, ${extra}* EXCLUDE (file_row_number) FROM read_parquet(${files}, file_row_number = true${readOptionsSql(readOptions)}))`;

/**
 * The deepest nesting of columns (struct in struct, lists) a parquet file may have. DuckDB 1.5.6 keeps
 * a column's nesting level in one byte: reading a column nested deeper fails with an INTERNAL error
 * that invalidates the whole database (the store). Shallower ones are left to the import: an unmapped
 * deep column is never read, and a mapped one meets DuckDB's expression depth limit.
 */
export const MAX_PARQUET_DEPTH = 255;

/**
 * Parquet: DuckDB's built-in reader; `file_row_number` is exact even when DuckDB reads row groups in
 * parallel. With `run` (the private DuckDB), the file's schema is looked at first: a footer DuckDB
 * cannot read, or columns nested too deep, fail here, before the import waits for the store's turn.
 */
export const readParquet: FormatReader = async (file, { readOptions, run }) => {
  if (run) await checkParquetSchema(file, run);
  return { sql: scan(sqlString(file.path), readOptions), rowNumberColumn: ROW_NUMBER_COLUMN, columnar: true };
};

/** Refuses a parquet file whose columns nest deeper than MAX_PARQUET_DEPTH (see there), from its footer alone. */
async function checkParquetSchema(file: LocalFile, run: (sql: string) => Promise<unknown[]>): Promise<void> {
  let rows: Array<{ num_children: unknown }>;
  try {
    rows = (await run(`SELECT num_children FROM parquet_schema(${sqlString(file.path)})`)) as Array<{ num_children: unknown }>;
  } catch (err) {
    throw unreadableError(file, err);
  }
  const depth = nestingDepth(rows.map((r) => Number(r.num_children ?? 0)));
  if (depth > MAX_PARQUET_DEPTH) {
    throw new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${file.key}: cannot be read: its columns are nested ${depth} levels deep; DuckDB reads at most ${MAX_PARQUET_DEPTH}`, {
      location: { file: file.key },
      permanent: true,
    });
  }
}

/** The depth of a schema tree given depth-first as each element's number of children (the root first, at depth 0). */
export function nestingDepth(children: number[]): number {
  let deepest = 0;
  // The children still to come of each open group, outermost first.
  const open: number[] = [];
  for (const n of children) {
    deepest = Math.max(deepest, open.length);
    if (n > 0) {
      open.push(n);
      continue;
    }
    // A leaf ends itself, and every group it was the last child of.
    while (open.length && --open[open.length - 1] === 0) open.pop();
  }
  return deepest;
}

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
