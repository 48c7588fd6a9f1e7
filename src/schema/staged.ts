import type { JobConfig } from '../config/index.ts';
import { ErrorCodes } from '../errors.ts';
import { ROW_NUMBER_COLUMN, sqlIdent, sqlString, unreadableError, type LocalFile, type SourceRelation } from '../formats/index.ts';
import type { FileColumn, MappingPlan } from './mapping.ts';
import { checkSelect } from './select.ts';

import type { RunQuery } from '../engine/index.ts';

export type { RunQuery };

/** Row counts of a staged file. */
export interface StageStats {
  rowsRead: number;
  rowsValid: number;
  rowsRejected: number;
  rejectedByCode: Record<string, number>;
}

/**
 * The first step of an import, shared by the store and the dry run: the job's `select` is checked
 * and the file's columns read (a file DuckDB cannot read fails naming its key). `planMapping` on
 * these columns is the next step.
 */
export async function describeFile(run: RunQuery, job: JobConfig, source: SourceRelation, file: LocalFile): Promise<FileColumn[]> {
  await checkSelect(run, job);
  const described = await run(`DESCRIBE SELECT * FROM ${source.sql}`).catch((err) => {
    throw unreadableError(file, err);
  });
  return described.map((r) => ({ name: String(r.column_name), type: String(r.column_type) }));
}

/** A table made in a transaction numbers its rows from a large base: the first row's ID, as text (a BIGINT). */
const FIRST_ROW_ID = 'CAST(coalesce(min(rowid), 0) AS VARCHAR)';

/**
 * Creates `target` (`TABLE name`, `TEMP TABLE name`) from `selectSql`, a read of `file`, its rows in
 * file order: row IDs follow insertion order only while DuckDB keeps it (the default; bulk inserts
 * turn it off for their statement). A file DuckDB cannot read fails naming its key.
 */
async function createInFileOrder(run: RunQuery, target: string, selectSql: string, file: LocalFile): Promise<void> {
  await run('SET SESSION preserve_insertion_order = true');
  await run(`CREATE OR REPLACE ${target} AS ${selectSql}`).catch((err) => {
    throw unreadableError(file, err);
  });
}

/**
 * Reads a file whose row numbers would be a window over one scan (see `SourceRelation.ordered`)
 * into the table `table` (a temp table unless `temp` is false: a table other connections see) in
 * parallel, keeping file order, and returns the relation over that
 * table numbered by its row IDs: columnar, so an import reads it like parquet (twice, or loads it
 * first) instead of staging every mapped column from a scan on one thread. Other relations are
 * returned as they are. A file DuckDB cannot read fails naming its key.
 */
export async function materialiseSource(run: RunQuery, table: string, source: SourceRelation, file: LocalFile, { temp = true } = {}): Promise<SourceRelation> {
  if (!source.ordered) return source;
  await createInFileOrder(run, `${temp ? 'TEMP ' : ''}TABLE ${table}`, source.ordered.scanSql, file);
  // A data column named rowid would hide the row IDs: such a file keeps its numbering window.
  if ((await run(`DESCRIBE ${table}`)).some((c) => String(c.column_name).toLowerCase() === 'rowid')) return source;
  const [{ first }] = await run(`SELECT ${FIRST_ROW_ID} AS first FROM ${table}`);
  return source.ordered.over(`(SELECT rowid - ${BigInt(String(first))} + 1 AS ${ROW_NUMBER_COLUMN}, * FROM ${table})`);
}

/**
 * The one ordered read of an ordered file (CSV, JSON) that is clean: the hash of each row's unique
 * key, in file order, into the table `table` of the reader's space. It is narrow (DuckDB converts
 * only the key and checked columns) so it runs on both threads, where an ordered read of every
 * column runs on one under the memory limit (DuckDB's ordered insert holds rows back within a
 * quarter of it). The rows are then read once more, in parallel and in any order, straight into
 * the store, each numbered by where its key hash stands (`keyedRowsSql`): a copy of every row
 * (`materialiseSource`) is not written. That holds only while a hash names one row, so a file with
 * a rejected row or a key hash twice (a repeated ID, or a 64-bit collision) gets undefined and no
 * table: it is materialised and staged as before. `unnumbered` is the file's relation from
 * `unnumberedSource`, `columns` its columns, and `plan` the job's mapping over it.
 */
