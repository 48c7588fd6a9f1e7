import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { sqlString } from '../../formats/index.ts';
import type { StructColumns } from '../../schema/mapping.ts';
import { delayBucketSql, toMatchedActuals } from '../rows.ts';
import type { EngineRows, ImportScope, ImportTransaction, RowsToLoad } from '../store.ts';

type Row = Record<string, unknown>;

/** The current-version rule: a key's current version is its newest discovery (ties broken by ledger ID). */
const CURRENT_ORDER = 'ORDER BY job_id, key, discovered_at DESC, file_id DESC';
export const currentVersions = (where: string) => `SELECT DISTINCT ON (job_id, key) * FROM import_files WHERE ${where} ${CURRENT_ORDER}`;

/** Columns of the two row tables as they are loaded from the engine; nested values arrive as JSON text. */
const TABLES = {
  prediction_rows: {
    keys: ['model_version', 'prediction_id'],
    columns: {
      model_version: 'TEXT', batch_id: 'TEXT', prediction_id: 'TEXT', prediction_ts: 'TIMESTAMPTZ', prediction_label: 'TEXT',
      prediction_score: 'DOUBLE PRECISION', prediction_scores: 'JSONB', prediction_group_id: 'TEXT', rank: 'INTEGER',
      features: 'JSONB', tags: 'JSONB', shap: 'JSONB', embeddings: 'JSONB', source_file_id: 'BIGINT', source_row: 'BIGINT',
      threshold_scores: 'JSONB', raw_inputs: 'JSONB', named_predictions: 'JSONB', prediction_boxes: 'JSONB', llm: 'JSONB',
    } as Record<string, string>,
  },
  actual_rows: {
    keys: ['prediction_id'],
    columns: {
      prediction_id: 'TEXT', actual_label: 'TEXT', actual_score: 'DOUBLE PRECISION', relevance_label: 'TEXT', relevance_score: 'DOUBLE PRECISION',
      actual_ts: 'TIMESTAMPTZ', source_file_id: 'BIGINT', source_row: 'BIGINT', actual_scores: 'JSONB', actual_boxes: 'JSONB',
    } as Record<string, string>,
  },
  shap_rows: {
    keys: ['prediction_id'],
    columns: { prediction_id: 'TEXT', shap: 'JSONB', source_file_id: 'BIGINT', source_row: 'BIGINT' } as Record<string, string>,
  },
} as const;

/** What an import needs of the store beyond its transaction's client. */
export interface StoreAccess {
  /** Streams engine rows into a table by COPY (see `PostgresStore.copyIn`); returns the rows loaded. */
  copyIn(table: string, rows: EngineRows, columns: Record<string, string>): Promise<number>;
  /** Records the struct fields a file brings to a model (see `PostgresStore.ensureFields`). */
  ensureFields(modelId: string, structs: StructColumns): Promise<void>;
}

