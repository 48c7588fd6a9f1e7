import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DuckDBConnection, DuckDBInstance, type DuckDBValue } from '@duckdb/node-api';
import { describeError, ImporterError, type ErrorCode, type ErrorLocation } from '../errors.ts';
import { engineOn, sandbox, type Engine, type EngineReader, type OwnedEngine } from '../engine/index.ts';
import { sqlIdent, sqlString } from '../formats/index.ts';
import { BOXES_TYPE, mergeStructFields, STRUCT_FIELD_KINDS, type StructColumns, type StructField } from '../schema/mapping.ts';
import { CURRENT_VERSION, importTransaction, MODEL_SCHEMA, nowSql } from './duckdb-import.ts';
import { INFERENCE_ACTUAL_COLUMNS, JOINED, JOINED_SOURCES, joinedColumnsSql, KeptJoin } from './duckdb-kept-join.ts';
import { Mutex } from '../util/mutex.ts';
import {
  type JobCounts,
  type FilePage,
  type ModelSummary,
  type QueryResult,
  type FileStatus,
  type FileVersion,
  type ImportScope,
  type ImportTransaction,
  type ListedObject,
  type Store,
} from './store.ts';
import { date, LEDGER_COLUMNS, num, toFilePage, toJobCounts, toModelSummary, toVersion } from './rows.ts';

/** Options of the embedded store. */
export interface DuckDbStoreOptions {
  /** Database file; `:memory:` for throwaway stores. */
  path: string;
  /** DuckDB `memory_limit`: bounds the memory of a load; beyond it DuckDB spills to its temp directory. @defaultValue DuckDB's own (80% of RAM); the daemon passes `store.memoryLimit` */
  memoryLimit?: string;
  /** DuckDB `threads`. @defaultValue the number of cores */
  threads?: number;
  /**
   * The only folder SQL run by this store may read (the downloads). DuckDB's external access is
   * switched off for everything else — other paths, the network, ATTACH, COPY — so a job's
   * `select` expressions and read options can reach nothing but the file being imported.
   */
  readableDirectory?: string;
  /** DuckDB `max_temp_directory_size`: the disk its spill may take. @defaultValue DuckDB's own (90% of the free disk) */
  maxTempBytes?: number;
}

/** The in-memory database that readers fill outside the import turn; the import connection reads it in its turn. */
const READS_DATABASE = 'import_reads';

const SCHEMA_SQL = `
  CREATE SEQUENCE IF NOT EXISTS import_file_ids START 1;
  CREATE TABLE IF NOT EXISTS import_files (
    file_id BIGINT NOT NULL DEFAULT nextval('import_file_ids'),
    job_id VARCHAR NOT NULL, bucket VARCHAR NOT NULL, key VARCHAR NOT NULL, etag VARCHAR NOT NULL,
    size BIGINT NOT NULL, last_modified TIMESTAMPTZ,
    status VARCHAR NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    discovered_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,
    rows_read BIGINT, predictions_loaded BIGINT, actuals_loaded BIGINT, rows_rejected BIGINT,
    error_code VARCHAR, error_message VARCHAR, error_column VARCHAR, error_row BIGINT
  );
  CREATE TABLE IF NOT EXISTS actual_rows (
    model_id VARCHAR NOT NULL, environment VARCHAR NOT NULL, prediction_id VARCHAR NOT NULL,
    actual_label VARCHAR, actual_score DOUBLE, relevance_label VARCHAR, relevance_score DOUBLE, actual_ts TIMESTAMPTZ,
    source_file_id BIGINT NOT NULL, source_row BIGINT, loaded_at TIMESTAMPTZ NOT NULL, is_current BOOLEAN NOT NULL DEFAULT true
  );
  -- Added after the first release: stores made before get them here.
  ALTER TABLE actual_rows ADD COLUMN IF NOT EXISTS actual_scores MAP(VARCHAR, DOUBLE);
  ALTER TABLE actual_rows ADD COLUMN IF NOT EXISTS actual_boxes ${BOXES_TYPE};
  CREATE OR REPLACE VIEW actuals AS SELECT * EXCLUDE (is_current) FROM actual_rows WHERE is_current;
  -- Files of SHAP values alone, keyed by prediction ID like actuals. JSON: the values of every model in one table.
  CREATE TABLE IF NOT EXISTS shap_rows (
    model_id VARCHAR NOT NULL, environment VARCHAR NOT NULL, prediction_id VARCHAR NOT NULL, shap JSON,
    source_file_id BIGINT NOT NULL, source_row BIGINT, loaded_at TIMESTAMPTZ NOT NULL, is_current BOOLEAN NOT NULL DEFAULT true
  );
  CREATE OR REPLACE VIEW shap_values AS SELECT * EXCLUDE (is_current) FROM shap_rows WHERE is_current;
  CREATE TABLE IF NOT EXISTS rejected_rows (
    file_id BIGINT NOT NULL, job_id VARCHAR NOT NULL, key VARCHAR NOT NULL, etag VARCHAR NOT NULL,
    row_number BIGINT, column_name VARCHAR, code VARCHAR NOT NULL, message VARCHAR NOT NULL, raw JSON
  );
  CREATE SCHEMA IF NOT EXISTS ${MODEL_SCHEMA};
`;

