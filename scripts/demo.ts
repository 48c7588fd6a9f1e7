/**
 * `npm run demo`: the daemon on embedded defaults against a local demo bucket.
 *
 * Starts s3rver in-process, finds or starts a Redis, seeds a click-through-rate model's predictions
 * (parquet and CSV, plus a `_SUCCESS` marker that must be ignored), runs the daemon in this process,
 * then uploads delayed actuals and shows them joined to the predictions.
 *
 *   npm run demo                             keep running until Ctrl-C
 *   npm run demo -- --exit-when-joined       stop once the actuals are joined (exit 1 if not within 90 s)
 *   npm run demo -- --verbose                also show the daemon's info logs
 *
 * Environment: DEMO_HTTP_PORT (default 8080, or a free port when 8080 is taken; 0 = any free port),
 * DEMO_DIR (default <repo>/.demo), DEMO_REDIS_PORT (the local Redis to try first; default 6379).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, readFile, rm } from 'node:fs/promises';
import type http from 'node:http';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../src/source/index.ts';
import { DuckDBInstance } from '@duckdb/node-api';
import { Redis } from 'ioredis';
import { validateConfig, type Config } from '../src/config/index.ts';
import { startDaemon, type Daemon } from '../src/daemon.ts';
import { describeError } from '../src/errors.ts';
import { createLogger } from '../src/log.ts';
import { sql } from '../test/helpers/sql.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEMO_DIR = resolve(process.env.DEMO_DIR || join(ROOT, '.demo'));
const BUCKET = 'demo-bucket';
const MODEL = 'click-thru-rate';
const PREFIX = `${MODEL}/production`;
const PREDICTION_JOB = 'ctr-predictions';
const ACTUAL_JOB = 'ctr-actuals';
const JOIN_TIMEOUT_MS = 90_000;
const LOCAL_REDIS_PORT = Number(process.env.DEMO_REDIS_PORT || 6379);

// s3rver ships no type declarations; describe the little we use.
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: http.Server;
}
type S3rverCtor = new (opts: { port: number; address: string; silent: boolean; directory: string; configureBuckets?: { name: string }[] }) => S3rverInstance;

// ---------------------------------------------------------------------------------------------
// Output, arguments, signals

const t0 = Date.now();
// The SDK warns on Node 20 about its releases after January 2027; the project supports Node >= 20, and the demo output stays readable.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const say = (line = '') => process.stdout.write(`${line}\n`);
const sayErr = (line: string) => process.stderr.write(`${line}\n`);
const elapsed = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;
const rel = (p: string) => {
  const r = relative(process.cwd(), p);
  return r === '' ? '.' : r.startsWith('..') ? p : r;
};

let args: { 'exit-when-joined'?: boolean; verbose?: boolean; help?: boolean };
try {
  args = parseArgs({
    options: { 'exit-when-joined': { type: 'boolean' }, verbose: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  }).values;
} catch (err) {
  process.stderr.write(`${(err as Error).message}\nusage: npm run demo -- [--exit-when-joined] [--verbose]\n`);
  process.exit(2);
}
if (args.help) {
  say('usage: npm run demo -- [--exit-when-joined] [--verbose]');
  say('  --exit-when-joined  stop once the delayed actuals are joined (exit 1 if that takes over 90 s)');
  say('  --verbose           show the daemon\'s info logs too');
  say('env: DEMO_HTTP_PORT (default 8080, else a free port), DEMO_DIR (default .demo), DEMO_REDIS_PORT (default 6379)');
  process.exit(0);
}

/** Set by SIGINT/SIGTERM; every wait below checks it, and main() then stops everything in order. */
let stopSignal: string | undefined;
let stopAt = 0;
let wake: () => void = () => undefined;
const onSignal = (signal: string) => {
  if (stopSignal) {
    // `npm run` forwards the terminal's Ctrl-C, so one keypress arrives twice: only a later one forces the exit.
    if (Date.now() - stopAt < 2000) return;
    say(`${signal} again: exiting without cleaning up`);
    process.exit(130);
  }
  stopSignal = signal;
  stopAt = Date.now();
  say(`\n${signal} received: stopping… (again to force)`);
  wake();
};
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGTERM', () => onSignal('SIGTERM'));

