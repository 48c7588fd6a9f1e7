import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DuckDBInstance } from '@duckdb/node-api';
import { validateConfig, type Config } from '../../src/config/index.ts';
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon.ts';
import { createLogger, secretValues } from '../../src/log.ts';
import { createTestDatabase, type TestDatabase } from './postgres.ts';
import { startRedis, type RedisHarness } from './redis.ts';
import { startS3, useS3rverCredentials, type S3Harness } from './s3.ts';
import { tmpDir, type TmpDir } from './tmp.ts';
import { sql } from './sql.ts';

useS3rverCredentials();

export const BUCKET = 'inference';

/** A private Redis, an S3 endpoint (s3rver behind the If-Match proxy) and a temp folder for one test file. */
export interface Stack {
  redis: RedisHarness;
  s3: S3Harness;
  tmp: TmpDir;
  /** The PostgreSQL database of a postgres stack. */
  db?: TestDatabase;
  /** A config for these services, fast intervals, with the given jobs (raw, as in YAML). */
  config(jobs: unknown[], overrides?: Record<string, unknown>): Readonly<Config>;
  stop(): Promise<void>;
}

export type StoreKind = 'duckdb' | 'postgres';
/** The stores scenario tests run against: every one (`TEST_STORES=postgres` narrows it while debugging). */
export const STORE_KINDS: readonly StoreKind[] = (process.env.TEST_STORES?.split(',') as StoreKind[] | undefined) ?? ['duckdb', 'postgres'];

/**
 * Starts the services; `store: 'postgres'` also creates a fresh PostgreSQL database for this test
 * file, dropped by `stop`, and each config gets a schema of its own in it.
 */
export async function startStack(options: { store?: StoreKind } = {}): Promise<Stack> {
  const [redis, s3, tmp, db] = await Promise.all([
    startRedis(), startS3({ buckets: [BUCKET] }), tmpDir('importer-test-'),
    options.store === 'postgres' ? createTestDatabase() : undefined,
  ]);
  let n = 0;
  return {
    redis,
    s3,
    tmp,
    db,
    config(jobs, overrides = {}) {
      n++;
      return validateConfig({
        redis: { url: redis.url, prefix: `t${n}` },
        store: db
          ? { kind: 'postgres', url: db.url, schema: `s${n}`, memoryLimit: '512MB', threads: 2 }
          : { kind: 'duckdb', path: join(tmp.path, `store-${n}.duckdb`), memoryLimit: '512MB', threads: 2 },
        s3: { endpoint: s3.endpoint, forcePathStyle: true, maxAttempts: 2 },
        http: { port: 0 },
        defaults: { pollInterval: '1s' },
        worker: { concurrency: 2, attempts: 3, backoff: '200ms', lockDuration: '3s', shutdownTimeout: '10s' },
        log: { level: process.env.TEST_LOG_LEVEL ?? 'silent' },
        jobs,
        ...overrides,
      });
    },
    async stop() {
      await Promise.allSettled([redis.stop(), s3.stop(), db?.drop()]);
      await tmp.cleanup();
    },
  };
}

/** Starts the whole daemon in this process. */
export function runDaemon(config: Readonly<Config>, options: Omit<DaemonOptions, 'log'> = {}): Promise<Daemon> {
  return startDaemon(config, { ...options, log: createLogger(process.env.TEST_LOG ?? config.log.level, undefined, secretValues(config)) });
}

/** Polls `fn` until it returns a truthy value; fails with the last value after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | false | null | undefined | 0 | ''>, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | false | null | undefined | 0 | '';
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}`);
    await sleep(everyMs);
  }
}

let fixtureDb: DuckDBInstance | undefined;

/**
 * Writes the rows of a SQL query to a file in a format (DuckDB's own writers), for fixtures.
 * `options` are COPY options, e.g. `FORMAT csv, HEADER true, COMPRESSION gzip`.
 */
export async function writeFixture(path: string, selectSql: string, options: string): Promise<string> {
  fixtureDb ??= await DuckDBInstance.create(':memory:');
  const conn = await fixtureDb.connect();
  try {
    await conn.run(`COPY (${selectSql}) TO '${path.replaceAll("'", "''")}' (${options})`);
  } finally {
    conn.closeSync();
  }
  return path;
}

/** Counts of the store's tables, the usual assertion. */
export async function counts(daemon: Daemon, modelId?: string) {
  const where = modelId ? `WHERE model_id = '${modelId}'` : '';
  const [row] = await sql(daemon.store)<{ p: number; a: number; j: number }>(
    `SELECT (SELECT count(*) FROM predictions ${where})::INT AS p, (SELECT count(*) FROM actuals ${where})::INT AS a,
            (SELECT count(*) FROM inferences ${where} ${where ? 'AND' : 'WHERE'} (actual_label IS NOT NULL OR actual_score IS NOT NULL))::INT AS j`,
  );
  return row;
}

/** The ledger rows of a job, ordered by key. */
export function ledger(daemon: Daemon, jobId: string) {
  return sql(daemon.store)<{ key: string; status: string; rows_read: number; predictions_loaded: number; actuals_loaded: number; rows_rejected: number; error_code: string | null; error_message: string | null; attempts: number }>(
    `SELECT key, status, rows_read::INT AS rows_read, predictions_loaded::INT AS predictions_loaded, actuals_loaded::INT AS actuals_loaded,
            rows_rejected::INT AS rows_rejected, error_code, error_message, attempts FROM import_files WHERE job_id = $1 ORDER BY key, file_id`,
    [jobId],
  );
}
