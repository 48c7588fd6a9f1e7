import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnCli } from '../helpers/child.ts';
import { freePort } from '../helpers/ports.ts';
import { BUCKET, waitFor, writeFixture, type Stack, type StoreKind } from '../helpers/stack.ts';

/** What one seeded run ended with: the figures of the report table. */
export interface SigkillResult {
  store: StoreKind;
  seed: number;
  files: number;
  kills: number;
  /** Kill delays after each start, in ms (to replay a run, the seed is enough). */
  delays: number[];
  expected: number;
  rows: number;
  ids: number;
  lost: number;
  duplicated: number;
  /** Ledger rows by final status. */
  ledger: Record<string, number>;
  /** What else went wrong during the run. */
  faults: string;
  /** The exit code after SIGTERM, or the signal that ended the process. */
  exitCode: number | string | null;
  /** The end of the process's output when it did not exit 0. */
  output: string;
}

/** A small seeded PRNG (mulberry32): the same seed gives the same kill points and upload order. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The daemon as its own process (`inference-importer run`), SIGKILLed `kills` times at seeded
 * random points while `files` parquet files arrive (half before the first start, the rest
 * between kills), so kills land before downloads, during reads, inside store transactions and
 * between a commit and the queue's acknowledgement; then started once more and left to finish.
 * Returns the rows, distinct IDs and ledger states it ended with.
 */
export interface FaultOptions {
  /** Before each start: S3 answers 503 SlowDown and 500 to GETs and LISTs, and is slow, a few times each. */
  s3?: boolean;
  /** After each kill, Redis is restarted empty (no persistence): queued, active and delayed jobs are gone. */
  redisRestart?: boolean;
}

export async function sigkillRun(stack: Stack, store: StoreKind, seed: number, files: number, kills: number, rowsPerFile = 2000, faults: FaultOptions = {}): Promise<SigkillResult> {
  const random = rng(seed);
  const prefix = `rel-${store}-${seed}`;
  const port = await freePort();
  const body = {
    redis: { url: stack.redis.url, prefix },
    store: store === 'postgres'
      ? { kind: 'postgres', url: stack.db!.url, schema: `rel_${seed}`, memoryLimit: '256MB', threads: 1 }
      : { kind: 'duckdb', path: join(stack.tmp.path, `${prefix}.duckdb`), memoryLimit: '256MB', threads: 1 },
    s3: { endpoint: stack.s3.endpoint, forcePathStyle: true, maxAttempts: 2 },
    http: { port, host: '127.0.0.1' },
    defaults: { pollInterval: '1s' },
    worker: { concurrency: 2, attempts: 10, backoff: '200ms', lockDuration: '2s', shutdownTimeout: '10s', tmpDir: stack.tmp.path },
    jobs: [{ id: 'rel', source: `s3://${BUCKET}/${prefix}/`, model: { id: prefix, version: 'v1' }, schema: { predictionId: 'pid', predictionScore: 'score', features: ['f'] } }],
  };
  const upload = async (i: number) => {
    const path = await writeFixture(join(stack.tmp.path, `${prefix}-${i}.parquet`),
      `SELECT '${prefix}-' || ${i} || '-' || j AS pid, (j % 100) / 100.0 AS score, j % 7 AS f FROM range(${rowsPerFile}) t(j)`, 'FORMAT parquet');
    await stack.s3.put(BUCKET, `${prefix}/${String(i).padStart(3, '0')}.parquet`, await readFile(path));
  };
  const order = Array.from({ length: files }, (_, i) => i).sort(() => random() - 0.5);
  const early = order.slice(0, Math.ceil(files / 2));
  const late = order.slice(early.length);
  for (const i of early) await upload(i);

  const configPath = join(stack.tmp.path, `${prefix}.yaml`);
  const delays: number[] = [];
  for (let k = 0; k < kills; k++) {
    if (faults.s3) {
      stack.s3.faults.add({ method: 'GET', keyIncludes: prefix, status: 503, times: 3 });
      stack.s3.faults.add({ method: 'GET', keyIncludes: prefix, status: 500, times: 2 });
      stack.s3.faults.add({ method: 'GET', keyIncludes: prefix, delayMs: 1500, times: 2 });
      stack.s3.faults.add({ method: 'GET', keyIncludes: '', status: 503, times: 2 });
    }
    const child = k === 0 ? await spawnCli(['run'], { path: configPath, body }) : await spawnCli(['run', '--config', configPath]);
    const delay = Math.round(1500 + random() * 3500);
    delays.push(delay);
    // The late files arrive while this process runs, a share per start.
    const share = late.splice(0, Math.ceil(late.length / (kills - k)));
    await Promise.all([sleep(delay), (async () => { for (const i of share) await upload(i); })()]);
    child.proc.kill('SIGKILL');
    await child.exited;
    if (faults.redisRestart) await stack.redis.restart();
  }
  for (const i of late) await upload(i);
  const last = await spawnCli(['run', '--config', configPath]);
  const query = async <T>(sql: string): Promise<T[]> => {
    const r = await fetch(`http://127.0.0.1:${port}/api/sql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql }) });
    if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
    return ((await r.json()) as { rows: T[] }).rows;
  };
  try {
    const ledger = await waitFor(`${files} files of seed ${seed} (${store}) final`, async () => {
      const rows = await query<{ status: string; n: number }>(`SELECT status, count(*)::INT AS n FROM import_files GROUP BY status`).catch(() => []);
      const byStatus = Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
      const total = rows.reduce((s, r) => s + Number(r.n), 0);
      return total >= files && !byStatus.pending && byStatus;
    }, 180_000, 500);
    const [c] = await query<{ rows: number; ids: number }>(`SELECT count(*)::INT AS rows, count(DISTINCT prediction_id)::INT AS ids FROM predictions WHERE model_id = '${prefix}'`);
    const expected = files * rowsPerFile;
    last.proc.kill('SIGTERM');
    const { code, signal } = await last.exited;
    stack.s3.faults.clear();
    const faultNames = [faults.s3 && 'S3 503/500/slow', faults.redisRestart && 'Redis restarted empty after each kill'].filter(Boolean).join('; ') || 'none';
    return { store, seed, files, kills, delays, faults: faultNames, expected, rows: Number(c.rows), ids: Number(c.ids), lost: expected - Number(c.ids), duplicated: Number(c.rows) - Number(c.ids), ledger, exitCode: code ?? signal, output: code === 0 ? '' : last.output().slice(-3000) };
  } catch (err) {
    last.proc.kill('SIGKILL');
    throw new Error(`seed ${seed} (${store}): ${(err as Error).message}\n--- last process output ---\n${last.output().slice(-3000)}`);
  }
}

/** The report table, as the long run writes it into docs/reliability.md. */
export function reportTable(results: SigkillResult[]): string {
  const lines = ['| store | seed | files | SIGKILLs | kill delays (ms) | other faults | rows expected | rows | lost | duplicated | ledger | exit after SIGTERM |', '|---|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const r of results) {
    lines.push(`| ${r.store} | ${r.seed} | ${r.files} | ${r.kills} | ${r.delays.join(', ')} | ${r.faults} | ${r.expected} | ${r.rows} | ${r.lost} | ${r.duplicated} | ${Object.entries(r.ledger).map(([s, n]) => `${s} ${n}`).join(', ')} | ${r.exitCode} |`);
  }
  return lines.join('\n');
}
