import type pg from 'pg';
import { ImporterError } from '../../errors.ts';

/**
 * The PostgreSQL store's schema, as versioned migrations. Each runs once, in its own transaction,
 * recorded in `schema_migrations`; processes starting together take turns on an advisory lock, so
 * the schema is made exactly once. Append new migrations; never edit one that has shipped.
 *
 * The logical tables and views are those of the DuckDB store. Features, tags, SHAP values and
 * embeddings are JSONB here: models have different features, and one table with JSONB keeps the
 * load a single COPY and the shared views plain (see docs/stores.md for the measured trade-off).
 */
export const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: 'ledger, rows, views',
    sql: `
      CREATE TABLE import_files (
        file_id BIGSERIAL PRIMARY KEY,
        job_id TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL,
        size BIGINT NOT NULL, last_modified TIMESTAMPTZ,
        status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        discovered_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,
        rows_read BIGINT, predictions_loaded BIGINT, actuals_loaded BIGINT, rows_rejected BIGINT,
        error_code TEXT, error_message TEXT, error_column TEXT, error_row BIGINT,
        UNIQUE (job_id, key, etag)
      );
      CREATE INDEX import_files_current ON import_files (job_id, key, discovered_at DESC, file_id DESC);
      CREATE INDEX import_files_status ON import_files (job_id, status);

      CREATE TABLE prediction_rows (
        model_id TEXT NOT NULL, model_version TEXT NOT NULL, environment TEXT NOT NULL, batch_id TEXT,
        prediction_id TEXT NOT NULL, prediction_ts TIMESTAMPTZ, prediction_label TEXT, prediction_score DOUBLE PRECISION,
        prediction_scores JSONB, prediction_group_id TEXT, rank INTEGER,
        features JSONB, tags JSONB, shap JSONB, embeddings JSONB,
        source_file_id BIGINT NOT NULL, source_row BIGINT, loaded_at TIMESTAMPTZ NOT NULL, is_current BOOLEAN NOT NULL DEFAULT true
      );
      -- Keys lead with prediction_id: every row of a model shares model_id and environment, so an
      -- index led by those finds nothing faster than a scan (seen: 0.3 s per import at 5k rows).
      CREATE INDEX prediction_rows_key ON prediction_rows (prediction_id, model_id, environment, model_version);
      CREATE INDEX prediction_rows_file ON prediction_rows (source_file_id);
      CREATE INDEX prediction_rows_time ON prediction_rows (model_id, environment, prediction_ts) WHERE is_current;

      CREATE TABLE actual_rows (
        model_id TEXT NOT NULL, environment TEXT NOT NULL, prediction_id TEXT NOT NULL,
        actual_label TEXT, actual_score DOUBLE PRECISION, relevance_label TEXT, relevance_score DOUBLE PRECISION, actual_ts TIMESTAMPTZ,
        source_file_id BIGINT NOT NULL, source_row BIGINT, loaded_at TIMESTAMPTZ NOT NULL, is_current BOOLEAN NOT NULL DEFAULT true
      );
      CREATE INDEX actual_rows_key ON actual_rows (prediction_id, model_id, environment);
      CREATE INDEX actual_rows_file ON actual_rows (source_file_id);

      -- raw is text: a rejected row may hold values JSON cannot (NaN), which is why it was rejected.
      CREATE TABLE rejected_rows (
        file_id BIGINT NOT NULL, job_id TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL,
        row_number BIGINT, column_name TEXT, code TEXT NOT NULL, message TEXT NOT NULL, raw TEXT
      );
      CREATE INDEX rejected_rows_file ON rejected_rows (file_id, row_number);

      -- The type of every feature, tag, SHAP value and embedding field a model has stored: a file
      -- whose field changed type fails as it does with the DuckDB store's typed columns.
      CREATE TABLE model_fields (
        model_id TEXT NOT NULL, column_name TEXT NOT NULL, field TEXT NOT NULL, type TEXT NOT NULL,
        PRIMARY KEY (model_id, column_name, field)
      );

      CREATE VIEW predictions AS
        SELECT model_id, model_version, environment, batch_id, prediction_id, prediction_ts, prediction_label, prediction_score,
               prediction_scores, prediction_group_id, rank, features, tags, shap, embeddings
        FROM prediction_rows WHERE is_current;
      CREATE VIEW actuals AS
        SELECT model_id, environment, prediction_id, actual_label, actual_score, relevance_label, relevance_score, actual_ts,
               source_file_id, source_row, loaded_at
        FROM actual_rows WHERE is_current;
      CREATE VIEW inferences AS
        SELECT p.*, a.actual_label, a.actual_score, a.relevance_label, a.relevance_score, a.actual_ts
        FROM predictions p LEFT JOIN actuals a
          ON a.model_id = p.model_id AND a.environment = p.environment AND a.prediction_id = p.prediction_id;
    `,
  },
  {
    version: 2,
    name: 'multiclass actual scores and thresholds, raw inputs, named predictions, bounding boxes, generative fields, SHAP files',
    sql: `
      ALTER TABLE prediction_rows
        ADD COLUMN threshold_scores JSONB, ADD COLUMN raw_inputs JSONB, ADD COLUMN named_predictions JSONB,
        ADD COLUMN prediction_boxes JSONB, ADD COLUMN llm JSONB;
      ALTER TABLE actual_rows ADD COLUMN actual_scores JSONB, ADD COLUMN actual_boxes JSONB;

      -- Files of SHAP values alone, keyed by prediction ID like actuals.
      CREATE TABLE shap_rows (
        model_id TEXT NOT NULL, environment TEXT NOT NULL, prediction_id TEXT NOT NULL, shap JSONB,
        source_file_id BIGINT NOT NULL, source_row BIGINT, loaded_at TIMESTAMPTZ NOT NULL, is_current BOOLEAN NOT NULL DEFAULT true
      );
      CREATE INDEX shap_rows_key ON shap_rows (prediction_id, model_id, environment);
      CREATE INDEX shap_rows_file ON shap_rows (source_file_id);

      DROP VIEW inferences;
      DROP VIEW predictions;
      DROP VIEW actuals;
      CREATE VIEW predictions AS
        SELECT model_id, model_version, environment, batch_id, prediction_id, prediction_ts, prediction_label, prediction_score,
               prediction_scores, threshold_scores, prediction_group_id, rank, features, tags, shap, embeddings,
               raw_inputs, named_predictions, prediction_boxes, llm
        FROM prediction_rows WHERE is_current;
      CREATE VIEW actuals AS
        SELECT model_id, environment, prediction_id, actual_label, actual_score, relevance_label, relevance_score, actual_ts,
               source_file_id, source_row, loaded_at, actual_scores, actual_boxes
        FROM actual_rows WHERE is_current;
      CREATE VIEW shap_values AS
        SELECT model_id, environment, prediction_id, shap, source_file_id, source_row, loaded_at FROM shap_rows WHERE is_current;
      -- SHAP values sent in a file of their own take the place of those sent with the prediction.
      CREATE VIEW inferences AS
        SELECT p.model_id, p.model_version, p.environment, p.batch_id, p.prediction_id, p.prediction_ts, p.prediction_label, p.prediction_score,
               p.prediction_scores, p.threshold_scores, p.prediction_group_id, p.rank, p.features, p.tags, COALESCE(s.shap, p.shap) AS shap, p.embeddings,
               p.raw_inputs, p.named_predictions, p.prediction_boxes, p.llm,
               a.actual_label, a.actual_score, a.actual_scores, a.actual_boxes, a.relevance_label, a.relevance_score, a.actual_ts
        FROM predictions p
        LEFT JOIN actuals a ON a.model_id = p.model_id AND a.environment = p.environment AND a.prediction_id = p.prediction_id
        LEFT JOIN shap_values s ON s.model_id = p.model_id AND s.environment = p.environment AND s.prediction_id = p.prediction_id;
    `,
  },
  {
    version: 3,
    name: 'rows COPY straight into the tables',
    sql: `
      -- Rows are COPYed straight into the row tables (no staging table): their load time is the column's default.
      ALTER TABLE prediction_rows ALTER COLUMN loaded_at SET DEFAULT now();
      ALTER TABLE actual_rows ALTER COLUMN loaded_at SET DEFAULT now();
      ALTER TABLE shap_rows ALTER COLUMN loaded_at SET DEFAULT now();
    `,
  },
];

