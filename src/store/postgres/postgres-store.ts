import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { openMemoryEngine, type Engine, type EngineReader, type OwnedEngine } from '../../engine/index.ts';
import { describeError, ImporterError, type ErrorCode, type ErrorLocation } from '../../errors.ts';
import { mergeStructFields, type StructColumns, type StructField } from '../../schema/mapping.ts';
import { Mutex } from '../../util/mutex.ts';
import {
  type EngineRows,
  type FilePage,
  type FileStatus,
  type FileVersion,
  type ImportScope,
  type ImportTransaction,
  type JobCounts,
  type ListedObject,
  type ModelSummary,
  type QueryResult,
  type Store,
} from '../store.ts';
import { CsvPipe } from './copy-pipe.ts';
import { currentVersions, importTransaction } from './import-transaction.ts';
import { migrate } from './migrations.ts';
import { date, LEDGER_COLUMNS, num, toFilePage, toJobCounts, toModelSummary, toVersion } from '../rows.ts';

/** Options of the PostgreSQL store (`store` in the config, kind postgres). */
export interface PostgresStoreOptions {
  /** Connection URL; may carry `sslmode`. */
  url: string;
  /** Schema of the tables and views, created when missing. @defaultValue 'public' */
  schema: string;
  /** Connections per process. @defaultValue 4 */
  poolSize: number;
  /** statement_timeout of the store's own statements, in ms. @defaultValue 5 minutes */
  statementTimeout: number;
  /** TLS settings beyond the URL's. */
  ssl?: { ca?: string; rejectUnauthorized: boolean };
  /** memory_limit of the private DuckDB that reads, maps and validates files. */
  memoryLimit: string;
  /** threads of that DuckDB. */
  threads?: number;
  /** The downloads folder: the only one the private DuckDB may read and write. */
  readableDirectory: string;
  /** The disk that DuckDB's spill may take. */
  maxTempBytes?: number;
}

type Row = Record<string, unknown>;

