import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { startDaemon } from '../src/daemon.ts';
import { createLogger } from '../src/log.ts';
import { spawnCli, type ChildDaemon } from './helpers/child.ts';
import { freePort } from './helpers/ports.ts';
import { BUCKET, ledger, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';

const rowsSql = (start: number, n: number) => `SELECT 'p' || i AS pid, 0.5 AS score FROM range(${start}, ${start + n}) t(i)`;

/** GET or POST that must answer within `ms` (the promise for health, readiness and metrics is one second). */
async function call(base: string, path: string, ms = 1000, method = 'GET', body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method, signal: AbortSignal.timeout(ms),
    headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) };
}

const jsonLines = (text: string) => text.split('\n').filter((l) => l.trim() !== '').map((l) => {
  try {
    return JSON.parse(l) as { level: number; msg: string; code?: string; outageMs?: number };
  } catch {
    throw new Error(`a log line is not JSON: ${l}`);
  }
});

describe('Redis down', () => {
  let stack: Stack;
  before(async () => (stack = await startStack()));
  after(async () => stack?.stop());

  const put = async (key: string, start: number, n: number) => {
    const p = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), rowsSql(start, n), 'FORMAT parquet');
    await stack.s3.put(BUCKET, key, await readFile(p));
  };

  it('stays observable and stoppable: fast 503s naming Redis, one log line each way, resumes exactly, SIGTERM within the deadline', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const configPath = join(stack.tmp.path, 'outage.yaml');
    const body = {
      redis: { url: stack.redis.url, prefix: 'outage' },
      store: { kind: 'duckdb', path: join(stack.tmp.path, 'outage.duckdb'), memoryLimit: '512MB', threads: 2 },
      s3: { endpoint: stack.s3.endpoint, forcePathStyle: true },
      http: { port },
      defaults: { pollInterval: '1s' },
      worker: { concurrency: 2, attempts: 3, backoff: '200ms', lockDuration: '3s', shutdownTimeout: '6s' },
      jobs: [{ id: 'a', source: `s3://${BUCKET}/a/`, model: { id: 'a' }, schema: { predictionId: 'pid', predictionScore: 'score' } }],
    };
    await put('a/1.parquet', 0, 10);
    const daemon: ChildDaemon = await spawnCli(['run'], { path: configPath, body });
    const cli = async (args: string[]) => {
      const c = await spawnCli([...args, '--config', configPath]);
      return { ...(await c.exited), out: c.output() };
    };
    const sql = async (q: string) => (await call(base, '/api/sql', 5000, 'POST', { sql: q })).json().rows as Array<Record<string, unknown>>;
    try {
      await waitFor('file 1 imported', async () => (await call(base, '/api/jobs/a/files', 5000).catch(() => undefined))?.json().files?.[0]?.status === 'succeeded', 60_000);

      const from = daemon.output().length;
      await stack.redis.stop();
      await waitFor('readiness to see Redis gone', async () => (await call(base, '/readyz')).status === 503);

      const health = await call(base, '/healthz');
      assert.deepEqual([health.status, health.json()], [200, { ok: true }]);
      const ready = await call(base, '/readyz');
      assert.equal(ready.status, 503);
      assert.equal(ready.json().checks.store, 'ok');
      assert.match(ready.json().checks.redis, new RegExp(`^Redis at 127\\.0\\.0\\.1:${stack.redis.port} does not answer since \\S+ \\((connection closed|connect ECONNREFUSED [^)]+)\\); readiness needs it`));
      const metrics = await call(base, '/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.text, /^importer_redis_up 0$/m);
      assert.match(metrics.text, /^importer_store_up 1$/m);
      for (const [method, path] of [['GET', '/api/jobs'], ['GET', '/api/jobs/a'], ['POST', '/api/jobs/a/pause'], ['POST', '/api/jobs/a/retry'], ['GET', '/admin/queues/api/queues']] as const) {
        const r = await call(base, path, 1000, method);
        assert.equal(r.status, 503, `${method} ${path}`);
        assert.equal(r.json().code, 'IMP_ERR_REDIS_UNAVAILABLE', `${method} ${path}`);
        assert.match(r.json().message, new RegExp(`^Redis at 127\\.0\\.0\\.1:${stack.redis.port} does not answer`));
      }
      // What does not need Redis still works.
      assert.equal((await call(base, '/api/jobs/a/files')).status, 200);

      const jobs = await cli(['jobs']);
      assert.equal(jobs.code, 1);
      assert.match(jobs.out, new RegExp(`^IMP_ERR_REDIS_UNAVAILABLE: GET /api/jobs: HTTP 503: Redis at 127\\.0\\.0\\.1:${stack.redis.port} does not answer`, 'm'));
      const pause = await cli(['jobs', 'pause', 'a']);
      assert.equal(pause.code, 1);
      assert.match(pause.out, new RegExp(`^IMP_ERR_REDIS_UNAVAILABLE: Redis at 127\\.0\\.0\\.1:${stack.redis.port} \\(redis\\.url\\) did not answer within 5 s to PING \\(connect ECONNREFUSED`, 'm'));

      // Some seconds of outage (the CLI calls above) have passed: one line said so, nothing else complained.
      await put('a/2.parquet', 100, 7);
      const down = jsonLines(daemon.output().slice(from));
      assert.deepEqual(down.filter((l) => l.level >= 40).map((l) => [l.code, l.msg.replace(/\(.*\)/, '(…)')]), [
        ['IMP_ERR_REDIS_UNAVAILABLE', `Redis at 127.0.0.1:${stack.redis.port} is unreachable (…); polling and imports wait until it answers, health and metrics keep answering`],
      ]);

      await stack.redis.restart();
      const back = await waitFor('the back line', async () => jsonLines(daemon.output().slice(from)).filter((l) => /is back after/.test(l.msg)).length > 0 && jsonLines(daemon.output().slice(from)));
      const backLines = back.filter((l) => /is back after/.test(l.msg));
      assert.equal(backLines.length, 1);
      assert.match(backLines[0].msg, new RegExp(`^Redis at 127\\.0\\.0\\.1:${stack.redis.port} is back after \\d+\\.\\d s; polling and imports resume$`));
      assert.ok(backLines[0].outageMs! >= 5000, `outageMs ${backLines[0].outageMs}`);
      assert.equal((await call(base, '/readyz')).status, 200);
      assert.match((await call(base, '/metrics')).text, /^importer_redis_up 1$/m);

      // The restarted Redis is empty: the ledger and the next polls bring back what is left, exactly once.
      await waitFor('file 2 imported', async () => (await sql(`SELECT count(*)::INT AS n FROM import_files WHERE status = 'succeeded'`))[0].n === 2, 60_000);
      assert.deepEqual(await sql(`SELECT key, status, predictions_loaded::INT AS p FROM import_files ORDER BY key`), [
        { key: 'a/1.parquet', status: 'succeeded', p: 10 },
        { key: 'a/2.parquet', status: 'succeeded', p: 7 },
      ]);
      assert.deepEqual(await sql(`SELECT count(*)::INT AS n, count(DISTINCT prediction_id)::INT AS d FROM predictions`), [{ n: 17, d: 17 }]);

      // SIGTERM with Redis gone again: out within worker.shutdownTimeout (6 s), exit 0, and the last line is JSON.
      await stack.redis.stop();
      await waitFor('readiness to see Redis gone', async () => (await call(base, '/readyz')).status === 503);
      daemon.proc.kill('SIGTERM');
      const exit = await Promise.race([daemon.exited, new Promise((resolve) => setTimeout(() => resolve('still running 7 s after SIGTERM'), 7000))]);
      assert.deepEqual(exit, { code: 0, signal: null });
      const all = jsonLines(daemon.output().split('\n').filter((l) => !/^(To continue|and security|More information|\(Use `node|versions published|will require node)/.test(l)).join('\n'));
      assert.equal(all.at(-1)!.msg, 'stopped');
    } finally {
      daemon.proc.kill('SIGKILL');
      await stack.redis.restart();
    }
  });

  it('a frozen Redis (connections open, no answers): probes, metrics and the API still answer, stop() keeps its deadline', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (c, _e, done) => (lines.push(String(c)), done()) });
    const config = stack.config([{ id: 'f', source: `s3://${BUCKET}/f/`, model: { id: 'f' }, schema: { predictionId: 'pid', predictionScore: 'score' } }], {
      worker: { concurrency: 2, attempts: 3, backoff: '200ms', lockDuration: '3s', shutdownTimeout: '3s' },
    });
    const daemon = await startDaemon(config, { log: createLogger('info', sink) });
    const base = `http://127.0.0.1:${(daemon.http!.server.address() as AddressInfo).port}`;
    try {
      await put('f/1.parquet', 0, 4);
      await waitFor('imported', async () => (await ledger(daemon, 'f')).some((r) => r.status === 'succeeded'));
      stack.redis.freeze();
      assert.equal((await call(base, '/healthz')).status, 200);
      const ready = await call(base, '/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.json().checks.redis, /^Redis at 127\.0\.0\.1:\d+ does not answer \(no answer within 800 ms\); readiness needs it/);
      assert.match((await call(base, '/metrics')).text, /^importer_redis_up 0$/m);
      const jobs = await call(base, '/api/jobs', 2000);
      assert.deepEqual([jobs.status, jobs.json().code], [503, 'IMP_ERR_REDIS_UNAVAILABLE']);
      const stopped = await Promise.race([daemon.stop().then(() => 'stopped'), new Promise((resolve) => setTimeout(() => resolve('stop() still running after 4 s'), 4000))]);
      assert.equal(stopped, 'stopped');
      assert.ok(lines.every((l) => JSON.parse(l)));
    } finally {
      stack.redis.thaw();
      await daemon.stop();
    }
  });
});