/**
 * Brings `schema` to the newest migration, then checks that the role holds every right the store
 * uses, naming each one missing. Processes starting together take turns on an advisory lock.
 */
export async function migrate(client: pg.PoolClient, schema: string, context: { where: string; storeError: (err: unknown, what: string) => ImporterError }): Promise<void> {
  try {
    await client.query(`SELECT pg_advisory_lock(hashtext('inference-importer:migrate:' || $1))`, [schema]);
    // Created only when missing: CREATE … IF NOT EXISTS checks the right to create before it looks, so a role without it could never start.
    if ((await client.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [schema])).rowCount === 0) {
      await client.query(`CREATE SCHEMA ${schema}`).catch((err) => {
        throw context.storeError(err, `cannot create schema "${schema}" (needs CREATE on the database, or create the schema for the role)`);
      });
    }
    if ((await client.query(`SELECT to_regclass($1) AS t`, [`${schema}.schema_migrations`])).rows[0].t === null) {
      await client.query(`CREATE TABLE ${schema}.schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`).catch((err) => {
        throw context.storeError(err, `cannot create ${schema}.schema_migrations (needs CREATE on schema ${schema})`);
      });
    }
    const applied = new Set((await client.query(`SELECT version FROM ${schema}.schema_migrations`)).rows.map((r) => Number(r.version)));
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(`SET LOCAL search_path = ${schema}`);
        await client.query(m.sql);
        await client.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw context.storeError(err, `migration ${m.version} (${m.name}) failed`);
      }
    }
    // Checked at start so a role without a right fails now, naming it, rather than on the first import.
    const needed: Array<[string, string]> = [[`has_schema_privilege('${schema}', 'USAGE')`, `USAGE on schema ${schema}`]];
    for (const [table, rights] of [['import_files', ['SELECT', 'INSERT', 'UPDATE']], ['prediction_rows', ['SELECT', 'INSERT', 'UPDATE', 'DELETE']],
      ['actual_rows', ['SELECT', 'INSERT', 'UPDATE', 'DELETE']], ['shap_rows', ['SELECT', 'INSERT', 'UPDATE', 'DELETE']], ['rejected_rows', ['SELECT', 'INSERT', 'DELETE']], ['model_fields', ['SELECT', 'INSERT', 'UPDATE']]] as const) {
      for (const right of rights) needed.push([`has_table_privilege('${schema}.${table}', '${right}')`, `${right} on ${schema}.${table}`]);
    }
    needed.push([`has_database_privilege(current_database(), 'TEMPORARY')`, 'TEMPORARY on the database (an import keeps its key lists in temp tables)']);
    const [held] = (await client.query(`SELECT ${needed.map(([check], i) => `${check} AS r${i}`).join(', ')}`)).rows;
    const missing = needed.filter((_, i) => !held[`r${i}`]).map(([, what]) => what);
    if (missing.length) {
      throw new ImporterError('IMP_ERR_STORE', `the PostgreSQL role lacks ${missing.join('; ')} (${context.where}); GRANT them, or use a role that owns schema ${schema}`, { permanent: true });
    }
  } finally {
    await client.query(`SELECT pg_advisory_unlock(hashtext('inference-importer:migrate:' || $1))`, [schema]).catch(() => undefined);
  }
}