export async function keySource(run: RunQuery, table: string, unnumbered: SourceRelation, columns: FileColumn[], plan: MappingPlan, file: LocalFile): Promise<SourceRelation | undefined> {
  await createInFileOrder(run, `TABLE ${table}`, `SELECT hash(${plan.uniqueKey.join(', ')}) AS h, reject_code IS NULL AS valid FROM (${plan.rowsSql})`, file);
  const [k] = await run(`SELECT count(*) AS n, count(*) - count(DISTINCT h) AS repeats, count(*) FILTER (WHERE NOT valid) AS invalid,
    ${FIRST_ROW_ID} AS first FROM ${table}`);
  if (Number(k.repeats) > 0 || Number(k.invalid) > 0) {
    await run(`DROP TABLE ${table}`);
    return undefined;
  }
  return { ...unnumbered, keyed: { table, firstRowId: BigInt(String(k.first)), rows: Number(k.n), columns } };
}

/**
 * An ordered file's relation read in parallel, in any order, its row numbers NULL (what `keySource`
 * reads and a keyed import loads), keeping `ordered` for a materialised read. Undefined for other
 * relations, and when a job's `select` draws random values (the reads would differ).
 */
export function unnumberedSource(source: SourceRelation): SourceRelation | undefined {
  if (!source.ordered) return undefined;
  const unnumbered = source.ordered.over(`(SELECT NULL::BIGINT AS ${ROW_NUMBER_COLUMN}, * FROM (${source.ordered.scanSql}))`);
  return unnumbered.columnar ? { ...unnumbered, columnar: false, ordered: source.ordered } : undefined;
}

/** A keyed file's mapped rows (`plan` over its relation), each numbered by where its key hash stands in the file. */
export function keyedRowsSql(plan: MappingPlan, keyed: NonNullable<SourceRelation['keyed']>): string {
  return `SELECT r.* REPLACE (k.rowid - ${keyed.firstRowId} + 1 AS source_row) FROM (${plan.rowsSql}) r
    JOIN ${keyed.table} k ON hash(${plan.uniqueKey.map((c) => `r.${c}`).join(', ')}) = k.h`;
}

/** Columns a keys-only stage keeps: enough to count, de-duplicate, find overlaps and skip rejected rows. */
const KEY_STAGE_COLUMNS = ['source_row', 'model_version', 'prediction_id', 'has_actual', 'reject_code', 'reject_column'];

/**
 * Reads the file through the plan into a temp table and marks duplicate IDs; a file DuckDB cannot
 * read fails naming its key. With `keysOnly` only the key and verdict columns are kept: for
 * columnar files, whose row numbers are physical, the load then reads the rows straight from the
 * file again (only the columns it needs), instead of materialising every column twice.
 */
export async function stageFile(run: RunQuery, stage: string, plan: MappingPlan, file: LocalFile, options: { keysOnly?: boolean } = {}): Promise<StageStats> {
  const columns = options.keysOnly ? KEY_STAGE_COLUMNS.join(', ') : '*';
  await run(`CREATE OR REPLACE TEMP TABLE ${stage} AS SELECT ${columns} FROM (${plan.rowsSql})`).catch((err) => {
    throw unreadableError(file, err);
  });
  await markDuplicates(run, stage, plan);
  return statsOf(await run(`SELECT reject_code, count(*) AS n FROM ${stage} GROUP BY ALL`));
}

/**
 * `stageFile` with `keysOnly` for several columnar files read as one relation (a group import,
 * see `GroupReader`): one stage from one parallel scan, each row with its file's index, duplicates
 * looked for within each file. Returns each file's counts, in the relation's file order.
 */
export async function stageFilesTogether(run: RunQuery, stage: string, plan: MappingPlan, files: LocalFile[]): Promise<StageStats[]> {
  await run(`CREATE OR REPLACE TEMP TABLE ${stage} AS SELECT file_index, ${KEY_STAGE_COLUMNS.join(', ')} FROM (${plan.rowsSql})`).catch((err) => {
    throw unreadableError({ path: files[0].path, key: files.map((f) => f.key).join(', ') }, err);
  });
  await markDuplicates(run, stage, plan, ['file_index']);
  const counts = await run(`SELECT file_index, reject_code, count(*) AS n FROM ${stage} GROUP BY ALL`);
  return files.map((_, i) => statsOf(counts.filter((c) => Number(c.file_index) === i)));
}

