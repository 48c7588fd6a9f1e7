import { randomUUID } from 'node:crypto';
import type pg from 'pg';

/**
 * The maintained join behind `inferences` (migration 4): every row of `prediction_rows` keeps the
 * current actual and SHAP-file values of its key (model, environment, prediction ID), whatever its
 * version, so the view reads one table instead of joining actuals for each query. The same rule as
 * the DuckDB store's; these are the statements that keep it after each load and purge.
 */

/** Columns kept on prediction rows, per source table: prediction-row column, source column. */
export const JOINED = {
  actual_rows: [
    ['actual_label', 'actual_label'], ['actual_score', 'actual_score'], ['actual_scores', 'actual_scores'], ['actual_boxes', 'actual_boxes'],
    ['relevance_label', 'relevance_label'], ['relevance_score', 'relevance_score'], ['actual_ts', 'actual_ts'], ['actual_file_id', 'source_file_id'],
  ],
  shap_rows: [['file_shap', 'shap']],
} as const;
export type JoinedSource = keyof typeof JOINED;
export const JOINED_SOURCES = Object.keys(JOINED) as JoinedSource[];

type Query = (sql: string, params?: unknown[]) => Promise<Array<Record<string, unknown>>>;
const set = (source: JoinedSource, from: string) => JOINED[source].map(([c, f]) => `${c} = ${from}.${f}`).join(', ');

/** New prediction rows (of these files) take the current actual and SHAP-file values of their keys. */
export async function fillPredictions(q: Query, modelId: string, env: string, fileIds: number[]): Promise<void> {
  for (const source of JOINED_SOURCES) {
    if ((await q(`SELECT 1 FROM ${source} WHERE model_id = $1 AND environment = $2 AND is_current LIMIT 1`, [modelId, env])).length === 0) continue;
    await q(
      `UPDATE prediction_rows t SET ${set(source, 's')} FROM ${source} s
       WHERE s.model_id = $1 AND s.environment = $2 AND s.is_current AND t.model_id = $1 AND t.environment = $2
         AND t.source_file_id = ANY($3::bigint[]) AND t.prediction_id = s.prediction_id`,
      [modelId, env, fileIds],
    );
  }
}

/**
 * Around a load of actual or SHAP rows: `before` notes the keys whose current row may go with the
 * earlier versions of the files (`previous`: their ledger IDs); `after` gives the prediction rows of
 * those keys, and of the new current rows, their keys' current values (or none).
 */
export async function noteTouched(q: Query, source: JoinedSource, modelId: string, env: string, previous: string, params: unknown[]): Promise<string> {
  const touched = `pg_touched_${randomUUID().replaceAll('-', '')}`;
  await q(`CREATE TEMP TABLE ${touched} ON COMMIT DROP AS SELECT DISTINCT model_id, environment, prediction_id FROM ${source}
           WHERE model_id = $1 AND environment = $2 AND is_current AND source_file_id IN (${previous})`, params);
  return touched;
}

export async function refreshTouched(q: Query, source: JoinedSource, modelId: string, env: string, fileIds: number[], touched: string): Promise<void> {
  if ((await q(`SELECT 1 FROM ${touched} LIMIT 1`)).length) await refreshKeys(q, source, touched);
  await q(
    `UPDATE prediction_rows t SET ${set(source, 's')} FROM ${source} s
     WHERE s.model_id = $1 AND s.environment = $2 AND s.is_current AND s.source_file_id = ANY($3::bigint[])
       AND t.model_id = $1 AND t.environment = $2 AND t.prediction_id = s.prediction_id`,
    [modelId, env, fileIds],
  );
}

/** The prediction rows of the keys in `keys` (a table of model_id, environment, prediction_id) take their keys' current values, or none. */
export async function refreshKeys(q: Query, source: JoinedSource, keys: string): Promise<void> {
  await q(
    `UPDATE prediction_rows t SET ${set(source, 's')}
     FROM (SELECT k.model_id, k.environment, k.prediction_id, ${JOINED[source].map(([, f]) => `a.${f}`).join(', ')}
           FROM (SELECT DISTINCT model_id, environment, prediction_id FROM ${keys}) k
           LEFT JOIN ${source} a ON a.model_id = k.model_id AND a.environment = k.environment AND a.prediction_id = k.prediction_id AND a.is_current) s
     WHERE t.model_id = s.model_id AND t.environment = s.environment AND t.prediction_id = s.prediction_id`,
  );
}

/** Before a purge: the keys whose actual or SHAP rows the job's files hold, per source (temp tables dropped at commit). */
export async function notePurged(client: pg.PoolClient, fileIds: string, params: unknown[]): Promise<Map<JoinedSource, string>> {
  const out = new Map<JoinedSource, string>();
  for (const source of JOINED_SOURCES) {
    const t = `pg_purged_${randomUUID().replaceAll('-', '')}`;
    await client.query(`CREATE TEMP TABLE ${t} ON COMMIT DROP AS SELECT DISTINCT model_id, environment, prediction_id FROM ${source} WHERE source_file_id IN (${fileIds})`, params);
    out.set(source, t);
  }
  return out;
}

/** After a purge's deletes and flag repairs: the prediction rows of the purged keys take what remains current. */
export async function refreshPurged(client: pg.PoolClient, purged: Map<JoinedSource, string>): Promise<void> {
  const q: Query = async (sql, params) => (await client.query(sql, params)).rows;
  for (const [source, t] of purged) if ((await q(`SELECT 1 FROM ${t} LIMIT 1`)).length) await refreshKeys(q, source, t);
}
