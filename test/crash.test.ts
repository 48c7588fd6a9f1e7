import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DuckDBInstance } from '@duckdb/node-api';
import { spawnCli } from './helpers/child.ts';
import { freePort } from './helpers/ports.ts';
import { BUCKET, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';

const rowsSql = (start: number, n: number) =>
  `SELECT 'id-' || i AS pid, (i % 1000) / 1000.0 AS score, i % 7 AS f1, 'x' || (i % 13) AS f2 FROM range(${start}, ${start + n}) t(i)`;

async function readStore(path: string, sql: string): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(path);
  const conn = await db.connect();
  try {
    return (await conn.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

describe('a worker killed mid-import', () => {
  let stack: Stack;
  before(async () => (stack = await startStack()));
  after(async () => stack?.stop());

  it('loses and duplicates nothing after SIGKILL and restart, and SIGTERM exits 0', async () => {
    const big = 1_500_000;
    const storePath = join(stack.tmp.path, 'crash.duckdb');
    const port = await freePort();
    const body = {
      redis: { url: stack.redis.url, prefix: 'crash' },
      store: { kind: 'duckdb', path: storePath, memoryLimit: '512MB', threads: 2 },
      s3: { endpoint: stack.s3.endpoint, forcePathStyle: true },
      http: { port },
      defaults: { pollInterval: '1s' },
      worker: { concurrency: 2, attempts: 3, backoff: '200ms', lockDuration: '2s', shutdownTimeout: '20s' },
      jobs: [{ id: 'crash', source: `s3://${BUCKET}/crash/`, model: { id: 'm', version: 'v1' }, schema: { predictionId: 'pid', predictionScore: 'score' } }],
    };
    for (let i = 0; i < 4; i++) {
      const p = await writeFixture(join(stack.tmp.path, `small-${i}.parquet`), rowsSql(10_000_000 + i * 100, 100), 'FORMAT parquet');
      await stack.s3.put(BUCKET, `crash/small/${i}.parquet`, await readFile(p));
    }
    const bigPath = await writeFixture(join(stack.tmp.path, 'big.parquet'), rowsSql(0, big), 'FORMAT parquet');
    await stack.s3.put(BUCKET, 'crash/big/big.parquet', await readFile(bigPath));
    stack.s3.clearLog();

    const configPath = join(stack.tmp.path, 'crash.yaml');
    const first = await spawnCli(['run'], { path: configPath, body });
    await waitFor('the big file to be downloaded', async () => stack.s3.requestLog.some((r) => r.method === 'GET' && r.path.endsWith('big.parquet')), 30_000);
    await sleep(700); // inside the load transaction
    first.proc.kill('SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');

    const [mid] = await readStore(storePath, `SELECT status FROM import_files WHERE key = 'crash/big/big.parquet'`);
    assert.equal(mid.status, 'pending', 'the kill must land before the big file committed');
    const [midRows] = await readStore(storePath, `SELECT count(*)::INT AS n FROM model_predictions.m WHERE length(prediction_id) < 11`).catch(() => [{ n: 0 }]);
    assert.equal(midRows.n, 0);
    const [midDone] = await readStore(storePath, `SELECT count(*)::INT AS n FROM import_files WHERE status = 'succeeded'`);

    // The restarted process loads the big file and the small files the first one had not committed;
    // the big one may finish before the last small one, so wait for all of them before reading the counter.
    const rest = 4 - Number(midDone.n);
    const second = await spawnCli(['run', '--config', configPath]);
    await waitFor(
      `the big file and ${rest} small file(s) imported after restart`,
      async () => {
        const done = second.output().split('\n').filter((l) => l.includes('"msg":"import succeeded"'));
        return done.some((l) => l.includes('big.parquet')) && done.length >= 1 + rest;
      },
      90_000,
    );
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const restLoaded = big + 100 * rest;
    assert.match(metrics, new RegExp(`^importer_rows_loaded_total\\{job="crash",kind="prediction"\\} ${restLoaded}$`, 'm'));
    second.proc.kill('SIGTERM');
    const exit = await second.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, second.output().slice(-2000));

    const ledger = await readStore(storePath, `SELECT key, status, predictions_loaded::INT AS n FROM import_files ORDER BY key`);
    assert.deepEqual(ledger, [
      { key: 'crash/big/big.parquet', status: 'succeeded', n: big },
      ...[0, 1, 2, 3].map((i) => ({ key: `crash/small/${i}.parquet`, status: 'succeeded', n: 100 })),
    ]);
    const [totals] = await readStore(storePath, `SELECT count(*)::INT AS n, count(DISTINCT prediction_id)::INT AS d FROM model_predictions.m`);
    assert.deepEqual(totals, { n: big + 400, d: big + 400 });
  });
});