/** The store side of an import: rows staged by COPY into temp tables, merged under the model's advisory lock. */
export function importTransaction(client: pg.PoolClient, scope: ImportScope, store: StoreAccess): ImportTransaction {
  const { jobId, modelId, environment: env } = scope;
  const q = async (sql: string, params: unknown[] = []) => (await client.query(sql, params)).rows as Row[];
  const previous = `SELECT file_id FROM import_files WHERE job_id = $3 AND key = ANY($4)`;
  const locked = new Set<string>();
  // Merges into one table of one model and environment take turns across workers: the current-row
  // flags of a key depend on every file holding it. A file of predictions and actuals locks them in that order.
  const lockModel = async (table: keyof typeof TABLES) => {
    if (!locked.has(table)) await q(`SELECT pg_advisory_xact_lock(hashtextextended(json_build_array('inference-importer:merge', $1::text, $2::text, $3::text)::text, 0))`, [table, modelId, env]);
    locked.add(table);
  };
  const load = async (table: keyof typeof TABLES, r: RowsToLoad): Promise<number> => {
    const { keys, columns } = TABLES[table];
    const scope = (t: string) => `${t}model_id = $1 AND ${t}environment = $2`;
    // The engine's rows with the import's model and environment, as the tables hold them.
    const scoped = (batch: EngineRows): EngineRows => ({ engine: batch.engine, sql: `SELECT ${sqlString(modelId)} AS model_id, ${sqlString(env)} AS environment, * FROM (${batch.sql})` });
    // Taken before the rows go in: what this import sees of other files' rows stays true until it commits.
    await lockModel(table);
    const orphaned = `pg_orphaned_${randomUUID().replaceAll('-', '')}`;
    await q(`CREATE TEMP TABLE ${orphaned} (${keys.map((k) => `${k} TEXT`).join(', ')}) ON COMMIT DROP`);
    // Keys whose current row goes away with the earlier versions: another file's row may take over.
    await q(
      `WITH gone AS (DELETE FROM ${table} WHERE ${scope('')} AND source_file_id IN (${previous}) RETURNING ${keys.join(', ')}, is_current)
       INSERT INTO ${orphaned} SELECT DISTINCT ${keys.join(', ')} FROM gone WHERE is_current`,
      [modelId, env, jobId, r.keys],
    );
    // Every key with rows has one current row, so a model without current rows holds no rows to meet.
    // (An index of actuals led by the model was tried for this: with the statistics a bulk load leaves
    // stale, the planner then joined actuals to predictions by nested index scans, quadratic in rows.)
    const occupied = (await q(`SELECT 1 FROM ${table} WHERE ${scope('')} AND is_current LIMIT 1`, [modelId, env])).length > 0;
    // Most files bring keys no other file holds: then no flag needs recomputing and no key list is made.
    const added = occupied || r.fileIds.length > 1 ? `pg_added_${randomUUID().replaceAll('-', '')}` : undefined;
    let overlap = false;
    if (added) {
      // The new keys, from the engine (a narrow copy), met before the rows go in: everything the table
      // holds now is other files' rows, so no filter on the file is needed, and the join reads half the
      // rows it would after the COPY (read back from the table after the COPY: 27 s for 1M new keys
      // into a model of 1M under a fresh load's missing statistics).
      await q(`CREATE TEMP TABLE ${added} (model_id TEXT, environment TEXT, ${keys.map((k) => `${k} TEXT`).join(', ')}, source_file_id BIGINT) ON COMMIT DROP`);
      for (const batch of r.batches) {
        await store.copyIn(added, scoped(batch), { model_id: 'TEXT', environment: 'TEXT', ...Object.fromEntries(keys.map((k) => [k, 'TEXT'])), source_file_id: 'BIGINT' });
      }
      // Temp tables get no statistics by themselves; the joins below need them to pick a hash join.
      await q(`ANALYZE ${added}`);
      // Model and environment are joined, not filtered by constants: under a fresh load's missing
      // statistics the planner takes a constant filter on them for a few rows and scans the whole index
      // for them (40 s for 1M keys against 1M rows); as join keys it sizes the table from its pages and
      // picks a hash join for a large file (a few seconds) and index probes for a small one.
      const on = ['model_id', 'environment', ...keys].map((k) => `t.${k} = s.${k}`).join(' AND ');
      const meets = [
        // Keys other files hold: a count, not EXISTS, whose hope of an early match leads the planner
        // to probe the index once per key (19 s for 1M new keys) where a hash join takes 1.4 s …
        ...(occupied ? [`(SELECT count(*) FROM ${added} s JOIN ${table} t ON ${on}) > 0`] : []),
        // … or that several files of this group bring.
        ...(r.fileIds.length > 1 ? [`EXISTS (SELECT 1 FROM ${added} GROUP BY ${keys.join(', ')} HAVING count(DISTINCT source_file_id) > 1)`] : []),
      ];
      [{ overlap }] = (await q(`SELECT ${meets.join(' OR ')} AS overlap`)) as Array<{ overlap: boolean }>;
    }
    // Straight into the table (no staging copy): the rows' model, environment and load time come with them.
    let n = 0;
    for (const batch of r.batches) {
      n += await store.copyIn(table, scoped(batch), { model_id: 'TEXT', environment: 'TEXT', ...columns });
    }
    if (r.check) await r.check(n);
    const [{ orphans }] = await q(`SELECT count(*)::int AS orphans FROM ${orphaned}`);
    if (Number(orphans) > 0 || overlap) {
      await q(
        `UPDATE ${table} t SET is_current = (t.source_file_id = w.top)
         FROM (SELECT ${keys.map((k) => `r.${k}`).join(', ')}, max(r.source_file_id) AS top
               FROM ${table} r JOIN (SELECT ${keys.join(', ')} FROM ${orphaned}${added ? ` UNION SELECT ${keys.join(', ')} FROM ${added}` : ''}) a USING (${keys.join(', ')})
               WHERE ${scope('r.')} GROUP BY ${keys.map((k) => `r.${k}`).join(', ')}
               HAVING count(*) > 1 OR NOT bool_or(r.is_current)) w
         WHERE ${scope('t.')} AND ${keys.map((k) => `t.${k} = w.${k}`).join(' AND ')} AND t.is_current <> (t.source_file_id = w.top)`,
        [modelId, env],
      );
    }
    return n;
  };
  return {
    claim: async (versions) => {
      const keys = [...new Set(versions.map((v) => v.key))];
      // Locks every version of these keys, in one order (no deadlock between workers): a second worker on the same key waits, then sees the first one's outcome.
      const own = new Map((await q(`SELECT file_id, status FROM import_files WHERE job_id = $1 AND key = ANY($2) ORDER BY key, file_id FOR UPDATE`, [jobId, keys]))
        .map((r) => [Number(r.file_id), String(r.status)]));
      const current = new Map((await q(`SELECT key, file_id FROM (${currentVersions('job_id = $1 AND key = ANY($2)')}) c`, [jobId, keys])).map((r) => [String(r.key), Number(r.file_id)]));
      const out = new Map<number, 'live' | 'superseded' | 'done'>();
      for (const v of versions) {
        if (own.get(v.fileId) !== 'pending') out.set(v.fileId, 'done');
        else if (current.get(v.key) !== v.fileId) {
          await q(`UPDATE import_files SET status = 'superseded', finished_at = $2, error_message = 'a newer version of the key was discovered' WHERE file_id = $1`, [v.fileId, new Date()]);
          out.set(v.fileId, 'superseded');
        } else out.set(v.fileId, 'live');
      }
      return out;
    },
    loadPredictions: async (r) => {
      await lockModel('prediction_rows');
      for (const structs of r.structs ?? []) await store.ensureFields(modelId, structs);
      return load('prediction_rows', r);
    },
    loadActuals: (r) => load('actual_rows', r),
    loadShap: (r) => load('shap_rows', r),
    matchedActuals: async (withActuals, withPredictions) => {
      const bucket = delayBucketSql();
      const pair = `FROM actual_rows a JOIN prediction_rows p ON a.model_id = p.model_id AND a.environment = p.environment AND a.prediction_id = p.prediction_id
                    WHERE a.model_id = $1 AND a.environment = $2 AND a.is_current AND p.is_current`;
      const delay = 'greatest(0, extract(epoch FROM a.actual_ts - p.prediction_ts)) AS d';
      // Two index-friendly halves instead of one OR over both tables: this import's actuals that met a
      // prediction, and this import's predictions that met an actual of an earlier file.
      const rows = await q(
        `SELECT f, ${bucket} AS b, count(*) AS n, avg(d) AS mean FROM (
           SELECT a.source_file_id AS f, ${delay} ${pair} AND a.source_file_id = ANY($3::bigint[])
           UNION ALL
           SELECT p.source_file_id AS f, ${delay} ${pair} AND p.source_file_id = ANY($4::bigint[]) AND NOT a.source_file_id = ANY($3::bigint[])
         ) x GROUP BY 1, 2`,
        [modelId, env, withActuals, withPredictions],
      );
      return toMatchedActuals(rows);
    },
    replaceRejected: async (keys, files) => {
      await q(`DELETE FROM rejected_rows WHERE file_id IN (SELECT file_id FROM import_files WHERE job_id = $1 AND key = ANY($2))`, [jobId, keys]);
      for (const { version, rows } of files) {
        const constants = `CAST(${Math.floor(version.fileId)} AS BIGINT) AS file_id, ${sqlString(version.jobId)} AS job_id, ${sqlString(version.key)} AS key, ${sqlString(version.etag)} AS etag`;
        await store.copyIn('rejected_rows', { engine: rows.engine, sql: `SELECT ${constants}, row_number, column_name, code, message, CAST(raw AS VARCHAR) AS raw FROM (${rows.sql})` },
          { file_id: 'BIGINT', job_id: 'TEXT', key: 'TEXT', etag: 'TEXT', row_number: 'BIGINT', column_name: 'TEXT', code: 'TEXT', message: 'TEXT', raw: 'TEXT' });
      }
    },
    finish: async (fileId, o) => {
      await q(
        `UPDATE import_files SET status = $2, attempts = attempts + 1, finished_at = $11, rows_read = $3, predictions_loaded = $4, actuals_loaded = $5, rows_rejected = $6,
           error_code = $7, error_message = $8, error_column = $9, error_row = $10
         WHERE file_id = $1`,
        // The daemon's clock, like discovered_at: PostgreSQL's now() is the transaction's start (before the COPY), and the server's clock may differ.
        [fileId, o.status, o.rowsRead, o.predictionsLoaded, o.actualsLoaded, o.rowsRejected, o.errorCode, o.errorMessage, o.errorColumn, o.errorRow, new Date()],
      );
    },
  };
}