/** Sleeps, but returns at once when a stop signal arrives. */
function nap(ms: number): Promise<void> {
  return new Promise((r) => {
    const timer = setTimeout(r, ms);
    wake = () => {
      clearTimeout(timer);
      r();
    };
  });
}

/** Undo steps, run in reverse order on the way out. */
const cleanups: Array<{ what: string; fn: () => Promise<void> }> = [];
async function cleanup(): Promise<void> {
  while (cleanups.length) {
    const { what, fn } = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      say(`  (could not stop ${what}: ${describeError(err).message})`);
    }
  }
}

/** A failure the demo explains in its own words: printed as is, exit 1. */
class DemoError extends Error {}

// ---------------------------------------------------------------------------------------------
// Local services

function portFree(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const srv = net.createServer();
    srv.once('error', () => resolvePort(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolvePort(true)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolvePort(port));
    });
  });
}

/** True when a Redis answers PING on the port: one attempt, no retries, short timeout. */
async function redisAnswers(port: number): Promise<boolean> {
  const redis = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    connectTimeout: 500,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

async function onPath(binary: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, binary);
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Redis for the demo: the local one with a private key prefix, else a private redis-server. */
async function setUpRedis(): Promise<{ url: string; prefix: string; how: string }> {
  const prefix = `demo-${process.pid}`;
  if (!Number.isInteger(LOCAL_REDIS_PORT) || LOCAL_REDIS_PORT < 1 || LOCAL_REDIS_PORT > 65535) {
    throw new DemoError(`DEMO_REDIS_PORT must be a port number, not "${process.env.DEMO_REDIS_PORT}"`);
  }
  if (await redisAnswers(LOCAL_REDIS_PORT)) {
    const url = `redis://127.0.0.1:${LOCAL_REDIS_PORT}`;
    cleanups.push({ what: 'demo keys in Redis', fn: () => deleteKeys(url, prefix) });
    return { url, prefix, how: `the Redis on 127.0.0.1:${LOCAL_REDIS_PORT}, keys under "${prefix}:" only (removed on exit)` };
  }
  const bin = await onPath('redis-server');
  if (!bin) {
    throw new DemoError(
      [
        `The demo needs Redis (the daemon's work queue), but nothing answers on 127.0.0.1:${LOCAL_REDIS_PORT} and redis-server is not on PATH.`,
        'Install it, then run `npm run demo` again:',
        '  Debian/Ubuntu:  sudo apt-get install redis-server',
        '  macOS:          brew install redis',
        '  or any Docker:  docker run -d -p 6379:6379 redis:7',
      ].join('\n'),
    );
  }
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn(bin, ['--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--port', String(port)], {
      cwd: DEMO_DIR,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-2000)));
    child.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-2000)));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    const stop = async () => {
      process.removeListener('exit', killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(force);
    };
    if (await waitForRedis(port, child)) {
      cleanups.push({ what: 'redis-server', fn: stop });
      return { url: `redis://127.0.0.1:${port}`, prefix, how: `a private redis-server on 127.0.0.1:${port} (pid ${child.pid}, stopped on exit)` };
    }
    await stop();
    lastError = output.trim();
  }
  throw new DemoError(`redis-server (${bin}) did not start:\n${lastError}`);
}

async function waitForRedis(port: number, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    if (await redisAnswers(port)) return true;
    await nap(50);
  }
  return false;
}

/** Removes this run's keys from a shared Redis; nothing outside the prefix is touched. */
async function deleteKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

async function startS3(dir: string): Promise<{ endpoint: string; client: S3Client }> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverCtor;
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: BUCKET }] });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  // The daemon's own client, with the credentials main() put in the environment.
  const client = createS3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, maxAttempts: 3 });
  cleanups.push({
    what: 's3rver',
    fn: async () => {
      client.destroy();
      server.httpServer?.closeAllConnections();
      await server.close();
    },
  });
  return { endpoint, client };
}

// ---------------------------------------------------------------------------------------------
// Demo data: deterministic arithmetic (no RNG), so every run, and the test, sees the same numbers.
// Prediction i (0..1299): 0..999 on 2026-11-20 (two parquet files), 1000..1299 on 2026-11-21 (CSV).

