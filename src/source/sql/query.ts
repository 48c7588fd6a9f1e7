import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { to as copyTo } from 'pg-copy-streams';
import { sqlIdent, sqlString, type LocalFile, type SourceRelation } from '../../formats/index.ts';
import { orderedRelation, readOptionsSql } from '../../formats/types.ts';
import { ImporterError } from '../../errors.ts';
import type { SqlJob, Warehouse } from './connection.ts';
import { warehouseError } from './connection.ts';

/** A column of the query's result, with the DuckDB type its text is read as. */
export interface QueryColumn {
  name: string;
  /** The PostgreSQL type OID from the result description (Redshift uses the same OIDs). */
  oid: number;
  /** The DuckDB type of the column once read. */
  type: string;
  /** Numeric arrays travel as JSON text ([1,2]) and are cast to a DuckDB list after reading. */
  list: boolean;
}

/** PostgreSQL type OIDs → DuckDB types; anything else is read as text. */
const SCALARS: Record<number, string> = {
  16: 'BOOLEAN', 20: 'BIGINT', 21: 'SMALLINT', 23: 'INTEGER', 26: 'BIGINT', 700: 'FLOAT', 701: 'DOUBLE', 1700: 'DOUBLE',
  1082: 'DATE', 1114: 'TIMESTAMP', 1184: 'TIMESTAMPTZ',
};
/** Arrays of numbers (embeddings): int2[], int4[], int8[], float4[], float8[], numeric[]. */
const LISTS: Record<number, string> = { 1005: 'BIGINT[]', 1007: 'BIGINT[]', 1016: 'BIGINT[]', 1021: 'DOUBLE[]', 1022: 'DOUBLE[]', 1231: 'DOUBLE[]' };
/** Types a cursor column may have: windows are ranges of time. */
const CURSOR_TYPES = new Set([1082, 1114, 1184]);

/** The job's query as a subquery (a trailing `;` dropped; a closing line break ends a trailing `--` comment). */
export const subquery = (job: SqlJob) => `(${job.source.sql.query.trim().replace(/;+\s*$/, '')}\n) AS q`;

/**
 * The query's columns and their types, from the result description of the query run with
 * LIMIT 0 (no rows move). Refuses a result with two columns of one name (they could not be told
 * apart once read) and, for incremental jobs, a cursor column that is missing or not a time.
 */
export async function describeQuery(wh: Warehouse, job: SqlJob): Promise<QueryColumn[]> {
  let fields: Array<{ name: string; dataTypeID: number }>;
  try {
    fields = (await wh.client.query(`SELECT * FROM ${subquery(job)} LIMIT 0`)).fields;
  } catch (err) {
    throw warehouseError(job, `describing the query on ${wh.where}`, err);
  }
  const seen = new Set<string>();
  for (const f of fields) {
    if (seen.has(f.name)) throw new ImporterError('IMP_ERR_SOURCE_QUERY', `job ${job.id}: the query returns two columns named "${f.name}"; give one an alias in jobs[].source.sql.query`, { permanent: true, location: { column: f.name } });
    seen.add(f.name);
  }
  const cursor = job.source.sql.cursor?.column;
  if (cursor) {
    const f = fields.find((x) => x.name === cursor);
    if (!f || !CURSOR_TYPES.has(f.dataTypeID)) {
      throw new ImporterError('IMP_ERR_SOURCE_QUERY', `job ${job.id}: jobs[].source.sql.cursor.column "${cursor}" ${f ? `has type OID ${f.dataTypeID}, not a timestamp or date` : `is not a column of the query (it returns ${fields.map((x) => x.name).join(', ')})`}`, { permanent: true, location: { column: cursor } });
    }
  }
  return fields.map((f) => ({ name: f.name, oid: f.dataTypeID, type: SCALARS[f.dataTypeID] ?? LISTS[f.dataTypeID] ?? 'VARCHAR', list: f.dataTypeID in LISTS }));
}

/** A timestamp literal the warehouse reads the same in any session time zone. */
const at = (d: Date) => `'${d.toISOString()}'::timestamptz`;

