import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';
import { sqlIdent, sqlString } from '../formats/index.ts';
import { BOXES_TYPE } from '../schema/mapping.ts';

type Row = Record<string, unknown>;
type All = (conn: DuckDBConnection, sql: string, params?: DuckDBValue[]) => Promise<Row[]>;

/**
 * The maintained join behind `inferences`: the current actual and SHAP-file values of a key are kept
 * on every prediction row of that key (every version, current or not), so the view reads one table
 * instead of hashing the model's actuals for each query. Model-table column, source column, type.
 * Kept up to date by every load (see `KeptJoin.refresh`), the purge and the opening of a store made before.
 */
export const JOINED: Record<'actual_rows' | 'shap_rows', Array<[string, string, string]>> = {
  actual_rows: [
    ['actual_label', 'actual_label', 'VARCHAR'], ['actual_score', 'actual_score', 'DOUBLE'], ['actual_scores', 'actual_scores', 'MAP(VARCHAR, DOUBLE)'],
    ['actual_boxes', 'actual_boxes', BOXES_TYPE], ['relevance_label', 'relevance_label', 'VARCHAR'], ['relevance_score', 'relevance_score', 'DOUBLE'],
    ['actual_ts', 'actual_ts', 'TIMESTAMPTZ'],
    // Not shown in `inferences`: the import's join metrics read which file the actual came from.
    ['actual_file_id', 'source_file_id', 'BIGINT'],
  ],
  // SHAP values sent in a file of their own (they take the place of the prediction's own in `inferences`).
  shap_rows: [['file_shap', 'shap', 'JSON']],
};
export const JOINED_SOURCES = Object.keys(JOINED) as Array<keyof typeof JOINED>;
/** The actual columns of `inferences`, in their order. */
export const INFERENCE_ACTUAL_COLUMNS = ['actual_label', 'actual_score', 'actual_scores', 'actual_boxes', 'relevance_label', 'relevance_score', 'actual_ts'];
export function joinedColumnsSql(): string {
  return Object.values(JOINED).flat().map(([c, , t]) => `${c} ${t}`).join(', ');
}

/** The statements that keep the join of the DuckDB store's model tables (in the schema `schema`) after loads, purges and upgrades. */
export class KeptJoin {
  constructor(private readonly all: All, private readonly schema: string) {}

  /** After a load of prediction rows (`table`, files `fileIds`): the new rows take their keys' current actual and SHAP-file values. */
  async fill(conn: DuckDBConnection, table: string, modelId: string, env: string, fileIds: number[]): Promise<void> {
    const scope = `model_id = ${sqlString(modelId)} AND environment = ${sqlString(env)}`;
    const fresh = `source_file_id IN (${fileIds.map(Math.floor).join(', ')})`;
    for (const source of JOINED_SOURCES) {
      if ((await this.all(conn, `SELECT 1 FROM ${source} WHERE ${scope} AND is_current LIMIT 1`)).length === 0) continue;
      const cols = await this.used(conn, table, source, `SELECT * FROM ${source} WHERE ${scope} AND is_current`, 'false');
      await this.copy(conn, table, source, scope, `t.${fresh}`, cols);
    }
  }