const SEED_MACROS = `
  SET TimeZone = 'UTC';
  CREATE MACRO pid(i) AS 'ctr-' || lpad(CAST(i AS VARCHAR), 6, '0');
  CREATE MACRO proba(i) AS round(((i * 7907 + 101) % 1000) / 1000.0, 3);
  CREATE MACRO pred_label(i) AS CASE WHEN proba(i) >= 0.5 THEN 'click' ELSE 'no_click' END;
  -- 40 of every 100 consecutive IDs get an actual (37 is coprime to 100, so they are spread out).
  CREATE MACRO has_actual(i) AS (i * 37) % 100 < 40;
  -- The model is wrong more often where it is unsure (proba near 0.5).
  CREATE MACRO actual_label(i) AS CASE
    WHEN ((i * 53 + 7) % 100) / 100.0 < 0.45 * (1 - abs(2 * proba(i) - 1)) THEN (CASE WHEN pred_label(i) = 'click' THEN 'no_click' ELSE 'click' END)
    ELSE pred_label(i) END;
  CREATE MACRO prediction_rows(lo, hi, day, step) AS TABLE
    SELECT pid(i) AS prediction_id,
           TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_days(CAST(day - 1 AS INTEGER)) + to_seconds(CAST((i - lo) * step AS BIGINT)) AS prediction_ts,
           pred_label(i) AS predicted_label,
           proba(i) AS proba,
           18 + (i * 31) % 50 AS "feature/age",
           (['mobile', 'desktop', 'tablet'])[1 + i % 3] AS "feature/device",
           (i * 17) % 12 AS "feature/clicks_7d",
           (['us-east', 'us-west', 'eu-west', 'ap-south'])[1 + (i * 7) % 4] AS "tag/region"
    FROM range(lo, hi) t(i) ORDER BY i;
`;

interface SeededFile {
  key: string;
  rows: number;
  bytes: number;
  note: string;
}

/** What the seed data implies, to check the daemon's result against. */
interface Expected {
  predictions: number;
  actuals: number;
  joined: number;
  accuracy: number;
}