/**
 * The SELECT a window runs: the job's query, its rows with the cursor in (from, to] (no bounds:
 * the whole query; `limit` for a dry run), lists as JSON text.
 */
export function windowSelect(job: SqlJob, columns: QueryColumn[], range?: { from: Date; to: Date }, limit?: number): string {
  const list = columns.map((c) => (c.list ? `array_to_json(q.${sqlIdent(c.name)})::text AS ${sqlIdent(c.name)}` : `q.${sqlIdent(c.name)}`)).join(', ');
  const cursor = job.source.sql.cursor?.column;
  const where = range && cursor ? ` WHERE q.${sqlIdent(cursor)} > ${at(range.from)} AND q.${sqlIdent(cursor)} <= ${at(range.to)}` : '';
  return `SELECT ${list} FROM ${subquery(job)}${where}${limit !== undefined ? ` LIMIT ${limit}` : ''}`;
}

/** Rows fetched per round trip from a Redshift cursor. */
const FETCH_ROWS = 10_000;
/** Values as the server sent them (text), so they are written out as they came. */
const RAW_TEXT = { getTypeParser: () => (v: string) => v };
const csvCell = (v: string | null) => (v === null ? '' : `"${v.replaceAll('"', '""')}"`);

/**
 * Streams the rows of `select` into a CSV file with a header, never holding the result in memory:
 * PostgreSQL's `COPY (select) TO STDOUT (FORMAT csv)` straight to disk; Redshift, which cannot COPY
 * to a client, through a server-side cursor in batches of text values. Returns the rows written.
 */
export async function queryToCsv(wh: Warehouse, job: SqlJob, select: string, path: string, what: string): Promise<number> {
  try {
    if (wh.dialect === 'postgres') {
      const stream = wh.client.query(copyTo(`COPY (${select}) TO STDOUT (FORMAT csv, HEADER true)`));
      await pipeline(stream, createWriteStream(path));
      return stream.rowCount;
    }
    const out = createWriteStream(path);
    let rows = 0;
    try {
      await wh.client.query('BEGIN');
      await wh.client.query(`DECLARE importer_window NO SCROLL CURSOR FOR ${select}`);
      let header = false;
      for (;;) {
        const batch = await wh.client.query({ text: `FETCH FORWARD ${FETCH_ROWS} FROM importer_window`, rowMode: 'array', types: RAW_TEXT });
        let chunk = header ? '' : `${batch.fields.map((f) => csvCell(f.name)).join(',')}\n`;
        header = true;
        for (const row of batch.rows as Array<Array<string | null>>) chunk += `${row.map(csvCell).join(',')}\n`;
        rows += batch.rows.length;
        if (!out.write(chunk)) await once(out, 'drain');
        if (batch.rows.length < FETCH_ROWS) break;
      }
      await wh.client.query('CLOSE importer_window');
      await wh.client.query('COMMIT');
    } catch (err) {
      await wh.client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      out.end();
      await once(out, 'close');
    }
    return rows;
  } catch (err) {
    throw warehouseError(job, `${what} on ${wh.where}`, err);
  }
}

/**
 * The CSV of a window as a relation of the import engine: the CSV reader with the column types
 * of the result description (no sniffing: an all-NULL column keeps its type), quoted empty strings
 * kept apart from NULL (COPY writes NULL unquoted), lists cast from their JSON text.
 */
export async function windowRelation(file: LocalFile, columns: QueryColumn[]): Promise<SourceRelation> {
  const read = `SELECT * FROM read_csv(${sqlString(file.path)}${readOptionsSql({
    auto_detect: false, header: true, delim: ',', quote: '"', escape: '"', allow_quoted_nulls: false,
    columns: Object.fromEntries(columns.map((c) => [c.name, c.list ? 'VARCHAR' : c.type])),
  })})`;
  const lists = columns.filter((c) => c.list);
  // Lists arrive as text; cast in the scan itself, so the one-off read and the ordered temp table both get them typed.
  return orderedRelation(lists.length
    ? `SELECT * REPLACE (${lists.map((c) => `CAST(${sqlIdent(c.name)} AS ${c.type}) AS ${sqlIdent(c.name)}`).join(', ')}) FROM (${read})`
    : read);
}