  /**
   * After a load of actual or SHAP rows of one model and environment: the prediction rows of the
   * keys it touched take their keys' current values. The new rows that are current carry them; a
   * key whose current row went with an earlier version of the files (`orphaned`) takes another
   * file's row, or none.
   */
  async refresh(conn: DuckDBConnection, source: keyof typeof JOINED, modelId: string, env: string, fileIds: number[], orphaned: string): Promise<void> {
    const tables = await this.all(conn, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND lower(table_name) = lower($2)`, [this.schema, modelId]);
    // Actuals before their predictions: the predictions' load fills them in.
    if (tables.length === 0) return;
    const table = `${this.schema}.${sqlIdent(String(tables[0].table_name))}`;
    const scope = `model_id = ${sqlString(modelId)} AND environment = ${sqlString(env)}`;
    const fresh = `${scope} AND source_file_id IN (${fileIds.map(Math.floor).join(', ')})`;
    const cols = await this.used(conn, table, source, `SELECT * FROM ${source} WHERE ${fresh}`, scope);
    const [{ orphans }] = await this.all(conn, `SELECT count(*) AS orphans FROM ${orphaned}`);
    if (Number(orphans) > 0) {
      await this.refreshKeys(conn, table, source, `SELECT ${sqlString(modelId)} AS model_id, ${sqlString(env)} AS environment, prediction_id FROM ${orphaned}`, cols);
    }
    await this.copy(conn, table, source, fresh, 'true', cols);
  }

  /**
   * The joined columns of `source` an update must write: those the new values (`from`) or the
   * table's rows in `scope` hold a value in. An UPDATE costs per column, and DuckDB rewrites whole
   * rows (delete + insert) when it sets a MAP or STRUCT column, so the columns a model never uses
   * (actual_scores of a binary model, boxes, relevance) are left out. `actual_file_id` is always written.
   */
  async used(conn: DuckDBConnection, table: string, source: keyof typeof JOINED, from: string, scope: string): Promise<Array<[string, string, string]>> {
    const optional = JOINED[source].filter(([c]) => c !== 'actual_file_id');
    const held = async (sql: string) => (await this.all(conn, sql))[0] as Row;
    const [fresh, stored] = [
      await held(`SELECT ${optional.map(([c, f]) => `count(${f}) > 0 AS ${c}`).join(', ')} FROM (${from})`),
      await held(`SELECT ${optional.map(([c]) => `count(${c}) > 0 AS ${c}`).join(', ')} FROM ${table} WHERE ${scope}`),
    ];
    return JOINED[source].filter(([c]) => c === 'actual_file_id' || fresh[c] || stored[c]);
  }

  /** Copies the joined columns of `source`'s current rows (those matching `where`) onto the prediction rows of their keys (those matching `target`, alias t). */
  async copy(conn: DuckDBConnection, table: string, source: keyof typeof JOINED, where: string, target: string, cols = JOINED[source]): Promise<void> {
    if (cols.length === 0) return;
    await conn.run(
      `UPDATE ${table} t SET ${cols.map(([c]) => `${c} = s.${c}`).join(', ')}
       FROM (SELECT model_id, environment, prediction_id, ${cols.map(([c, from]) => `${from} AS ${c}`).join(', ')} FROM ${source} WHERE is_current AND ${where}) s
       WHERE t.model_id = s.model_id AND t.environment = s.environment AND t.prediction_id = s.prediction_id AND ${target}`,
    );
  }

  /** Sets the joined columns of `source` on the prediction rows of the given keys (distinct model_id, environment, prediction_id) from their current rows, or to NULL. */
  async refreshKeys(conn: DuckDBConnection, table: string, source: keyof typeof JOINED, keys: string, cols = JOINED[source]): Promise<void> {
    if (cols.length === 0) return;
    await conn.run(
      `UPDATE ${table} t SET ${cols.map(([c]) => `${c} = s.${c}`).join(', ')}
       FROM (SELECT k.model_id, k.environment, k.prediction_id, ${cols.map(([c, from]) => `a.${from} AS ${c}`).join(', ')}
             FROM (SELECT DISTINCT model_id, environment, prediction_id FROM (${keys})) k
             LEFT JOIN ${source} a ON a.model_id = k.model_id AND a.environment = k.environment AND a.prediction_id = k.prediction_id AND a.is_current) s
       WHERE t.model_id = s.model_id AND t.environment = s.environment AND t.prediction_id = s.prediction_id`,
    );
  }

  /** Model tables of a store made before the maintained join get its columns, filled from the current actual and SHAP rows, once. */
  async addColumns(conn: DuckDBConnection): Promise<void> {
    const stale = await this.all(
      conn,
      `SELECT table_name FROM information_schema.columns WHERE table_schema = $1 GROUP BY table_name HAVING NOT bool_or(column_name = 'file_shap')`,
      [this.schema],
    );
    for (const t of stale) {
      const table = `${this.schema}.${sqlIdent(String(t.table_name))}`;
      await conn.run('BEGIN TRANSACTION');
      try {
        for (const [column, , type] of Object.values(JOINED).flat()) await conn.run(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${column} ${type}`);
        for (const source of JOINED_SOURCES) await this.copy(conn, table, source, 'true', 'true');
        await conn.run('COMMIT');
      } catch (err) {
        await conn.run('ROLLBACK').catch(() => undefined);
        throw err;
      }
    }
  }
}