async function seed(client: S3Client, seedDir: string): Promise<{ files: SeededFile[]; actualsFile: string; expected: Expected }> {
  await rm(seedDir, { recursive: true, force: true });
  await mkdir(seedDir, { recursive: true });
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    await conn.run(SEED_MACROS);
    const write = async (name: string, select: string, options: string) => {
      const path = join(seedDir, name);
      await conn.run(`COPY (${select}) TO '${path.replaceAll("'", "''")}' (${options})`);
      return path;
    };
    const files: SeededFile[] = [];
    const put = async (key: string, path: string | null, rows: number, note: string) => {
      const body = path ? await readFile(path) : Buffer.alloc(0);
      // Always a Buffer: streamed bodies get aws-chunked framing, which s3rver stores verbatim.
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
      files.push({ key, rows, bytes: body.length, note });
    };

    const day20 = `${PREFIX}/prediction/2026/11/20`;
    const day21 = `${PREFIX}/prediction/2026/11/21`;
    await put(`${day20}/part-0.parquet`, await write('2026-11-20-part-0.parquet', 'FROM prediction_rows(0, 500, 20, 86)', 'FORMAT parquet'), 500, 'predictions');
    await put(`${day20}/part-1.parquet`, await write('2026-11-20-part-1.parquet', 'FROM prediction_rows(500, 1000, 20, 86)', 'FORMAT parquet'), 500, 'predictions');
    await put(`${day20}/_SUCCESS`, null, 0, 'empty job marker: must be ignored');
    // CSV carries the timestamp as RFC 3339 text, as many producers write it.
    await put(
      `${day21}/part-0.csv`,
      await write(
        '2026-11-21-part-0.csv',
        `SELECT * REPLACE (strftime(prediction_ts, '%Y-%m-%dT%H:%M:%SZ') AS prediction_ts) FROM prediction_rows(1000, 1300, 21, 288)`,
        'FORMAT csv, HEADER true',
      ),
      300,
      'predictions',
    );

    // Delayed actuals: labels for 40% of the predictions in shuffled order, plus 25 for predictions that have not arrived yet.
    const actualsFile = await write(
      '2026-11-21-actuals.parquet',
      `SELECT prediction_id, label FROM (
         SELECT i, pid(i) AS prediction_id, actual_label(i) AS label FROM range(0, 1300) t(i) WHERE has_actual(i)
         UNION ALL
         SELECT i, pid(i), CASE WHEN i % 4 = 0 THEN 'click' ELSE 'no_click' END FROM range(1300, 1325) t(i)
       ) ORDER BY (i * 7919) % 1327`,
      'FORMAT parquet',
    );
    const reader = await conn.runAndReadAll(
      `SELECT count(*)::INT AS joined, avg(CASE WHEN pred_label(i) = actual_label(i) THEN 1 ELSE 0 END)::DOUBLE AS accuracy
       FROM range(0, 1300) t(i) WHERE has_actual(i)`,
    );
    const [row] = reader.getRowObjectsJson() as Array<{ joined: number; accuracy: number }>;
    return { files, actualsFile, expected: { predictions: 1300, actuals: Number(row.joined) + 25, joined: Number(row.joined), accuracy: Number(row.accuracy) } };
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

// ---------------------------------------------------------------------------------------------
// Watching the ledger

interface LedgerRow {
  job_id: string;
  status: string;
  files: number;
  predictions: number;
  actuals: number;
}

const COMMITTED = new Set(['succeeded', 'partially_succeeded']);

async function ledger(daemon: Daemon): Promise<LedgerRow[]> {
  const rows = await sql(daemon.store)<Record<string, unknown>>(
    `SELECT job_id, status, count(*) AS files, sum(predictions_loaded) AS predictions, sum(actuals_loaded) AS actuals
     FROM import_files GROUP BY ALL ORDER BY ALL`,
  );
  return rows.map((r) => ({
    job_id: String(r.job_id),
    status: String(r.status),
    files: Number(r.files),
    predictions: Number(r.predictions ?? 0),
    actuals: Number(r.actuals ?? 0),
  }));
}

function describeJob(jobId: string, rows: LedgerRow[]): string {
  const mine = rows.filter((r) => r.job_id === jobId);
  if (mine.length === 0) return 'no files yet';
  const files = mine.reduce((n, r) => n + r.files, 0);
  const byStatus = mine.map((r) => `${r.files} ${r.status}`).join(', ');
  const predictions = mine.reduce((n, r) => n + r.predictions, 0);
  const actuals = mine.reduce((n, r) => n + r.actuals, 0);
  const loaded = [predictions ? `${predictions} predictions` : '', actuals ? `${actuals} actuals` : ''].filter(Boolean).join(', ');
  return `${files} file${files === 1 ? '' : 's'} discovered (${byStatus})${loaded ? `; ${loaded} loaded` : ''}`;
}

/** Prints what changed in the ledger since last time, and any import errors once. */
function makeReporter(daemon: Daemon) {
  const shown = new Map<string, string>();
  const errorsShown = new Set<string>();
  return async (): Promise<LedgerRow[]> => {
    const rows = await ledger(daemon);
    for (const job of daemon.config.jobs) {
      const line = describeJob(job.id, rows);
      if (shown.get(job.id) !== line) {
        shown.set(job.id, line);
        say(`${elapsed()} ${job.id.padEnd(16)} ${line}`);
      }
    }
    const errors = await sql(daemon.store)<Record<string, unknown>>(
      `SELECT file_id, job_id, key, status, attempts, error_code, error_message FROM import_files WHERE error_message IS NOT NULL ORDER BY file_id`,
    );
    for (const e of errors) {
      const id = `${e.file_id}/${e.attempts}/${e.status}`;
      if (errorsShown.has(id)) continue;
      errorsShown.add(id);
      say(`${elapsed()}   ${e.job_id}: ${e.status} ${e.key}: ${e.error_code ?? ''} ${e.error_message}`);
    }
    return rows;
  };
}

const committedFiles = (rows: LedgerRow[], jobId: string) =>
  rows.filter((r) => r.job_id === jobId && COMMITTED.has(r.status)).reduce((n, r) => n + r.files, 0);
const failedFiles = (rows: LedgerRow[], jobId: string) => rows.filter((r) => r.job_id === jobId && r.status === 'failed').reduce((n, r) => n + r.files, 0);

/** Polls the ledger until `done`, printing changes. False on timeout or a stop signal. */
async function waitUntil(report: () => Promise<LedgerRow[]>, jobId: string, files: number, deadline: number): Promise<boolean> {
  for (;;) {
    const rows = await report();
    if (committedFiles(rows, jobId) >= files) return true;
    if (failedFiles(rows, jobId) > 0) throw new DemoError(`${jobId}: a file failed to import (see above)`);
    if (stopSignal || Date.now() > deadline) return false;
    await nap(1000);
  }
}

// ---------------------------------------------------------------------------------------------
// The summary

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

async function printSummary(daemon: Daemon, expected: Expected): Promise<boolean> {
  const byDay = await sql(daemon.store)<Record<string, unknown>>(
    `SELECT coalesce(CAST(CAST(prediction_ts AS DATE) AS VARCHAR), 'total') AS day,
            count(*)::INT AS predictions,
            count(actual_label)::INT AS joined,
            (count(actual_label) / count(*))::DOUBLE AS match_rate,
            avg(CASE WHEN actual_label IS NULL THEN NULL WHEN prediction_label = actual_label THEN 1 ELSE 0 END)::DOUBLE AS accuracy
     FROM inferences WHERE model_id = $1 AND environment = 'production'
     GROUP BY ROLLUP (CAST(prediction_ts AS DATE)) ORDER BY CAST(prediction_ts AS DATE) NULLS LAST`,
    [MODEL],
  );
  const [actuals] = await sql(daemon.store)<Record<string, unknown>>(
    `SELECT count(*)::INT AS actuals,
            count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM predictions p WHERE p.model_id = a.model_id AND p.environment = a.environment AND p.prediction_id = a.prediction_id))::INT AS waiting
     FROM actuals a WHERE model_id = $1 AND environment = 'production'`,
    [MODEL],
  );
  const [ignored] = await sql(daemon.store)<Record<string, unknown>>(`SELECT count(*)::INT AS n FROM import_files WHERE key LIKE '%/\\_SUCCESS' ESCAPE '\\'`);

  say();
  say(`Summary: the inferences view (predictions left-joined to actuals), model ${MODEL}, production`);
  say(`  ${'day'.padEnd(12)}${'predictions'.padStart(12)}${'joined'.padStart(9)}${'match rate'.padStart(12)}${'accuracy'.padStart(10)}`);
  for (const r of byDay) {
    const acc = r.accuracy === null ? '-' : pct(Number(r.accuracy));
    say(`  ${String(r.day).padEnd(12)}${String(r.predictions).padStart(12)}${String(r.joined).padStart(9)}${pct(Number(r.match_rate)).padStart(12)}${acc.padStart(10)}`);
  }
  say(`  actuals loaded: ${actuals.actuals} (${actuals.waiting} wait for predictions that have not arrived yet; the join picks them up when they do)`);
  say(`  accuracy = predicted_label equals the actual label, over the joined rows`);
  say(`  _SUCCESS markers in the ledger: ${ignored.n} (side files are skipped)`);

  const [ex] = await sql(daemon.store)<Record<string, unknown>>(
    `SELECT p.prediction_id, CAST(p.prediction_ts AS VARCHAR) AS ts, p.prediction_label, p.prediction_score, a.actual_label,
            p.features.age AS age, typeof(p.features.age) AS age_type,
            p.features.device AS device, typeof(p.features.device) AS device_type,
            p.features.clicks_7d AS clicks_7d, typeof(p.features.clicks_7d) AS clicks_type,
            p.tags.region AS region
     FROM model_predictions."${MODEL}" p
     JOIN actuals a ON a.model_id = p.model_id AND a.environment = p.environment AND a.prediction_id = p.prediction_id
     ORDER BY p.prediction_id LIMIT 1`,
  );
  if (ex) {
    say();
    say(`One joined row, from the typed table model_predictions."${MODEL}" (features and tags are STRUCT columns):`);
    say(`  prediction_id  ${ex.prediction_id}`);
    say(`  prediction_ts  ${ex.ts}`);
    say(`  predicted      ${ex.prediction_label} (score ${ex.prediction_score})`);
    say(`  actual         ${ex.actual_label}`);
    say(`  features       age=${ex.age} (${ex.age_type}), device=${ex.device} (${ex.device_type}), clicks_7d=${ex.clicks_7d} (${ex.clicks_type})`);
    say(`  tags           region=${ex.region}`);
    say(`  e.g. SELECT avg(features.age) FROM model_predictions."${MODEL}" reads the typed feature directly`);
  }

  const total = byDay.find((r) => r.day === 'total');
  const got = { predictions: Number(total?.predictions ?? 0), actuals: Number(actuals.actuals), joined: Number(total?.joined ?? 0), accuracy: Number(total?.accuracy ?? NaN) };
  const ok = got.predictions === expected.predictions && got.actuals === expected.actuals && got.joined === expected.joined && Math.abs(got.accuracy - expected.accuracy) < 1e-9;
  say();
  if (ok) say(`Check: matches the seeded data (${expected.predictions} predictions, ${expected.actuals} actuals, ${expected.joined} joined, accuracy ${pct(expected.accuracy)}).`);
  else say(`Check FAILED: seeded ${JSON.stringify(expected)}, the store has ${JSON.stringify(got)}.`);
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Daemon logs as plain lines

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const LOG_NOISE = new Set(['level', 'time', 'pid', 'hostname', 'service', 'msg', 'component']);

function plainLogStream(): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) {
        if (!line.trim()) continue;
        try {
          const rec = JSON.parse(line) as Record<string, unknown>;
          const extras = Object.entries(rec)
            .filter(([k]) => !LOG_NOISE.has(k))
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          say(`${elapsed()}   daemon ${LEVELS[Number(rec.level)] ?? rec.level}: ${rec.msg ?? ''}${extras ? `  (${extras})` : ''}`);
        } catch {
          say(`${elapsed()}   daemon: ${line}`);
        }
      }
      callback();
    },
  });
}

