import { join } from 'node:path';
import { validateConfig, type Config } from '../../src/config/index.ts';
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon.ts';
import { createLogger } from '../../src/log.ts';
import { waitFor } from '../../test/helpers/stack.ts';
import { BUCKET, type BenchEnv } from './endpoint.ts';
import { sql } from '../../test/helpers/sql.ts';

export const PREDICTION_SCHEMA = {
  predictionId: 'prediction_id', timestamp: 'prediction_ts', version: 'model_version',
  predictionLabel: 'predicted_label', predictionScore: 'score', features: 'feature/', tags: 'tag/',
};
export const ACTUAL_SCHEMA = { predictionId: 'prediction_id', timestamp: 'actual_ts', actualLabel: 'actual_label' };

/** A job on `s3://bench/<prefix>`. */
export const job = (id: string, prefix: string, schema: Record<string, string>, model = id) =>
  ({ id, source: `s3://${BUCKET}/${prefix}`, model: { id: model }, schema });

let n = 0;

/** The daemon's config on the embedded defaults (store settings, worker, poll interval) unless overridden. */
export function benchConfig(env: BenchEnv, jobs: unknown[], overrides: Record<string, unknown> = {}): Readonly<Config> {
  n++;
  return validateConfig({
    redis: { url: env.redis.url, prefix: `bench${n}` },
    store: { kind: 'duckdb', path: join(env.tmp.path, `store-${n}.duckdb`) },
    s3: { endpoint: env.endpoint, forcePathStyle: true },
    http: { port: 0 },
    log: { level: process.env.BENCH_LOG ?? 'error' },
    jobs,
    ...overrides,
  });
}

export const startBenchDaemon = (config: Readonly<Config>, options: Omit<DaemonOptions, 'log'> = {}): Promise<Daemon> => startDaemon(config, { ...options, log: createLogger(config.log.level) });

/** Seconds from discovery to commit of a job's succeeded files. */
export async function importSeconds(daemon: Daemon, jobId: string): Promise<number[]> {
  const rows = await sql(daemon.store)<{ s: number; status: string }>(
    `SELECT epoch(finished_at) - epoch(discovered_at) AS s, status FROM import_files WHERE job_id = $1 ORDER BY key`, [jobId]);
  const bad = rows.filter((r) => r.status !== 'succeeded');
  if (bad.length) throw new Error(`${jobId}: ${bad.length} file(s) did not succeed`);
  return rows.map((r) => Number(r.s));
}

/** Waits for `count` files of a job to be committed (succeeded), failing fast on a failed file. */
export function importsDone(daemon: Daemon, jobId: string, count: number, timeoutMs = 1_800_000) {
  return waitFor(`${count} imports of ${jobId}`, async () => {
    const rows = await sql(daemon.store)<{ status: string; error_message: string | null }>(`SELECT status, error_message FROM import_files WHERE job_id = $1`, [jobId]);
    const failed = rows.find((r) => r.status === 'failed');
    if (failed) throw new Error(`${jobId}: import failed: ${failed.error_message}`);
    return rows.filter((r) => r.status === 'succeeded').length >= count;
  }, timeoutMs, 200);
}
