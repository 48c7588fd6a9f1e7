import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';
import { withoutInsertionOrder, type Engine } from '../engine/index.ts';
import { ImporterError } from '../errors.ts';
import { sqlIdent, sqlString } from '../formats/index.ts';
import type { StructColumns } from '../schema/mapping.ts';
import { repeatedKeysSql } from '../schema/staged.ts';
import type { KeptJoin } from './duckdb-kept-join.ts';
import { delayBucketSql, toMatchedActuals } from './rows.ts';
import type { EngineRows, ImportScope, ImportTransaction, MatchedActuals, RowsToLoad } from './store.ts';

type Row = Record<string, unknown>;

/** The schema of the model tables (one per model, its prediction rows and the kept join). */
export const MODEL_SCHEMA = 'model_predictions';

/**
 * The current-version rule, as a filter over ledger rows: a key's current version is its newest
 * discovery (ties broken by ledger ID). Earlier versions are history.
 */
export const CURRENT_VERSION = 'QUALIFY row_number() OVER (PARTITION BY job_id, key ORDER BY discovered_at DESC, file_id DESC) = 1';

/**
 * The wall clock as a SQL literal. DuckDB's now() is the start of the transaction as DuckDB sees it,
 * which we saw lag the ledger's discovery stamps (taken in JS); one clock keeps durations honest.
 */
export function nowSql(): string {
  return `TIMESTAMPTZ ${sqlString(new Date().toISOString())}`;
}

/** What an import needs of the DuckDB store beyond its connection. */
export interface DuckDbImportAccess {
  all(conn: DuckDBConnection, sql: string, params?: DuckDBValue[]): Promise<Row[]>;
  /** The store's engine: the only one whose rows it loads (in place). */
  engine: Engine;
  keptJoin: KeptJoin;
  /** Creates the model's table, or widens its STRUCT columns for this file's fields. */
  ensureModelTable(conn: DuckDBConnection, modelId: string, structs: StructColumns): Promise<void>;
  /** A number for the import's temp tables, new each call. */
  nextStage(): number;
}

/** The store side of an import, on the import connection, which is also the engine's: rows go from file to table inside DuckDB. */
export function importTransaction(conn: DuckDBConnection, scope: ImportScope, store: DuckDbImportAccess): ImportTransaction {
  const { jobId, modelId, environment: env } = scope;
  const modelTable = `${MODEL_SCHEMA}.${sqlIdent(modelId)}`;
  const previousOf = (keys: string[]) => `SELECT file_id FROM import_files WHERE job_id = ${sqlString(jobId)} AND key IN (${keys.map(sqlString).join(', ')})`;
  const inPlace = (rows: EngineRows) => {
    if (rows.engine !== store.engine) throw new ImporterError('IMP_ERR_INTERNAL', 'the DuckDB store loads rows of its own engine only');
    return rows.sql;
  };
  const load = (table: string, keys: string[], r: RowsToLoad, settled?: (orphaned: string) => Promise<void>) =>
    replaceContribution(conn, store, {
      table, keys, modelId, env, previous: previousOf(r.keys), groupFiles: r.fileIds.length, settled,
      inserts: r.batches.map((b) => `INSERT INTO ${table} BY NAME SELECT ${sqlString(modelId)} AS model_id, ${sqlString(env)} AS environment, *, ${nowSql()} AS loaded_at FROM (${inPlace(b)})`),
      ...(r.check ? { loadedFirst: { fileIds: r.fileIds, check: r.check } } : { newKeys: [inPlace(r.newKeys!)] }),
    });
  return {
    claim: async (versions) => {
      const out = new Map<number, 'live' | 'superseded' | 'done'>();
      for (const version of versions) {
        const own = (await store.all(conn, `SELECT status FROM import_files WHERE file_id = $1`, [version.fileId]))[0];
        // Only pending versions import: committed ones are done, failed/superseded/vanished ones wait for a new listing or a retry.
        if (!own || own.status !== 'pending') {
          out.set(version.fileId, 'done');
          continue;
        }
        const current = await store.all(conn, `SELECT file_id FROM import_files WHERE job_id = $1 AND key = $2 ${CURRENT_VERSION}`, [version.jobId, version.key]);
        if (Number(current[0]?.file_id) !== version.fileId) {
          await conn.run(`UPDATE import_files SET status = 'superseded', finished_at = ${nowSql()}, error_message = 'a newer version of the key was discovered' WHERE file_id = $1`, [version.fileId]);
          out.set(version.fileId, 'superseded');
        } else out.set(version.fileId, 'live');
      }
      return out;
    },
    loadPredictions: async (r) => {
      for (const structs of r.structs ?? []) await store.ensureModelTable(conn, modelId, structs);
      const n = await load(modelTable, ['model_version', 'prediction_id'], r);
      await store.keptJoin.fill(conn, modelTable, modelId, env, r.fileIds);
      return n;
    },
    loadActuals: (r) => load('actual_rows', ['prediction_id'], r, (orphaned) => store.keptJoin.refresh(conn, 'actual_rows', modelId, env, r.fileIds, orphaned)),
    loadShap: (r) => load('shap_rows', ['prediction_id'], r, (orphaned) => store.keptJoin.refresh(conn, 'shap_rows', modelId, env, r.fileIds, orphaned)),
    matchedActuals: (withActuals, withPredictions) => matchedByImport(conn, store, modelId, env, withActuals, withPredictions),
    replaceRejected: async (keys, files) => {
      await conn.run(`DELETE FROM rejected_rows WHERE file_id IN (${previousOf(keys)})`);
      for (const { version, rows } of files) {
        await conn.run(
          `INSERT INTO rejected_rows SELECT CAST($1 AS BIGINT), $2, $3, $4, row_number, column_name, code, message, raw FROM (${inPlace(rows)})`,
          [version.fileId, version.jobId, version.key, version.etag],
        );
      }
    },
    finish: async (fileId, o) => {
      await conn.run(
        // attempts counts this one too: failed attempts before it each recorded their own number.
        `UPDATE import_files SET status = $2, attempts = attempts + 1, finished_at = ${nowSql()}, rows_read = $3, predictions_loaded = $4, actuals_loaded = $5, rows_rejected = $6,
           error_code = $7, error_message = $8, error_column = $9, error_row = $10
         WHERE file_id = $1`,
        [fileId, o.status, o.rowsRead, o.predictionsLoaded, o.actualsLoaded, o.rowsRejected, o.errorCode, o.errorMessage, o.errorColumn, o.errorRow],
      );
    },
  };
}