// ---------------------------------------------------------------------------------------------

async function httpPort(): Promise<number> {
  const env = process.env.DEMO_HTTP_PORT;
  if (env !== undefined && env !== '') {
    const port = Number(env);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new DemoError(`DEMO_HTTP_PORT must be a port number (0 = any free port), not "${env}"`);
    return port;
  }
  return (await portFree(8080)) ? 8080 : 0;
}

function demoConfig(redis: { url: string; prefix: string }, s3Endpoint: string, port: number): Readonly<Config> {
  return validateConfig(
    {
      redis: { url: redis.url, prefix: redis.prefix },
      store: { kind: 'duckdb', path: join(DEMO_DIR, 'inferences.duckdb') },
      s3: { endpoint: s3Endpoint, forcePathStyle: true },
      http: { port },
      defaults: { pollInterval: '10s' },
      log: { level: args.verbose ? 'info' : 'warn' },
      jobs: [
        {
          id: PREDICTION_JOB,
          source: `s3://${BUCKET}/${PREFIX}/prediction/`,
          format: 'auto',
          model: { id: MODEL, version: 'v1', type: 'binary', environment: 'production' },
          schema: {
            predictionId: 'prediction_id',
            timestamp: 'prediction_ts',
            predictionLabel: 'predicted_label',
            predictionScore: 'proba',
            features: 'feature/',
            tags: 'tag/',
          },
        },
        {
          id: ACTUAL_JOB,
          source: `s3://${BUCKET}/${PREFIX}/actuals/`,
          model: { id: MODEL, environment: 'production' },
          schema: { predictionId: 'prediction_id', actualLabel: 'label' },
        },
      ],
    },
    'demo config',
  );
}