/** Functions an operator's read-only query may not call: they read the server's files or act on other sessions. */
const REFUSED_FUNCTIONS = /\b(pg_read_file|pg_read_binary_file|pg_ls_\w+|pg_stat_file|lo_\w+|dblink\w*|pg_terminate_backend|pg_cancel_backend|pg_sleep\w*|set_config|pg_advisory\w*|query_to_xml\w*|nextval|setval)\s*\(/i;

/** SQLSTATEs a retry can mend: deadlock, serialization failure, connection trouble, admin shutdown, too many connections. */
const TRANSIENT_STATES = /^(40P01|40001|08\w{3}|57P0[1-3]|53300)$/;

/**
 * The shared store: many worker processes on many machines write into one PostgreSQL database.
 * Files are read, mapped and validated in a private in-memory DuckDB per process; their rows leave
 * it as CSV into `COPY … FROM STDIN` (streamed from disk, never whole in memory), and one
 * transaction per import replaces what earlier versions contributed, loads rows, rejected rows and
 * the ledger row. The ledger decides between concurrent imports of one key: its rows are locked
 * (`FOR UPDATE`) and the newest version wins whatever the timing; merges of one model take turns
 * on an advisory lock, so the current-row flag (`is_current`) stays right across workers.
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres';
  private pool!: pg.Pool;
  private engine!: OwnedEngine & { close(): void };
  /** One import at a time per process: the engine is one DuckDB connection. Other processes import in parallel. */
  private readonly importLock = new Mutex();
  private readonly csvPipe: CsvPipe;

  constructor(private readonly options: PostgresStoreOptions) {
    this.csvPipe = new CsvPipe(options.readableDirectory);
  }

  /** Where the URL points, without credentials, for messages. */
  private where(): string {
    try {
      const u = new URL(this.options.url);
      return `${u.hostname}:${u.port || 5432}${u.pathname}`;
    } catch {
      return 'store.url';
    }
  }

  async init(): Promise<void> {
    const ssl = this.options.ssl
      ? { rejectUnauthorized: this.options.ssl.rejectUnauthorized, ...(this.options.ssl.ca ? { ca: await readFile(this.options.ssl.ca, 'utf8') } : {}) }
      : undefined;
    // Called again while the database is unreachable at start (see openStore in daemon.ts): one pool.
    if (!this.pool) this.pool = this.createPool(ssl);
    await this.migrate();
    this.engine ??= await openMemoryEngine({ readableDirectory: this.options.readableDirectory, memoryLimit: this.options.memoryLimit, threads: this.options.threads, maxTempBytes: this.options.maxTempBytes });
  }

  private createPool(ssl: pg.PoolConfig['ssl']): pg.Pool {
    const pool = new pg.Pool({
      connectionString: this.options.url,
      max: this.options.poolSize,
      ssl,
      statement_timeout: this.options.statementTimeout,
      connectionTimeoutMillis: 10_000,
      options: `-c search_path=${this.options.schema}`,
      application_name: 'inference-importer',
    });
    // A dropped idle connection must not crash the process; the next query reconnects.
    pool.on('error', () => undefined);
    return pool;
  }

  /** Brings the schema to the newest migration and checks the role's rights (see migrations.ts). */
  private async migrate(): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw this.storeError(err, 'cannot connect to PostgreSQL');
    }
    try {
      await migrate(client, this.options.schema, { where: this.where(), storeError: (err, what) => this.storeError(err, what) });
    } finally {
      client.release();
    }
  }

  /** A store error that names the database and what to do, from a pg error. */
  private storeError(err: unknown, what: string): ImporterError {
    if (err instanceof ImporterError) return err;
    const e = err as Error & { code?: string };
    const hint =
      e.code === 'ECONNREFUSED' || e.code === 'ENOTFOUND' || e.code === 'ETIMEDOUT' || /timeout/i.test(e.message)
        ? 'the database is unreachable: check store.url and the network'
        : e.code === '28P01' || e.code === '28000'
          ? 'the credentials were refused: check the user and password in store.url'
          : e.code === '3D000'
            ? 'the database does not exist: create it or fix store.url'
            : e.code === '42501'
              ? 'the role lacks a right it needs: GRANT it, or use a role that owns the schema'
              : 'see the cause';
    const message = e.message?.replaceAll(this.options.url, 'store.url') ?? String(err);
    return new ImporterError('IMP_ERR_STORE', `${what} at ${this.where()}: ${message} (${hint})`, {
      cause: err,
      permanent: e.code === '28P01' || e.code === '28000' || e.code === '3D000' || e.code === '42501',
    });
  }

  /** Runs a statement of the store's own on a pooled connection. */
  private async all(sql: string, params: unknown[] = [], client?: pg.PoolClient): Promise<Row[]> {
    try {
      return (await (client ?? this.pool).query(sql, params)).rows;
    } catch (err) {
      throw this.pgError(err);
    }
  }

  /** A pg error as the importer's: transient ones retried, others naming the statement's failure. */
  private pgError(err: unknown): unknown {
    if (err instanceof ImporterError) return err;
    const e = err as Error & { code?: string };
    // pg's own failures without a code are plain Errors; one of another class thrown inside a
    // transaction (the import's NeedsStaging, a TypeError) is not PostgreSQL's and passes as it is.
    if (!e.code && err instanceof Error && Object.getPrototypeOf(err) !== Error.prototype) return err;
    if (e.code && TRANSIENT_STATES.test(e.code)) return new ImporterError('IMP_ERR_STORE', `PostgreSQL (${this.where()}): ${e.message}; retried`, { cause: err });
    if (!e.code || /^(ECONN|ETIMEDOUT|EPIPE)/.test(e.code) || /Connection terminated|timeout/i.test(e.message)) return this.storeError(err, 'PostgreSQL failed');
    return err;
  }

  /** Runs `fn` in one transaction on one pooled connection. */
  private async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw this.storeError(err, 'cannot connect to PostgreSQL');
    }
    let broken = false;
    try {
      await client.query('BEGIN');
      const out = await fn(client);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw this.pgError(err);
    } finally {
      client.release(broken);
    }
  }

  /** Test and tooling accessor (not part of `Store`): a query on the store's database. */
  async query<T = Row>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.all(sql, params)) as T[];
  }

  async ping(): Promise<void> {
    await this.all('SELECT 1');
  }

  async latestVersions(jobId: string, keys?: readonly string[]): Promise<Map<string, FileVersion>> {
    if (keys?.length === 0) return new Map();
    const rows = await this.all(
      `SELECT ${LEDGER_COLUMNS} FROM (${currentVersions(`job_id = $1 ${keys ? 'AND key = ANY($2)' : ''}`)}) c`,
      keys ? [jobId, keys] : [jobId],
    );
    return new Map(rows.map((r) => [String(r.key), toVersion(r)]));
  }

  async getVersion(fileId: number): Promise<FileVersion | undefined> {
    const rows = await this.all(`SELECT ${LEDGER_COLUMNS} FROM import_files WHERE file_id = $1`, [fileId]);
    return rows[0] ? toVersion(rows[0]) : undefined;
  }

  recordDiscovered(jobId: string, objects: ListedObject[]): Promise<FileVersion[]> {
    if (objects.length === 0) return Promise.resolve([]);
    return this.transaction(async (c) => {
      const now = new Date();
      const arrays = [objects.map((o) => o.bucket), objects.map((o) => o.key), objects.map((o) => o.etag), objects.map((o) => o.size), objects.map((o) => o.lastModified)];
      const discovered = `SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[]) AS d(bucket, key, etag, size, last_modified)`;
      // A version seen before (the object went back to older content, or its listed size changed) becomes current and pending again.
      await c.query(
        `UPDATE import_files f SET status = 'pending', attempts = 0, discovered_at = $7, finished_at = NULL, size = d.size, last_modified = d.last_modified,
           error_code = NULL, error_message = NULL, error_column = NULL, error_row = NULL
         FROM (${discovered}) d WHERE f.job_id = $1 AND f.key = d.key AND f.etag = d.etag`,
        [jobId, ...arrays, now],
      );
      await c.query(
        `INSERT INTO import_files (job_id, bucket, key, etag, size, last_modified, status, attempts, discovered_at)
         SELECT $1, d.bucket, d.key, d.etag, d.size, d.last_modified, 'pending', 0, $7 FROM (${discovered}) d
         ON CONFLICT (job_id, key, etag) DO NOTHING`,
        [jobId, ...arrays, now],
      );
      const rows = (await c.query(
        `SELECT ${LEDGER_COLUMNS.split(',').map((x) => `f.${x.trim()}`).join(', ')} FROM import_files f JOIN (${discovered}) d ON f.key = d.key AND f.etag = d.etag
         WHERE f.job_id = $1 ORDER BY f.file_id`,
        [jobId, ...arrays],
      )).rows;
      return rows.map(toVersion);
    });
  }

  async recordFailure(fileId: number, attempts: number, error: { code: ErrorCode; message: string; location: ErrorLocation }, final: boolean): Promise<void> {
    await this.all(
      `UPDATE import_files SET status = CASE WHEN status IN ('succeeded', 'partially_succeeded') THEN status ELSE $2::text END,
         attempts = $3, error_code = $4, error_message = $5, error_column = $6, error_row = $7,
         finished_at = CASE WHEN $2::text = 'failed' THEN $8::timestamptz ELSE finished_at END
       WHERE file_id = $1`,
      [fileId, final ? 'failed' : 'pending', attempts, error.code, error.message, error.location.column ?? null, error.location.row ?? null, new Date()],
    );
  }

  async recordOutcome(fileId: number, status: 'superseded' | 'vanished', message: string): Promise<void> {
    await this.all(
      `UPDATE import_files SET status = $2, error_message = $3, finished_at = $4 WHERE file_id = $1 AND status NOT IN ('succeeded', 'partially_succeeded')`,
      [fileId, status, message, new Date()],
    );
  }

  runImport<T>(scope: ImportScope, fn: (tx: ImportTransaction, engine: Engine) => Promise<T>): Promise<T> {
    return this.importLock.run(() => this.transaction((client) => fn(importTransaction(client, scope, {
      copyIn: (table, rows, columns) => this.copyIn(client, table, rows, columns),
      ensureFields: (modelId, structs) => this.ensureFields(client, modelId, structs),
    }), this.engine)));
  }

  openReader(): Promise<EngineReader> {
    return this.engine.openReader();
  }

  /**
   * Streams an engine relation into a table by COPY: the engine writes it as CSV (nested values as
   * JSON text) into a pipe that `COPY … FROM STDIN` reads at the same time (see pipeCsv).
   * `columns` names the table's columns in order; the relation's columns missing from it load NULL
   * (or the column's default). Returns the rows COPY loaded, which must be those the engine wrote.
   */
  private async copyIn(client: pg.PoolClient, table: string, rows: EngineRows, columns: Record<string, string>): Promise<number> {
    const have = new Set((await rows.engine.run(`DESCRIBE SELECT * FROM (${rows.sql})`)).map((r) => String(r.column_name)));
    const cols = Object.keys(columns).filter((c) => have.has(c));
    const select = cols.map((c) => (columns[c] === 'JSONB' ? `CAST(to_json(${c}) AS VARCHAR) AS ${c}` : c));
    let copied = 0;
    const written = await this.csvPipe.pipe((path) => rows.engine.writeCsv(`SELECT ${select.join(', ')} FROM (${rows.sql})`, path), () => {
      const stream = client.query(copyFrom(`COPY ${table} (${cols.join(', ')}) FROM STDIN (FORMAT csv)`));
      stream.on('finish', () => { copied = stream.rowCount; });
      return stream;
    });
    if (copied !== written) throw new ImporterError('IMP_ERR_INTERNAL', `COPY into ${table} loaded ${copied} rows where the engine wrote ${written}`);
    return copied;
  }

  /** Records the fields this file brings to a model's feature, tag, SHAP and embedding columns; a field whose type changed fails the file. */
  private async ensureFields(client: pg.PoolClient, modelId: string, structs: StructColumns): Promise<void> {
    for (const [column, fields] of Object.entries(structs) as Array<[string, StructField[]]>) {
      if (fields.length === 0) continue;
      const stored = (await client.query(`SELECT field, type FROM model_fields WHERE model_id = $1 AND column_name = $2`, [modelId, column])).rows.map((r) => [String(r.field), String(r.type)] as [string, string]);
      const { merged, changed } = mergeStructFields(modelId, column, stored, fields);
      if (!changed) continue;
      await client.query(
        `INSERT INTO model_fields (model_id, column_name, field, type) SELECT $1, $2, f, t FROM unnest($3::text[], $4::text[]) AS x(f, t)
         ON CONFLICT (model_id, column_name, field) DO UPDATE SET type = excluded.type`,
        [modelId, column, [...merged.keys()], [...merged.values()]],
      );
    }
  }

  async jobCounts(): Promise<Map<string, JobCounts>> {
    const rows = await this.all(
      `SELECT job_id, status, count(*) AS n, sum(coalesce(predictions_loaded, 0) + coalesce(actuals_loaded, 0)) AS loaded, sum(coalesce(rows_rejected, 0)) AS rejected
       FROM (${currentVersions('true')}) c GROUP BY job_id, status`,
    );
    return toJobCounts(rows);
  }

  async listFiles(jobId: string, options: { status?: FileStatus; limit: number; offset: number; errors: number }): Promise<FilePage> {
    const current = currentVersions('job_id = $1');
    const filter = options.status ? 'WHERE status = $2' : '';
    const params: unknown[] = options.status ? [jobId, options.status] : [jobId];
    const [{ n }] = await this.all(`SELECT count(*)::int AS n FROM (${current}) c ${filter}`, params);
    const rows = await this.all(
      `SELECT ${LEDGER_COLUMNS} FROM (${current}) c ${filter} ORDER BY discovered_at DESC, key LIMIT ${Math.floor(options.limit)} OFFSET ${Math.floor(options.offset)}`,
      params,
    );
    const files = rows.map(toVersion);
    if (files.length === 0) return { total: Number(n), files: [] };
    const ids = files.map((f) => f.fileId);
    const older = await this.all(
      `SELECT key, etag, status, discovered_at, finished_at FROM import_files WHERE job_id = $1 AND key = ANY($2) AND NOT file_id = ANY($3::bigint[]) ORDER BY discovered_at DESC`,
      [jobId, files.map((f) => f.key), ids],
    );
    const errors = await this.all(
      `SELECT file_id, code, message, row_number, column_name FROM (
         SELECT *, row_number() OVER (PARTITION BY file_id ORDER BY row_number) AS nth FROM rejected_rows WHERE file_id = ANY($1::bigint[])
       ) e WHERE nth <= $2 ORDER BY file_id, row_number`,
      [ids, Math.floor(options.errors)],
    );
    return toFilePage(Number(n), files, older, errors);
  }

  resetVersions(jobId: string, which: { failed: true } | { all: true } | { key: string }): Promise<FileVersion[]> {
    return this.transaction(async (c) => {
      const where = 'failed' in which ? `status = 'failed'` : 'all' in which ? 'true' : `key = $2`;
      const params = 'key' in which ? [jobId, which.key] : [jobId];
      const rows = (await c.query(
        `UPDATE import_files SET status = 'pending', attempts = 0, finished_at = NULL, error_code = NULL, error_message = NULL, error_column = NULL, error_row = NULL
         WHERE file_id IN (SELECT file_id FROM (${currentVersions('job_id = $1')}) c WHERE ${where})
         RETURNING ${LEDGER_COLUMNS}`,
        params,
      )).rows;
      return rows.map(toVersion).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    });
  }

  purgeJob(jobId: string): Promise<{ files: number; predictions: number; actuals: number }> {
    return this.transaction(async (c) => {
      const ids = `SELECT file_id FROM import_files WHERE job_id = $1`;
      const out = { files: 0, predictions: 0, actuals: 0 };
      for (const [table, keys] of [['prediction_rows', ['model_version', 'prediction_id']], ['actual_rows', ['prediction_id']], ['shap_rows', ['prediction_id']]] as const) {
        const deleted = (await c.query(`DELETE FROM ${table} WHERE source_file_id IN (${ids})`, [jobId])).rowCount ?? 0;
        if (table === 'actual_rows') out.actuals = deleted;
        else if (table === 'prediction_rows') out.predictions = deleted;
        if (!deleted) continue;
        // A key whose current row went away: the newest remaining row (another job's file) becomes current.
        const k = ['model_id', 'environment', ...keys];
        await c.query(
          `UPDATE ${table} t SET is_current = true
           FROM (SELECT ${k.join(', ')}, max(source_file_id) AS top FROM ${table} GROUP BY ${k.join(', ')} HAVING NOT bool_or(is_current)) w
           WHERE ${k.map((col) => `t.${col} = w.${col}`).join(' AND ')} AND t.source_file_id = w.top`,
        );
      }
      await c.query(`DELETE FROM rejected_rows WHERE job_id = $1`, [jobId]);
      out.files = (await c.query(`DELETE FROM import_files WHERE job_id = $1`, [jobId])).rowCount ?? 0;
      return out;
    });
  }

  async modelSummaries(): Promise<ModelSummary[]> {
    const rows = await this.all(
      `WITH p AS (SELECT model_id, environment, count(*) AS predictions FROM predictions GROUP BY 1, 2),
            a AS (SELECT model_id, environment, count(*) AS actuals FROM actuals GROUP BY 1, 2),
            j AS (SELECT a.model_id, a.environment, count(*) AS joined,
                         percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(0, extract(epoch FROM a.actual_ts - p.prediction_ts))) AS p50,
                         percentile_cont(0.9) WITHIN GROUP (ORDER BY greatest(0, extract(epoch FROM a.actual_ts - p.prediction_ts))) AS p90
                  FROM actuals a JOIN predictions p USING (model_id, environment, prediction_id) GROUP BY 1, 2)
       SELECT model_id, environment, coalesce(predictions, 0) AS predictions, coalesce(actuals, 0) AS actuals, coalesce(joined, 0) AS joined, p50, p90
       FROM p FULL JOIN a USING (model_id, environment) LEFT JOIN j USING (model_id, environment) ORDER BY model_id, environment`,
    );
    return rows.map(toModelSummary);
  }

  /**
   * An operator's SELECT, in a read-only transaction with its own statement_timeout. The extended
   * protocol takes one statement only, and wrapping it as a subquery refuses anything but a query.
   */
  async readOnlyQuery(sql: string, limit: number, timeoutMs: number): Promise<QueryResult> {
    const refuse = (why: string) => new ImporterError('IMP_ERR_SQL_REFUSED', why, { permanent: true });
    const text = sql.trim().replace(/;\s*$/, '');
    if (!/^(select|with|values|table)\b/i.test(text)) throw refuse('only a single SELECT statement is accepted');
    if (REFUSED_FUNCTIONS.test(text)) throw refuse('functions that read server files, sleep, or change state are not accepted: query the store tables and views');
    const client = await this.pool.connect().catch((err) => {
      throw this.storeError(err, 'cannot connect to PostgreSQL');
    });
    try {
      await client.query('BEGIN READ ONLY');
      await client.query(`SET LOCAL statement_timeout = ${Math.floor(timeoutMs)}`);
      const result = await client.query({ text: `SELECT * FROM (${text}) AS q LIMIT ${Math.floor(limit) + 1}`, values: [] });
      const rows = result.rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v])));
      return { columns: result.fields.map((f) => f.name), rows: rows.slice(0, limit), truncated: rows.length > limit };
    } catch (err) {
      const e = err as Error & { code?: string };
      if (e.code === '57014') throw refuse(`the query ran longer than ${timeoutMs} ms and was stopped`);
      if (e.code === '42P01') {
        const tables = (await client.query('ROLLBACK').then(() => this.all(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, [this.options.schema])).catch(() => []))
          .map((r) => String(r.table_name));
        throw refuse(`${e.message}; the tables and views are: ${tables.join(', ')}`);
      }
      throw refuse(describeError(err).message.split('\n')[0]);
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release();
    }
  }

  async close(): Promise<void> {
    // Readers still reading are stopped (their files are retried), so that closing waits for no parse.
    await this.engine?.closeReaders();
    await this.importLock.run(async () => {
      this.engine?.close();
      await this.pool?.end();
      await this.csvPipe.close();
    });
  }
}