const PREDICTION_COLUMNS = `model_id VARCHAR NOT NULL, model_version VARCHAR NOT NULL, environment VARCHAR NOT NULL, batch_id VARCHAR,
  prediction_id VARCHAR NOT NULL, prediction_ts TIMESTAMPTZ, prediction_label VARCHAR, prediction_score DOUBLE,
  prediction_scores MAP(VARCHAR, DOUBLE), threshold_scores MAP(VARCHAR, DOUBLE), prediction_group_id VARCHAR, rank INTEGER,
  source_file_id BIGINT NOT NULL, source_row BIGINT, loaded_at TIMESTAMPTZ NOT NULL, is_current BOOLEAN NOT NULL DEFAULT true,
  ${joinedColumnsSql()}`;

/** STRUCT columns of model tables, shown as JSON in the shared `predictions` view. */
const STRUCT_COLUMNS = Object.keys(STRUCT_FIELD_KINDS);

/** Columns of PREDICTION_COLUMNS added after the first release: model tables made before get them when next written. */
const ADDED_PREDICTION_COLUMNS: Record<string, string> = { threshold_scores: 'MAP(VARCHAR, DOUBLE)' };


type Row = Record<string, unknown>;



/** True for DuckDB's optimistic-concurrency conflicts, which succeed when retried. */
const isConflict = (err: unknown) => /conflict/i.test(String((err as Error)?.message));

/** The embedded store: one DuckDB file, written by this process only. */
export class DuckDbStore implements Store {
  readonly kind = 'duckdb';
  private instance!: DuckDBInstance;
  private importConn!: DuckDBConnection;
  /** The import engine is the import connection itself: rows go from file to table without leaving DuckDB. */
  private engine!: OwnedEngine;
  private ledgerConn!: DuckDBConnection;
  private readConn!: DuckDBConnection;
  /** Operators' ad-hoc SELECTs run here, so a slow one can be interrupted without touching anything else. */
  private sqlConn!: DuckDBConnection;
  private readonly sqlLock = new Mutex();
  /** Imports run one group at a time (see importFile). DuckDB parallelises each one. */
  private readonly importLock = new Mutex();
  private readonly ledgerLock = new Mutex();
  private readonly readLock = new Mutex();
  private stageSeq = 0;
  /** The join kept on the model tables' rows, behind `inferences`. */
  private readonly keptJoin = new KeptJoin((conn, sql, params) => this.all(conn, sql, params), MODEL_SCHEMA);

  constructor(private readonly options: DuckDbStoreOptions) {}