async function main(): Promise<number> {
  let storeOpened = false;
  try {
    say(`inference-importer demo: the daemon on embedded defaults against a local demo bucket (working dir ${rel(DEMO_DIR)})`);
    await mkdir(DEMO_DIR, { recursive: true });
    const storePath = join(DEMO_DIR, 'inferences.duckdb');
    await rm(storePath, { force: true });
    await rm(`${storePath}.wal`, { force: true });

    const redis = await setUpRedis();
    say(`  redis:  ${redis.how}`);
    if (stopSignal) return 0;

    // The daemon (and the seeding client) use the default AWS credential chain; s3rver accepts these.
    process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
    process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
    delete process.env.AWS_SESSION_TOKEN;
    delete process.env.AWS_PROFILE;
    const s3 = await startS3(join(DEMO_DIR, 's3'));
    say(`  s3:     s3rver at ${s3.endpoint}, bucket ${BUCKET}, data in ${rel(join(DEMO_DIR, 's3'))}`);
    if (stopSignal) return 0;

    const seeded = await seed(s3.client, join(DEMO_DIR, 'seed'));
    say();
    say(`Seeded s3://${BUCKET}/ (local copies in ${rel(join(DEMO_DIR, 'seed'))}):`);
    for (const f of seeded.files) {
      const what = f.rows ? `${f.rows} ${f.note}` : f.note;
      say(`  ${f.key.padEnd(64)} ${what.padEnd(34)} ${f.bytes.toLocaleString('en-US').padStart(7)} bytes`);
    }
    if (stopSignal) return 0;

    const config = demoConfig(redis, s3.endpoint, await httpPort());
    const daemon = await startDaemon(config, { log: createLogger(config.log.level, plainLogStream()) });
    cleanups.push({ what: 'the daemon', fn: () => daemon.stop() });
    storeOpened = true;
    const started = Date.now();
    const port = (daemon.http?.server.address() as AddressInfo | null)?.port;
    say();
    say(`Daemon started: jobs ${config.jobs.map((j) => j.id).join(', ')}; each lists its prefix at startup, then every ${config.defaults.pollInterval / 1000} s.`);
    say(`  store: ${rel(storePath)} (DuckDB)`);

    const report = makeReporter(daemon);
    const predictionFiles = seeded.files.filter((f) => f.rows > 0).length;
    const predictionsIn = await waitUntil(report, PREDICTION_JOB, predictionFiles, started + JOIN_TIMEOUT_MS);
    if (stopSignal) return 0;
    if (!predictionsIn) throw new DemoError(`the predictions were not imported within ${JOIN_TIMEOUT_MS / 1000} s`);

    const actualsKey = `${PREFIX}/actuals/2026/11/21/part-0.parquet`;
    const body = await readFile(seeded.actualsFile);
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: actualsKey, Body: body }));
    say();
    say(`${elapsed()} Predictions are in. Uploaded delayed actuals: ${actualsKey}`);
    say(`         ${seeded.expected.actuals} labels: ${seeded.expected.joined} for 40% of the predictions (shuffled), 25 for predictions not seen yet.`);
    say(`         ${ACTUAL_JOB} finds them at its next poll (within ${config.defaults.pollInterval / 1000} s).`);

    const joined = await waitUntil(report, ACTUAL_JOB, 1, started + JOIN_TIMEOUT_MS);
    if (stopSignal) return 0;
    if (!joined) {
      const message = `the actuals were not imported and joined within ${JOIN_TIMEOUT_MS / 1000} s of the daemon's start`;
      if (args['exit-when-joined']) throw new DemoError(message);
      say(`${elapsed()} Warning: ${message}; the daemon keeps running, see the ledger lines above.`);
    }
    let ok = true;
    if (joined) ok = await printSummary(daemon, seeded.expected);

    say();
    if (port !== undefined) {
      say(`Metrics:  http://127.0.0.1:${port}/metrics`);
      say(`Health:   http://127.0.0.1:${port}/healthz   (readiness: /readyz)`);
    }
    if (args['exit-when-joined']) {
      say('--exit-when-joined: stopping the daemon.');
      return ok ? 0 : 1;
    }
    say('daemon running; Ctrl-C to stop');
    while (!stopSignal) {
      await nap(3000);
      if (!stopSignal) await report().catch(() => undefined);
    }
    return 0;
  } catch (err) {
    say();
    if (err instanceof DemoError) sayErr(err.message);
    else {
      const e = describeError(err);
      sayErr(`demo failed: ${e.code ? `${e.code}: ` : ''}${e.message}`);
      if (args.verbose && err instanceof Error && err.stack) sayErr(err.stack);
    }
    return 1;
  } finally {
    await cleanup();
    if (storeOpened) say(`Stopped. The store stays in ${rel(join(DEMO_DIR, 'inferences.duckdb'))} for a look; the next run starts afresh.`);
  }
}

const exitCode = await main();
process.exit(exitCode);