/**
 * Replaces what earlier versions of a group's files contributed to a table and adds these
 * versions' rows, keeping every file's rows: for each key the row of the newest file (highest
 * ledger ID) is the current one. So a file that re-sends an ID overrides it without destroying
 * the older row, and if that file is later rewritten without the ID, the older file's row becomes
 * current again. Returns the number of rows inserted.
 */
async function replaceContribution(
  conn: DuckDBConnection,
  store: DuckDbImportAccess,
  o: {
    table: string; keys: string[]; modelId: string; env: string; previous: string; inserts: string[]; groupFiles: number;
    /** Called once every flag is right, with the temp table of keys whose current row went away with the earlier versions. */
    settled?: (orphaned: string) => Promise<void>;
  } & (
    /** Each staged file's keys, one SELECT per file. */
    | { newKeys: string[]; loadedFirst?: undefined }
    /** The rows were not staged: their keys are read back from the table after the insert, once `check` has passed. */
    | { newKeys?: undefined; loadedFirst: { fileIds: number[]; check: (inserted: number) => Promise<void> } }
  ),
): Promise<number> {
  const n = store.nextStage();
  const keys = o.keys.join(', ');
  const newIds = o.loadedFirst?.fileIds.join(', ');
  const newKeys = o.loadedFirst ? `SELECT ${keys} FROM ${o.table} WHERE source_file_id IN (${newIds})` : o.newKeys.join(' UNION ALL ');
  const scope = (alias = '') => `${alias}model_id = ${sqlString(o.modelId)} AND ${alias}environment = ${sqlString(o.env)}`;
  // Keys whose current row goes away with the earlier versions: another file's row may take over.
  await conn.run(`CREATE OR REPLACE TEMP TABLE orphaned_${n} AS SELECT DISTINCT ${keys} FROM ${o.table} WHERE ${scope()} AND is_current AND source_file_id IN (${o.previous})`);
  await conn.run(`DELETE FROM ${o.table} WHERE ${scope()} AND source_file_id IN (${o.previous})`);
  // Most files bring keys no other file holds; then no flag needs recomputing (a join with LIMIT 1 tells,
  // and an empty table needs not even that: the join would still hash every key of the file).
  const [{ orphans }] = await store.all(conn, `SELECT count(*) AS orphans FROM orphaned_${n}`);
  const occupied = (await store.all(conn, `SELECT 1 FROM ${o.table} WHERE ${scope()} LIMIT 1`)).length > 0;
  const overlapping = async () => (occupied
      && (await store.all(conn, `SELECT 1 FROM (${newKeys}) k JOIN ${o.table} t USING (${keys}) WHERE ${scope('t.')}${newIds ? ` AND t.source_file_id NOT IN (${newIds})` : ''} LIMIT 1`)).length > 0)
    // Files of one group may share keys with each other (a file's own repeats were rejected as duplicates);
    // a hash collision only recomputes flags that were right.
    || (o.groupFiles > 1 && Number((await store.all(conn, `SELECT ${repeatedKeysSql(o.keys)} AS n FROM (${newKeys})`))[0].n) > 0);
  const overlapBefore = o.loadedFirst ? false : await overlapping();
  let inserted = 0;
  await withoutInsertionOrder(conn, async () => {
    for (const insert of o.inserts) inserted += Number((await store.all(conn, insert))[0]?.Count ?? 0);
  });
  if (o.loadedFirst) await o.loadedFirst.check(inserted);
  const overlap = o.loadedFirst ? await overlapping() : overlapBefore;
  if (Number(orphans) > 0 || overlap) {
    await conn.run(`CREATE OR REPLACE TEMP TABLE affected_${n} AS SELECT * FROM orphaned_${n} UNION SELECT * FROM (${newKeys})`);
    // Only keys held by more than one file, or left without a current row, need their flag recomputed.
    await conn.run(
      `UPDATE ${o.table} t SET is_current = (t.source_file_id = w.top)
       FROM (SELECT ${o.keys.map((k) => `r.${k}`).join(', ')}, max(r.source_file_id) AS top FROM ${o.table} r JOIN affected_${n} a USING (${keys})
             WHERE ${scope('r.')} GROUP BY ALL HAVING count(*) > 1 OR NOT bool_or(r.is_current)) w
       WHERE ${scope('t.')} AND ${o.keys.map((k) => `t.${k} = w.${k}`).join(' AND ')} AND t.is_current <> (t.source_file_id = w.top)`,
    );
    await conn.run(`DROP TABLE affected_${n}`);
  }
  await o.settled?.(`orphaned_${n}`);
  await conn.run(`DROP TABLE orphaned_${n}`);
  return inserted;
}