  async init(): Promise<void> {
    if (this.options.path !== ':memory:') await mkdir(dirname(this.options.path), { recursive: true });
    const settings: Record<string, string> = {};
    if (this.options.memoryLimit) settings.memory_limit = this.options.memoryLimit;
    if (this.options.threads) settings.threads = String(this.options.threads);
    if (this.options.maxTempBytes) settings.max_temp_directory_size = `${this.options.maxTempBytes} bytes`;
    try {
      this.instance = await DuckDBInstance.create(this.options.path, settings);
    } catch (err) {
      const held = /lock/i.test((err as Error).message) ? ' (another process holds it: the embedded store allows one writer process)' : '';
      throw new ImporterError('IMP_ERR_STORE', `cannot open DuckDB store ${this.options.path}: ${(err as Error).message}${held}`, {
        cause: err,
        permanent: true,
      });
    }
    this.importConn = await this.instance.connect();
    this.ledgerConn = await this.instance.connect();
    this.readConn = await this.instance.connect();
    this.sqlConn = await this.instance.connect();
    // Naive timestamps in files are read as UTC, whatever the host's zone.
    for (const c of [this.importConn, this.ledgerConn, this.readConn, this.sqlConn]) await c.run("SET TimeZone = 'UTC'");
    await this.importConn.run(SCHEMA_SQL);
    await this.keptJoin.addColumns(this.importConn);
    await this.rebuildViews(this.importConn);
    // Files read outside the import turn land here (see openReader): in memory, never in the store's file.
    // Attached before the sandbox, which forbids ATTACH.
    await this.importConn.run(`ATTACH ':memory:' AS ${READS_DATABASE}`);
    if (this.options.readableDirectory) await sandbox(this.importConn, this.options.readableDirectory);
    this.engine = engineOn(this.importConn, this.instance, `${READS_DATABASE}.main`);
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  private async all(conn: DuckDBConnection, sql: string, params: DuckDBValue[] = []): Promise<Row[]> {
    const reader = await conn.runAndReadAll(sql, params);
    return reader.getRowObjectsJson() as Row[];
  }

  /** Small ledger writes; retried on write-write conflicts with a concurrent import. */
  private ledgerWrite<T>(fn: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
    return this.ledgerLock.run(async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.ledgerConn.run('BEGIN TRANSACTION');
          const out = await fn(this.ledgerConn);
          await this.ledgerConn.run('COMMIT');
          return out;
        } catch (err) {
          await this.ledgerConn.run('ROLLBACK').catch(() => undefined);
          if (!isConflict(err) || attempt >= 5) throw err;
          await new Promise((r) => setTimeout(r, 20 * attempt));
        }
      }
    });
  }

  /** Runs a query of the importer's own on the store's database (tests, the demo, benchmarks; not part of `Store`). */
  query<T = Row>(sql: string, params: unknown[] = []): Promise<T[]> {
    return this.readLock.run(() => this.all(this.readConn, sql, params as DuckDBValue[]) as Promise<T[]>);
  }

  async latestVersions(jobId: string, keys?: readonly string[]): Promise<Map<string, FileVersion>> {
    if (keys?.length === 0) return new Map();
    const rows = await this.query(
      `SELECT ${LEDGER_COLUMNS} FROM import_files WHERE job_id = $1 ${keys ? `AND key IN (SELECT unnest(from_json($2::JSON, '["VARCHAR"]')))` : ''}
       ${CURRENT_VERSION}`,
      keys ? [jobId, JSON.stringify(keys)] : [jobId],
    );
    return new Map(rows.map((r) => [String(r.key), toVersion(r)]));
  }

  async getVersion(fileId: number): Promise<FileVersion | undefined> {
    const rows = await this.query(`SELECT ${LEDGER_COLUMNS} FROM import_files WHERE file_id = $1`, [fileId]);
    return rows[0] ? toVersion(rows[0]) : undefined;
  }

  recordDiscovered(jobId: string, objects: ListedObject[]): Promise<FileVersion[]> {
    if (objects.length === 0) return Promise.resolve([]);
    return this.ledgerWrite(async (conn) => {
      const now = new Date().toISOString();
      const batch = JSON.stringify(
        objects.map((o) => ({ bucket: o.bucket, key: o.key, etag: o.etag, size: o.size, last_modified: o.lastModified.toISOString() })),
      );
      await conn.run(`CREATE OR REPLACE TEMP TABLE discovered AS
        SELECT bucket, key, etag, CAST(size AS BIGINT) AS size, CAST(last_modified AS TIMESTAMPTZ) AS last_modified
        FROM (SELECT unnest(from_json($1::JSON, '[{"bucket":"VARCHAR","key":"VARCHAR","etag":"VARCHAR","size":"BIGINT","last_modified":"VARCHAR"}]'), recursive := true))`, [batch]);
      // A version seen before (the object went back to older content, or its listed size changed) becomes current and pending again.
      await conn.run(
        `UPDATE import_files f SET status = 'pending', attempts = 0, discovered_at = CAST($2 AS TIMESTAMPTZ), finished_at = NULL,
           size = d.size, last_modified = d.last_modified,
           error_code = NULL, error_message = NULL, error_column = NULL, error_row = NULL
         FROM discovered d WHERE f.job_id = $1 AND f.key = d.key AND f.etag = d.etag`,
        [jobId, now],
      );
      await conn.run(
        `INSERT INTO import_files (job_id, bucket, key, etag, size, last_modified, status, attempts, discovered_at)
         SELECT $1, d.bucket, d.key, d.etag, d.size, d.last_modified, 'pending', 0, CAST($2 AS TIMESTAMPTZ) FROM discovered d
         WHERE NOT EXISTS (SELECT 1 FROM import_files f WHERE f.job_id = $1 AND f.key = d.key AND f.etag = d.etag)`,
        [jobId, now],
      );
      const rows = await this.all(
        conn,
        `SELECT ${LEDGER_COLUMNS.split(',').map((c) => `f.${c.trim()}`).join(', ')} FROM import_files f JOIN discovered d ON f.key = d.key AND f.etag = d.etag
         WHERE f.job_id = $1 ORDER BY f.file_id`,
        [jobId],
      );
      await conn.run('DROP TABLE discovered');
      return rows.map(toVersion);
    });
  }

  recordFailure(fileId: number, attempts: number, error: { code: ErrorCode; message: string; location: ErrorLocation }, final: boolean): Promise<void> {
    return this.ledgerWrite(async (conn) => {
      await conn.run(
        `UPDATE import_files SET status = CASE WHEN status IN ('succeeded', 'partially_succeeded') THEN status ELSE $2 END,
           attempts = $3, error_code = $4, error_message = $5, error_column = $6, error_row = $7,
           finished_at = CASE WHEN $2 = 'failed' THEN ${nowSql()} ELSE finished_at END
         WHERE file_id = $1`,
        [fileId, final ? 'failed' : 'pending', attempts, error.code, error.message, error.location.column ?? null, error.location.row ?? null],
      );
    });
  }

  recordOutcome(fileId: number, status: 'superseded' | 'vanished', message: string): Promise<void> {
    return this.ledgerWrite(async (conn) => {
      await conn.run(
        `UPDATE import_files SET status = $2, error_message = $3, finished_at = ${nowSql()}
         WHERE file_id = $1 AND status NOT IN ('succeeded', 'partially_succeeded')`,
        [fileId, status, message],
      );
    });
  }

  runImport<T>(scope: ImportScope, fn: (tx: ImportTransaction, engine: Engine) => Promise<T>): Promise<T> {
    return this.importLock.run(async () => {
      const conn = this.importConn;
      await conn.run('BEGIN TRANSACTION');
      try {
        const out = await fn(importTransaction(conn, scope, {
          all: (c, sql, params) => this.all(c, sql, params),
          engine: this.engine,
          keptJoin: this.keptJoin,
          ensureModelTable: (c, modelId, structs) => this.ensureModelTable(c, modelId, structs),
          nextStage: () => ++this.stageSeq,
        }), this.engine);
        await conn.run('COMMIT');
        return out;
      } catch (err) {
        await conn.run('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  openReader(): Promise<EngineReader> {
    return this.engine.openReader();
  }

  async jobCounts(): Promise<Map<string, JobCounts>> {
    const rows = await this.query(
      `SELECT job_id, status, count(*) AS n, sum(coalesce(predictions_loaded, 0) + coalesce(actuals_loaded, 0)) AS loaded, sum(coalesce(rows_rejected, 0)) AS rejected
       FROM (SELECT * FROM import_files ${CURRENT_VERSION})
       GROUP BY ALL`,
    );
    return toJobCounts(rows);
  }

  async listFiles(jobId: string, options: { status?: FileStatus; limit: number; offset: number; errors: number }): Promise<FilePage> {
    const current = `SELECT * FROM import_files WHERE job_id = $1 ${CURRENT_VERSION}`;
    const filter = options.status ? 'WHERE status = $2' : '';
    const params: unknown[] = options.status ? [jobId, options.status] : [jobId];
    const [{ n }] = await this.query<{ n: number }>(`SELECT count(*)::INT AS n FROM (${current}) ${filter}`, params);
    const rows = await this.query(
      `SELECT ${LEDGER_COLUMNS} FROM (${current}) ${filter} ORDER BY discovered_at DESC, key LIMIT ${Math.floor(options.limit)} OFFSET ${Math.floor(options.offset)}`,
      params,
    );
    const files = rows.map(toVersion);
    if (files.length === 0) return { total: n, files: [] };
    const keys = files.map((f) => f.key);
    const ids = files.map((f) => f.fileId);
    const older = await this.query(
      `SELECT key, etag, status, discovered_at, finished_at, file_id FROM import_files
       WHERE job_id = $1 AND key IN (${keys.map(sqlString).join(', ')}) AND file_id NOT IN (${ids.join(', ')})
       ORDER BY discovered_at DESC`,
      [jobId],
    );
    const errors = await this.query(
      `SELECT file_id, code, message, row_number, column_name FROM rejected_rows WHERE file_id IN (${ids.join(', ')})
       QUALIFY row_number() OVER (PARTITION BY file_id ORDER BY row_number) <= ${Math.floor(options.errors)} ORDER BY file_id, row_number`,
    );
    return toFilePage(Number(n), files, older, errors);
  }

  resetVersions(jobId: string, which: { failed: true } | { all: true } | { key: string }): Promise<FileVersion[]> {
    return this.ledgerWrite(async (conn) => {
      const current = `SELECT file_id FROM import_files WHERE job_id = $1 ${CURRENT_VERSION}`;
      const where = 'failed' in which ? `status = 'failed'` : 'all' in which ? 'true' : `key = $2`;
      const params = 'key' in which ? [jobId, which.key] : [jobId];
      const ids = (await this.all(conn, `SELECT file_id FROM import_files WHERE file_id IN (${current}) AND ${where}`, params as DuckDBValue[])).map((r) => Number(r.file_id));
      if (ids.length === 0) return [];
      await conn.run(
        `UPDATE import_files SET status = 'pending', attempts = 0, finished_at = NULL, error_code = NULL, error_message = NULL, error_column = NULL, error_row = NULL
         WHERE file_id IN (${ids.join(', ')})`,
      );
      return (await this.all(conn, `SELECT ${LEDGER_COLUMNS} FROM import_files WHERE file_id IN (${ids.join(', ')}) ORDER BY key`)).map(toVersion);
    });
  }

  purgeJob(jobId: string): Promise<{ files: number; predictions: number; actuals: number }> {
    // Under the import lock: no import of this job (or another) is half way through its transaction.
    return this.importLock.run(() => this.ledgerLock.run(async () => {
      const conn = this.importConn;
      const ids = `SELECT file_id FROM import_files WHERE job_id = ${sqlString(jobId)}`;
      const tables = (await this.all(conn, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'`, [MODEL_SCHEMA]))
        .map((t) => ({ table: `${MODEL_SCHEMA}.${sqlIdent(String(t.table_name))}`, keys: ['model_version', 'prediction_id'] }));
      const out = { files: 0, predictions: 0, actuals: 0 };
      await conn.run('BEGIN TRANSACTION');
      try {
        // Keys whose actual or SHAP-file rows go: the prediction rows of those keys take what remains current.
        for (const source of JOINED_SOURCES) {
          await conn.run(`CREATE OR REPLACE TEMP TABLE purged_${source} AS SELECT DISTINCT model_id, environment, prediction_id FROM ${source} WHERE source_file_id IN (${ids})`);
        }
        for (const { table, keys } of [...tables, { table: 'actual_rows', keys: ['prediction_id'] }, { table: 'shap_rows', keys: ['prediction_id'] }]) {
          const deleted = Number((await this.all(conn, `DELETE FROM ${table} WHERE source_file_id IN (${ids})`))[0]?.Count ?? 0);
          if (table === 'actual_rows') out.actuals += deleted;
          else if (table !== 'shap_rows') out.predictions += deleted;
          if (!deleted) continue;
          // A key whose current row went away: the newest remaining row (another job's file) becomes current.
          const k = ['model_id', 'environment', ...keys];
          await conn.run(
            `UPDATE ${table} t SET is_current = true
             FROM (SELECT ${k.join(', ')}, max(source_file_id) AS top FROM ${table} GROUP BY ALL HAVING NOT bool_or(is_current)) w
             WHERE ${k.map((c) => `t.${c} = w.${c}`).join(' AND ')} AND t.source_file_id = w.top`,
          );
        }
        for (const source of JOINED_SOURCES) {
          if ((await this.all(conn, `SELECT 1 FROM purged_${source} LIMIT 1`)).length) {
            for (const { table } of tables) await this.keptJoin.refreshKeys(conn, table, source, `SELECT * FROM purged_${source}`);
          }
          await conn.run(`DROP TABLE purged_${source}`);
        }
        await conn.run(`DELETE FROM rejected_rows WHERE job_id = $1`, [jobId]);
        out.files = Number((await this.all(conn, `DELETE FROM import_files WHERE job_id = $1`, [jobId]))[0]?.Count ?? 0);
        await conn.run('COMMIT');
      } catch (err) {
        await conn.run('ROLLBACK').catch(() => undefined);
        throw err;
      }
      return out;
    }));
  }

  async modelSummaries(): Promise<ModelSummary[]> {
    const rows = await this.query(
      `WITH p AS (SELECT model_id, environment, count(*) AS predictions FROM predictions GROUP BY ALL),
            a AS (SELECT model_id, environment, count(*) AS actuals FROM actuals GROUP BY ALL),
            j AS (SELECT a.model_id, a.environment, count(*) AS joined,
                         quantile_cont(greatest(0, epoch(a.actual_ts) - epoch(p.prediction_ts)), 0.5) AS p50,
                         quantile_cont(greatest(0, epoch(a.actual_ts) - epoch(p.prediction_ts)), 0.9) AS p90
                  FROM actuals a JOIN predictions p USING (model_id, environment, prediction_id) GROUP BY ALL)
       SELECT model_id, environment, coalesce(predictions, 0) AS predictions, coalesce(actuals, 0) AS actuals, coalesce(joined, 0) AS joined, p50, p90
       FROM p FULL JOIN a USING (model_id, environment) LEFT JOIN j USING (model_id, environment) ORDER BY model_id, environment`,
    );
    return rows.map(toModelSummary);
  }

  readOnlyQuery(sql: string, limit: number, timeoutMs: number): Promise<QueryResult> {
    return this.sqlLock.run(async () => {
      const conn = this.sqlConn;
      const [{ j }] = (await conn.runAndReadAll(`SELECT json_serialize_sql(${sqlString(sql)}) AS j`)).getRowObjectsJson() as Array<{ j: string }>;
      const tree = JSON.parse(j);
      const refuse = (why: string) => new ImporterError('IMP_ERR_SQL_REFUSED', why, { permanent: true });
      if (tree.error) throw refuse(/SELECT statements/i.test(tree.error_message) ? 'only a single SELECT statement is accepted' : `the query does not parse: ${tree.error_message}`);
      if (tree.statements.length !== 1) throw refuse('only a single SELECT statement is accepted');
      if (/"TABLE_FUNCTION"/.test(j)) throw refuse('table functions (read_csv, read_parquet, ...) are not accepted: query the store tables and views');
      if (/"function_name":"(nextval|setval|currval)"/.test(j)) throw refuse('sequence functions change state and are not accepted');
      // Files being read before their import's turn sit there (see openReader): not store data.
      if (new RegExp(`"(catalog|schema)_name":"${READS_DATABASE}"`, 'i').test(j)) throw refuse(`${READS_DATABASE} holds files being read, not store data: query the store tables and views`);
      const timer = setTimeout(() => conn.interrupt(), timeoutMs);
      try {
        const reader = await conn.runAndReadUntil(`SELECT * FROM (${sql.replace(/;\s*$/, '')}) LIMIT ${Math.floor(limit) + 1}`, limit + 1);
        const rows = reader.getRowObjectsJson() as Array<Record<string, unknown>>;
        return { columns: reader.columnNames(), rows: rows.slice(0, limit), truncated: rows.length > limit };
      } catch (err) {
        if (/interrupt/i.test(String((err as Error).message))) throw refuse(`the query ran longer than ${timeoutMs} ms and was stopped`);
        throw refuse(describeError(err).message.split('\n')[0]);
      } finally {
        clearTimeout(timer);
      }
    });
  }

  /** Creates the model's typed table, or widens its STRUCT columns (features, tags, SHAP, embeddings) to hold this file's fields. */
  private async ensureModelTable(conn: DuckDBConnection, modelId: string, structs: StructColumns): Promise<void> {
    const table = `${MODEL_SCHEMA}.${sqlIdent(modelId)}`;
    const existing = await this.all(
      conn,
      // DuckDB table names ignore case: models "M" and "m" share a table, their rows told apart by model_id.
      `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND lower(table_name) = lower($2)`,
      [MODEL_SCHEMA, modelId],
    );
    let viewsStale = existing.length === 0;
    if (existing.length === 0) await conn.run(`CREATE TABLE ${table} (${PREDICTION_COLUMNS})`);
    for (const [column, type] of Object.entries(ADDED_PREDICTION_COLUMNS)) {
      if (existing.length && !existing.some((c) => c.column_name === column)) {
        await conn.run(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
        viewsStale = true;
      }
    }
    for (const [column, fields] of Object.entries(structs) as Array<[string, StructField[]]>) {
      if (fields.length === 0) continue;
      if (!existing.some((c) => c.column_name === column)) {
        await conn.run(`ALTER TABLE ${table} ADD COLUMN ${column} ${structType(fields)}`);
        viewsStale = true;
        continue;
      }
      const { merged, changed } = mergeStructFields(modelId, column, await this.structFields(conn, table, column), fields);
      if (changed) {
        const type = `STRUCT(${[...merged].map(([n, t]) => `${sqlIdent(n)} ${t}`).join(', ')})`;
        await conn.run(`ALTER TABLE ${table} ALTER COLUMN ${column} TYPE ${type}`);
      }
    }
    if (viewsStale) await this.rebuildViews(conn);
  }

  private async structFields(conn: DuckDBConnection, table: string, column: string): Promise<Array<[string, string]>> {
    const rows = await this.all(conn, `DESCRIBE SELECT ${column}.* FROM ${table}`);
    return rows.map((r) => [String(r.column_name), String(r.column_type)]);
  }

  /** `predictions` and `inferences`: every model's rows, with features and tags as JSON; typed data stays in the per-model tables. */
  private async rebuildViews(conn: DuckDBConnection): Promise<void> {
    const tables = await this.all(
      conn,
      `SELECT table_name, list(column_name) AS cols FROM information_schema.columns WHERE table_schema = $1 GROUP BY table_name ORDER BY table_name`,
      [MODEL_SCHEMA],
    );
    const select = (joined: boolean) => tables.map((t) => {
      const cols = t.cols as string[];
      const json = (c: string) => (cols.includes(c) ? `to_json(${c})` : 'NULL::JSON');
      // SHAP values sent in a file of their own take the place of those sent with the prediction.
      const struct = (c: string) => (joined && c === 'shap' ? `COALESCE(file_shap, ${json(c)})` : json(c));
      return `SELECT model_id, model_version, environment, batch_id, prediction_id, prediction_ts, prediction_label, prediction_score,
                prediction_scores, ${cols.includes('threshold_scores') ? 'threshold_scores' : 'NULL::MAP(VARCHAR, DOUBLE)'} AS threshold_scores,
                prediction_group_id, rank, ${STRUCT_COLUMNS.map((c) => `${struct(c)} AS ${c}`).join(', ')}
                ${joined ? `, ${INFERENCE_ACTUAL_COLUMNS.join(', ')}` : ''}
              FROM ${MODEL_SCHEMA}.${sqlIdent(String(t.table_name))} WHERE is_current`;
    });
    const parts = select(false);
    const empty = `SELECT NULL::VARCHAR AS model_id, NULL::VARCHAR AS model_version, NULL::VARCHAR AS environment, NULL::VARCHAR AS batch_id, NULL::VARCHAR AS prediction_id,
      NULL::TIMESTAMPTZ AS prediction_ts, NULL::VARCHAR AS prediction_label, NULL::DOUBLE AS prediction_score,
      NULL::MAP(VARCHAR, DOUBLE) AS prediction_scores, NULL::MAP(VARCHAR, DOUBLE) AS threshold_scores, NULL::VARCHAR AS prediction_group_id, NULL::INTEGER AS rank,
      ${STRUCT_COLUMNS.map((c) => `NULL::JSON AS ${c}`).join(', ')} WHERE false`;
    await conn.run(`CREATE OR REPLACE VIEW predictions AS ${parts.length ? parts.join(' UNION ALL ') : empty}`);
    // The join of predictions to actuals and SHAP files, read off the model tables that keep it (see JOINED).
    const joined = select(true);
    const emptyJoined = `SELECT *, ${JOINED.actual_rows.map(([c, , t]) => `NULL::${t} AS ${c}`).join(', ')} FROM (${empty})`;
    await conn.run(`CREATE OR REPLACE VIEW inferences AS ${joined.length ? joined.join(' UNION ALL ') : emptyJoined}`);
  }

  async close(): Promise<void> {
    // Readers still reading are stopped (their files are retried), so that closing waits for no parse.
    await this.engine?.closeReaders();
    await this.importLock.run(async () => {
      await this.importConn.run('CHECKPOINT').catch(() => undefined);
      for (const c of [this.importConn, this.ledgerConn, this.readConn, this.sqlConn]) c?.closeSync();
      this.instance?.closeSync();
    });
  }
}


function structType(fields: StructField[]): string {
  return `STRUCT(${fields.map((f) => `${sqlIdent(f.name)} ${f.type}`).join(', ')})`;
}

