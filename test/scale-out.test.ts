import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { validateConfig } from '../src/config/index.ts';
import { readerFor } from '../src/formats/index.ts';
import type { ImportResult } from '../src/import/index.ts';
import { PostgresStore, type ListedObject } from '../src/store/index.ts';
import { spawnCli, type ChildDaemon } from './helpers/child.ts';
import { freePort } from './helpers/ports.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';
import { importerOf } from './helpers/sql.ts';
import { BUCKET, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';

/** A seeded generator (mulberry32), so a failing arrival order can be replayed with TEST_SEED. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('scale-out: one scheduler and several worker processes on PostgreSQL', () => {
  let stack: Stack;
  const children: ChildDaemon[] = [];
  before(async () => (stack = await startStack({ store: 'postgres' })));
  after(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    await stack?.stop();
  });

  const body = (prefix: string) => ({
    redis: { url: stack.redis.url, prefix },
    store: { kind: 'postgres', url: stack.db!.url, schema: prefix, memoryLimit: '256MB', threads: 1 },
    s3: { endpoint: stack.s3.endpoint, forcePathStyle: true, maxAttempts: 3 },
    http: { port: 0 },
    defaults: { pollInterval: '1s' },
    worker: { concurrency: 2, attempts: 5, backoff: '300ms', lockDuration: '3s', shutdownTimeout: '10s' },
    log: { level: 'info' },
    jobs: [
      { id: 'preds', source: `s3://${BUCKET}/${prefix}/predictions/`, model: { id: 'm', version: 'v1' }, schema: { predictionId: 'pid', predictionScore: 'score', features: ['f'] } },
      { id: 'acts', source: `s3://${BUCKET}/${prefix}/actuals/`, model: { id: 'm' }, schema: { predictionId: 'pid', actualLabel: 'y' } },
    ],
  });
  const q = async (db: PostgresStore, text: string) => db.query<Record<string, number> & { status?: string }>(text);

  it('imports 200 files arriving in random order, some rewritten, exactly once with 1 scheduler and 3 workers', async () => {
    const seed = Number(process.env.TEST_SEED ?? Date.now() % 100_000);
    const rnd = random(seed);
    const configPath = join(stack.tmp.path, 'scale.yaml');
    children.push(await spawnCli(['scheduler'], { path: configPath, body: body('scale') }));
    for (let i = 0; i < 3; i++) children.push(await spawnCli(['worker', '--config', configPath]));

    // 150 prediction files of 40 IDs each; 50 actuals files for the IDs of every third prediction file.
    const files: Array<{ key: string; sql: string; format: string }> = [];
    for (let i = 0; i < 150; i++) {
      files.push({ key: `scale/predictions/d${i % 7}/p${i}.${i % 2 ? 'csv' : 'parquet'}`, sql: `SELECT 'f${i}-' || j AS pid, ${i} / 1000.0 AS score, j AS f FROM range(40) t(j)`, format: i % 2 ? 'FORMAT csv, HEADER true' : 'FORMAT parquet' });
    }
    for (let i = 0; i < 150; i += 3) files.push({ key: `scale/actuals/a${i}.parquet`, sql: `SELECT 'f${i}-' || j AS pid, 'y${i}' AS y FROM range(40) t(j)`, format: 'FORMAT parquet' });
    // 20 prediction files are rewritten after a while: 30 IDs instead of 40, another score.
    const rewritten = files.slice(0, 150).filter(() => rnd() < 0.15).slice(0, 20);
    const order = files.map((f) => ({ f, at: rnd() })).sort((a, b) => a.at - b.at).map((x) => x.f);
    const put = async (f: { key: string; sql: string; format: string }, name: string) => {
      const path = await writeFixture(join(stack.tmp.path, name), f.sql, f.format);
      await stack.s3.put(BUCKET, f.key, await readFile(path));
    };
    for (const [n, f] of order.entries()) {
      await put(f, `s${n}`);
      if (n % 20 === 0) await sleep(Math.floor(rnd() * 400));
    }
    for (const [n, f] of rewritten.entries()) {
      const i = Number(/p(\d+)\./.exec(f.key)![1]);
      await put({ ...f, sql: `SELECT 'f${i}-' || j AS pid, 0.777 AS score, j AS f FROM range(30) t(j)` }, `r${n}`);
    }

    const db = new PostgresStore({ ...validateConfig(body('scale')).store, readableDirectory: stack.tmp.path } as never);
    await db.init();
    try {
      const ledgerDone = async () => {
        const [r] = await q(db, `SELECT count(*)::int AS keys, count(*) FILTER (WHERE status IN ('succeeded', 'partially_succeeded'))::int AS done
                                  FROM (SELECT DISTINCT ON (job_id, key) * FROM import_files ORDER BY job_id, key, discovered_at DESC, file_id DESC) c`);
        const [pending] = await q(db, `SELECT count(*)::int AS n FROM import_files WHERE status = 'pending'`);
        return r.keys === 200 && r.done === 200 && pending.n === 0 && r;
      };
      await waitFor(`200 files imported (seed ${seed})`, ledgerDone, 240_000, 500).finally(async () => { if (process.env.TEST_DUMP) for (const [i, c] of children.entries()) await (await import('node:fs/promises')).writeFile(`/tmp/child-${i}.log`, c.output()); });
      const expectedPredictions = 150 * 40 - rewritten.length * 10;
      const [p] = await q(db, `SELECT count(*)::int AS n, count(DISTINCT (model_version, prediction_id))::int AS d, count(*) FILTER (WHERE prediction_score = 0.777)::int AS r FROM predictions`);
      assert.deepEqual(p, { n: expectedPredictions, d: expectedPredictions, r: rewritten.length * 30 }, `seed ${seed}`);
      const [rows] = await q(db, `SELECT count(*)::int AS n FROM prediction_rows`);
      assert.equal(rows.n, expectedPredictions, `no rows of replaced versions are left (seed ${seed})`);
      // Actuals of rewritten files' last 10 IDs wait for predictions that no longer exist.
      const rewrittenWithActuals = rewritten.filter((f) => Number(/p(\d+)\./.exec(f.key)![1]) % 3 === 0).length;
      const [a] = await q(db, `SELECT (SELECT count(*) FROM actuals)::int AS a, (SELECT count(*) FROM inferences WHERE actual_label IS NOT NULL)::int AS j`);
      assert.deepEqual(a, { a: 50 * 40, j: 50 * 40 - rewrittenWithActuals * 10 }, `seed ${seed}`);
      const [ledger] = await q(db, `SELECT count(*) FILTER (WHERE status NOT IN ('succeeded', 'superseded'))::int AS other FROM import_files`);
      assert.equal(ledger.other, 0, `every ledger row final (seed ${seed})`);
      const imported = children.slice(1).map((c) => c.output().split('\n').filter((l) => l.includes('"msg":"import succeeded"')).length);
      assert.ok(imported.filter((n) => n > 0).length >= 2, `the work was shared by the workers: ${imported.join(', ')}`);
      assert.doesNotMatch(children[0].output(), /"msg":"import succeeded"/, 'the scheduler imports nothing');
    } finally {
      await db.close();
    }
  });

  it('two workers racing on two versions of one key end with the newer version only, whatever the timing', async () => {
    const config = validateConfig(body('race'));
    const open = async () => {
      const s = new PostgresStore({ ...config.store, readableDirectory: stack.tmp.path } as never);
      await s.init();
      return s;
    };
    const [w1, w2] = [await open(), await open()];
    try {
      const job = config.jobs[0];
      const obj = (etag: string): ListedObject => ({ bucket: BUCKET, key: 'race/predictions/k.parquet', etag, size: 100, lastModified: new Date() });
      const request = async (store: PostgresStore, version: Awaited<ReturnType<PostgresStore['recordDiscovered']>>[number], n: number, score: number) => {
        const path = await writeFixture(join(stack.tmp.path, `race-${version.etag}.parquet`), `SELECT 'k-' || j AS pid, ${score} AS score, j AS f FROM range(${n}) t(j)`, 'FORMAT parquet');
        const file = { path, key: version.key };
        return importerOf(store).importFile({ job, version, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
      };
      for (const [round, olderFirst] of [[1, true], [2, false]] as const) {
        const [older] = await w1.recordDiscovered('preds', [obj(`old${round}`)]);
        const [newer] = await w1.recordDiscovered('preds', [obj(`new${round}`)]);
        // Two workers at almost the same moment; in round 1 the older version starts 30 ms ahead, in round 2 the newer.
        const start = async (first: () => Promise<ImportResult>, second: () => Promise<ImportResult>) => {
          const one = first();
          await sleep(30);
          const two = second();
          return [await one, await two];
        };
        const oldImport = () => request(w1, older, 50, 0.1);
        const newImport = () => request(w2, newer, 20, 0.9);
        const [ra, rb] = olderFirst ? await start(oldImport, newImport) : (await start(newImport, oldImport)).reverse();
        assert.equal(rb.status, 'succeeded');
        assert.ok(ra.status === 'superseded' || ra.status === 'succeeded', ra.status);
        const [p] = await q(w1, `SELECT count(*)::int AS n, min(prediction_score) AS lo, max(prediction_score) AS hi FROM prediction_rows WHERE prediction_id LIKE 'k-%'`);
        assert.deepEqual(p, { n: 20, lo: 0.9, hi: 0.9 }, `round ${round}`);
        const statuses = await w1.query<{ etag: string; status: string }>(`SELECT etag, status FROM import_files WHERE key = 'race/predictions/k.parquet' AND etag LIKE '%${round}'`);
        assert.deepEqual(Object.fromEntries(statuses.map((s) => [s.etag, s.status])), { [`old${round}`]: ra.status, [`new${round}`]: 'succeeded' });
      }
    } finally {
      await w1.close();
      await w2.close();
    }
  });

  it('waits for a database unreachable at start and mid-run, staying observable, then imports every file exactly once', async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(stack.db!.url).port || 5432) });
    try {
      await proxy.cut();
      const url = new URL(stack.db!.url);
      url.port = String(proxy.port);
      const port = await freePort();
      const cfg = body('down');
      const daemon = await spawnCli(['run'], { path: join(stack.tmp.path, 'down.yaml'), body: { ...cfg, http: { port }, store: { ...cfg.store, url: url.toString() } } });
      children.push(daemon);
      const put = async (key: string, n: number) => {
        const path = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), `SELECT '${key}-' || j AS pid, 0.5 AS score, j AS f FROM range(${n}) t(j)`, 'FORMAT parquet');
        await stack.s3.put(BUCKET, key, await readFile(path));
      };
      await put('down/predictions/a.parquet', 10);
      const ready = await waitFor('readiness naming the store', async () => {
        const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return r && { status: r.status, body: (await r.json()) as { checks: Record<string, string> } };
      });
      assert.equal(ready.status, 503);
      assert.match(ready.body.checks.store, /IMP_ERR_STORE|unreachable|ECONNREFUSED|connect/i);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      assert.match(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), /^importer_store_up 0$/m);
      await waitFor('the log to name the database', async () => /the database is unreachable: check store\.url and the network/.test(daemon.output()));
      assert.doesNotMatch(daemon.output(), /postgres:\/\/postgres@/, 'the URL is not logged');

      await proxy.restore();
      const db = new PostgresStore({ ...validateConfig(cfg).store, readableDirectory: stack.tmp.path } as never);
      await db.init();
      try {
        const imported = (n: number) => waitFor(`${n} rows imported`, async () => {
          const [r] = await q(db, `SELECT count(*)::int AS n FROM predictions`);
          const [p] = await q(db, `SELECT count(*)::int AS n FROM import_files WHERE status <> 'succeeded'`);
          return r.n === n && p.n === 0;
        }, 90_000);
        await imported(10);

        // Mid-run: imports fail while it is gone (and are retried), health and metrics keep answering.
        await proxy.cut();
        await put('down/predictions/b.parquet', 20);
        await put('down/predictions/c.parquet', 30);
        await waitFor('an import failing on the store', async () => /"code":"IMP_ERR_STORE"/.test(daemon.output().split('"msg":"store open"')[1] ?? ''), 30_000);
        assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
        assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 503);
        await proxy.restore();
        await imported(60);
        const [d] = await q(db, `SELECT count(DISTINCT prediction_id)::int AS n FROM prediction_rows`);
        assert.equal(d.n, 60);
      } finally {
        await db.close();
      }
      daemon.proc.kill('SIGTERM');
      assert.equal((await daemon.exited).code, 0);
    } finally {
      await proxy.close();
    }
  });

  it('SIGTERM while it still waits for the database at start: exits 0 soon, not killed by the signal', async () => {
    const url = new URL(stack.db!.url);
    url.port = String(await freePort());
    const cfg = body('early');
    const daemon = await spawnCli(['run'], { path: join(stack.tmp.path, 'early.yaml'), body: { ...cfg, store: { ...cfg.store, url: url.toString() } } });
    children.push(daemon);
    await waitFor('the wait for the database', async () => /the daemon waits for the store/.test(daemon.output()), 120_000);
    daemon.proc.kill('SIGTERM');
    const exit = await daemon.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(daemon.output(), /signal received while starting/);
  });

  it('refuses to start with credentials the database rejects, naming the setting', async () => {
    const url = new URL(stack.db!.url);
    url.username = 'no_such_role';
    const cfg = body('creds');
    const daemon = await spawnCli(['run'], { path: join(stack.tmp.path, 'creds.yaml'), body: { ...cfg, store: { ...cfg.store, url: url.toString() } } });
    children.push(daemon);
    const exit = await daemon.exited;
    assert.equal(exit.code, 1);
    assert.match(daemon.output(), /IMP_ERR_STORE.*role \\?"no_such_role\\?" does not exist.*check the user and password in store\.url/);
  });

  it('a worker killed with SIGKILL in the middle of a COPY leaves nothing partial; the file is imported exactly once after restart', async () => {
    const cfg = body('kill');
    const configPath = join(stack.tmp.path, 'kill.yaml');
    children.push(await spawnCli(['scheduler'], { path: configPath, body: cfg }));
    const first = await spawnCli(['worker', '--config', configPath]);
    children.push(first);
    const big = 300_000;
    const path = await writeFixture(join(stack.tmp.path, 'kill-big.parquet'), `SELECT 'big-' || j AS pid, (j % 100) / 100.0 AS score, j AS f FROM range(${big}) t(j)`, 'FORMAT parquet');
    await stack.s3.put(BUCKET, 'kill/predictions/big.parquet', await readFile(path));
    const db = new PostgresStore({ ...validateConfig(cfg).store, readableDirectory: stack.tmp.path } as never);
    await db.init();
    try {
      await waitFor('a COPY into the store', async () => {
        const [r] = await q(db, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY prediction_rows%' AND state = 'active'`);
        return r.n > 0;
      }, 60_000, 20);
      first.proc.kill('SIGKILL');
      assert.equal((await first.exited).signal, 'SIGKILL');
      // The server ends the dead session's transaction: no row of the file, the version still pending.
      await waitFor('the killed session to end', async () => (await q(db, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY prediction_rows%'`))[0].n === 0);
      const [mid] = await q(db, `SELECT (SELECT count(*) FROM prediction_rows)::int AS rows, (SELECT status FROM import_files WHERE key = 'kill/predictions/big.parquet') AS status`);
      assert.deepEqual(mid, { rows: 0, status: 'pending' });

      const second = await spawnCli(['worker', '--config', configPath]);
      children.push(second);
      await waitFor('the file imported after restart', async () => (await q(db, `SELECT status FROM import_files WHERE key = 'kill/predictions/big.parquet'`))[0]?.status === 'succeeded', 120_000, 500);
      const [after] = await q(db, `SELECT count(*)::int AS n, count(DISTINCT prediction_id)::int AS d FROM prediction_rows`);
      assert.deepEqual(after, { n: big, d: big });
      const [ledger] = await q(db, `SELECT count(*)::int AS n, max(predictions_loaded)::int AS loaded FROM import_files`);
      assert.deepEqual(ledger, { n: 1, loaded: big });
    } finally {
      await db.close();
    }
  });

  it('refuses to start with a role that lacks a right it needs, naming the right', async () => {
    const role = `importer_test_ro_${Date.now() % 1_000_000}`;
    const admin = new PostgresStore({ ...validateConfig(body('rights')).store, readableDirectory: stack.tmp.path } as never);
    await admin.init(); // the schema exists, made by its owner
    try {
      await admin.query(`CREATE ROLE ${role} LOGIN`);
      await admin.query(`GRANT USAGE ON SCHEMA rights TO ${role}`);
      await admin.query(`GRANT SELECT ON ALL TABLES IN SCHEMA rights TO ${role}`);
      const url = new URL(stack.db!.url);
      url.username = role;
      const limited = new PostgresStore({ ...validateConfig(body('rights')).store, url: url.toString(), readableDirectory: stack.tmp.path } as never);
      await assert.rejects(limited.init(), (err: Error & { code?: string; permanent?: boolean }) => {
        assert.equal(err.code, 'IMP_ERR_STORE');
        assert.equal(err.permanent, true);
        assert.match(err.message, /the PostgreSQL role lacks INSERT on rights\.import_files; UPDATE on rights\.import_files; INSERT on rights\.prediction_rows;/);
        assert.doesNotMatch(err.message, /SELECT on/);
        return true;
      });
      await limited.close();
    } finally {
      await admin.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await admin.query(`DROP ROLE IF EXISTS ${role}`);
      await admin.close();
    }
  });
});