/**
 * Actuals that a group's import joined to a prediction, per file: a file's actuals that found
 * their prediction, or the waiting actuals that its predictions found (a pair whose both sides
 * arrived in the group counts once, for the actuals' file). Grouped by delay bucket.
 */
async function matchedByImport(conn: DuckDBConnection, store: DuckDbImportAccess, modelId: string, env: string, actualFiles: number[], predictionFiles: number[]): Promise<Map<number, MatchedActuals>> {
  const table = `${MODEL_SCHEMA}.${sqlIdent(modelId)}`;
  const tableExists = (await store.all(conn, `SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND lower(table_name) = lower($2)`, [MODEL_SCHEMA, modelId])).length > 0;
  if (!tableExists) return new Map();
  const ids = (files: number[]) => (files.length ? files.map((f) => Math.floor(f)).join(', ') : 'NULL');
  const withActuals = ids(actualFiles);
  const withPredictions = ids(predictionFiles);
  // Files of predictions for a model without actuals join nothing: skip the scan of the model table.
  if (withActuals === 'NULL' && (await store.all(conn, `SELECT 1 FROM actual_rows WHERE model_id = $1 AND environment = $2 AND is_current LIMIT 1`, [modelId, env])).length === 0) {
    return new Map();
  }
  const bucket = delayBucketSql();
  // The prediction rows carry their key's current actual and the file it came from (see JOINED): a scan, no join.
  const pair = `greatest(0, epoch(actual_ts) - epoch(prediction_ts)) AS d FROM ${table}
       WHERE model_id = $1 AND environment = $2 AND is_current AND actual_file_id IS NOT NULL`;
  // This import's actuals that met a prediction, and this import's predictions that met an actual of an earlier file.
  const halves = [
    ...(actualFiles.length ? [`SELECT actual_file_id AS f, ${pair} AND actual_file_id IN (${withActuals})`] : []),
    ...(predictionFiles.length ? [`SELECT source_file_id AS f, ${pair} AND source_file_id IN (${withPredictions})${actualFiles.length ? ` AND actual_file_id NOT IN (${withActuals})` : ''}`] : []),
  ];
  if (halves.length === 0) return new Map();
  const rows = await store.all(conn, `SELECT f, ${bucket} AS b, count(*) AS n, avg(d) AS mean FROM (${halves.join(' UNION ALL ')}) GROUP BY ALL`, [modelId, env]);
  return toMatchedActuals(rows);
}