/**
 * An aggregate: how many rows repeat a key, counted by key hash. Equal keys have equal hashes, so 0
 * proves no key repeats; more than 0 is a repeat or a 64-bit collision, so whoever acts on it does
 * the exact work next. Counting 8-byte hashes instead of grouping the 36-character IDs themselves
 * keeps the count in memory: at 5M rows under the default memory_limit the grouped strings spilled
 * (3–4.6 s; hashes 0.5 s).
 */
export const repeatedKeysSql = (key: string[]) => `count(*) - count(DISTINCT hash(${key.join(', ')}))`;

/** The last valid row of a unique key wins; earlier ones are rejected as duplicates (the window runs only when some key repeats). */
async function markDuplicates(run: RunQuery, stage: string, plan: MappingPlan, within: string[] = []): Promise<void> {
  const key = [...within, ...plan.uniqueKey];
  const [{ n }] = await run(`SELECT ${repeatedKeysSql(key)} AS n FROM ${stage} WHERE reject_code IS NULL`);
  if (Number(n) === 0) return;
  await run(
    `UPDATE ${stage} SET reject_code = 'IMP_ERR_ROW_DUPLICATE_ID', reject_column = ${sqlString(plan.idColumn)}
     WHERE rowid IN (SELECT rowid FROM ${stage} WHERE reject_code IS NULL
                     QUALIFY row_number() OVER (PARTITION BY ${key.join(', ')} ORDER BY source_row DESC) > 1)`,
  );
}

/** A stage's counts from its rows counted by reject code. */
function statsOf(counts: Array<Record<string, unknown>>): StageStats {
  const rejectedByCode: Record<string, number> = {};
  let rowsRead = 0;
  let rowsValid = 0;
  for (const c of counts) {
    rowsRead += Number(c.n);
    if (c.reject_code === null) rowsValid = Number(c.n);
    else rejectedByCode[String(c.reject_code)] = Number(c.n);
  }
  return { rowsRead, rowsValid, rowsRejected: rowsRead - rowsValid, rejectedByCode };
}

/** A rejected row's message, from its stage row `s` (the text of its code, located). */
function rejectMessageSql(): string {
  const messages = Object.entries(ErrorCodes)
    .filter(([code]) => code.startsWith('IMP_ERR_ROW_'))
    .map(([code, text]) => `WHEN ${sqlString(code)} THEN ${sqlString(text)}`)
    .join(' ');
  return `'row ' || s.source_row || ', column "' || s.reject_column || '": ' || CASE s.reject_code ${messages} ELSE s.reject_code END`;
}

/** The first rejected row of a staged file (row, column, code, message), without reading the file again. */
export function firstRejectedSql(stage: string): string {
  return `SELECT s.source_row AS row_number, s.reject_column AS column_name, s.reject_code AS code, ${rejectMessageSql()} AS message
    FROM ${stage} s WHERE s.reject_code IS NOT NULL ORDER BY s.source_row LIMIT 1`;
}

/**
 * The rejected rows of a staged file with their messages and the raw source row as JSON, read
 * again from the file (only rows that failed are joined back, so a clean file pays nothing).
 */
export function rejectedRowsSql(stage: string, source: SourceRelation, limit?: number): string {
  const rowCol = sqlIdent(source.rowNumberColumn);
  return `SELECT s.source_row AS row_number, s.reject_column AS column_name, s.reject_code AS code,
      ${rejectMessageSql()} AS message,
      json_merge_patch(to_json(src), '{"__join_row": null, "__source_row": null}') AS raw
    FROM (SELECT * FROM ${stage} WHERE reject_code IS NOT NULL ORDER BY source_row ${limit ? `LIMIT ${Math.floor(limit)}` : ''}) s
    JOIN (SELECT * EXCLUDE (${rowCol}), ${rowCol} AS __join_row FROM ${source.sql}) src ON src.__join_row = s.source_row
    ORDER BY s.source_row`;
}
