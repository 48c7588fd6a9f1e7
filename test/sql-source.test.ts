import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { DuckDBInstance } from '@duckdb/node-api';
import { validateConfig } from '../src/config/index.ts';
import type { Daemon } from '../src/daemon.ts';
import { dryRun } from '../src/worker/dry-run.ts';
import { createS3Client } from '../src/source/index.ts';
import { connectWarehouse, describeQuery, queryToCsv, windowRelation, windowSelect, type SqlJob } from '../src/source/sql/index.ts';
import { openMemoryEngine } from '../src/engine/index.ts';
import { tmpDir } from './helpers/tmp.ts';
import { spawnCli } from './helpers/child.ts';
import { freePort } from './helpers/ports.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';
import { BUCKET, counts, ledger, runDaemon, startStack, STORE_KINDS, waitFor, writeFixture, type Stack, type StoreKind } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';

/**
 * Query sources against the machine's real PostgreSQL as the warehouse (a database of this test
 * file's own, one schema per store): windows, lookback, late and updated rows, backfill in steps,
 * joins with file jobs both ways, a refused query and an unreachable database, the dry run.
 */

const HOUR = 3_600_000;
const token = 'sql-source-token-0123456789';

let wh: TestDatabase;
let whClient: pg.Client;
before(async () => {
  wh = await createTestDatabase('importer_wh');
  whClient = new pg.Client({ connectionString: wh.url });
  await whClient.connect();
});
after(async () => {
  await whClient?.end();
  await wh?.drop();
});

/** The current copies of the predictions of a model: id → score. */
async function scores(daemon: Daemon, model: string): Promise<Map<string, number>> {
  const rows = await sql(daemon.store)<{ id: string; s: number }>(`SELECT prediction_id AS id, prediction_score AS s FROM predictions WHERE model_id = $1`, [model]);
  return new Map(rows.map((r) => [r.id, Number(r.s)]));
}

for (const kind of STORE_KINDS) {
  describe(`query source: ${kind}`, () => {
    const ns = `ml_${kind}`;
    let stack: Stack;
    let daemon: Daemon;
    let proxy: TcpProxy;
    let base: string;
    const headers = { authorization: `Bearer ${token}` };
    const t0 = Date.now();
    const iso = (ms: number) => new Date(ms).toISOString();

    before(async () => {
      stack = await startStack({ store: kind });
      await whClient.query(`CREATE SCHEMA ${ns};
        CREATE TABLE ${ns}.predictions (prediction_id text, updated_at timestamptz, score float8, label text, age int, city text, embedding float8[]);
        CREATE TABLE ${ns}.actuals (id text, outcome text, seen timestamp)`);
      // 3 days of history: the first pull is a backfill in windows of one day.
      await whClient.query(`INSERT INTO ${ns}.predictions SELECT 'w' || i, $1::timestamptz + i * interval '1 hour', (i % 100) / 100.0, CASE WHEN i % 2 = 0 THEN 'click' ELSE 'no_click' END,
        20 + i % 50, CASE WHEN i % 3 = 0 THEN 'Oslo' ELSE 'Lima' END, ARRAY[i, i + 0.5] FROM generate_series(0, 71) i`, [iso(t0 - 72 * HOUR)]);
      await whClient.query(`INSERT INTO ${ns}.actuals SELECT 'f' || i, CASE WHEN i % 4 = 0 THEN 'click' ELSE 'no_click' END, now()::timestamp FROM generate_series(0, 29) i`);
      // Predictions from files (joined by the query's actuals) and actuals from files (joined to the query's predictions).
      const put = async (key: string, query: string) => stack.s3.put(BUCKET, key, await readFile(await writeFixture(join(stack.tmp.path, `${kind}-${key.replaceAll('/', '_')}`), query, 'FORMAT parquet')));
      await put('fm/preds/a.parquet', `SELECT 'f' || i AS pid, (i % 10) / 10.0 AS proba FROM range(0, 40) t(i)`);
      await put('whm/acts/a.parquet', `SELECT 'w' || i AS pid, 'click' AS label FROM range(0, 50) t(i)`);
      proxy = await startTcpProxy({ host: new URL(wh.url).hostname, port: Number(new URL(wh.url).port || 5432) });
      await proxy.cut();
      const away = new URL(wh.url);
      away.port = String(proxy.port);
      const sqlJob = (query: string, more: Record<string, unknown> = {}, url = wh.url) => ({ sql: { url, query, refreshInterval: '1s', ...more } });
      daemon = await runDaemon(stack.config([
        {
          id: 'wh-preds', source: sqlJob(`SELECT * FROM ${ns}.predictions`, { cursor: { column: 'updated_at', lookback: '10m' }, windowSize: '1d' }),
          model: { id: 'whm', type: 'binary', version: 'v1' },
          schema: { predictionId: 'prediction_id', timestamp: 'updated_at', predictionLabel: 'label', predictionScore: 'score', features: ['age', 'city'], embeddings: [{ name: 'e', vector: 'embedding' }] },
        },
        { id: 'file-acts', source: `s3://${BUCKET}/whm/acts/`, model: { id: 'whm' }, schema: { predictionId: 'pid', actualLabel: 'label' } },
        { id: 'file-preds', source: `s3://${BUCKET}/fm/preds/`, model: { id: 'fm', version: 'v1' }, schema: { predictionId: 'pid', predictionScore: 'proba' } },
        { id: 'wh-acts', source: sqlJob(`SELECT id, outcome, seen FROM ${ns}.actuals`, { refreshInterval: '1h' }), model: { id: 'fm' }, schema: { predictionId: 'id', actualLabel: 'outcome', timestamp: 'seen' } },
        {
          id: 'broken', source: sqlJob(`SELECT prediction_id, nope FROM ${ns}.predictions`, { cursor: { column: 'updated_at', start: iso(t0 - HOUR) }, refreshInterval: '1h' }),
          model: { id: 'broken' }, schema: { predictionId: 'prediction_id', predictionScore: 'nope' },
        },
        { id: 'away', source: sqlJob(`SELECT * FROM ${ns}.actuals`, {}, away.toString()), model: { id: 'away' }, schema: { predictionId: 'id', actualLabel: 'outcome' } },
      ], { http: { port: 0, token, host: '127.0.0.1' } }));
      base = `http://127.0.0.1:${(daemon.http!.server.address() as { port: number }).port}`;
    });
    after(async () => {
      await daemon?.stop();
      await proxy?.close();
      await stack?.stop();
    });

    const windows = async () => (await ledger(daemon, 'wh-preds')).filter((r) => r.key.startsWith('window/'));

    it('pulls the table in windows of at most windowSize, from its first row, each window one ledger entry', async () => {
      await waitFor('72 predictions from the query', async () => (await counts(daemon, 'whm')).p === 72);
      const rows = await windows();
      const ranges = rows.map((r) => r.key.split('/').slice(1).map((t) => Date.parse(t)));
      // The first window starts 1 ms before the first row; they follow one another without gap or overlap.
      assert.equal(ranges[0][0], t0 - 72 * HOUR - 1);
      for (let i = 1; i < ranges.length; i++) assert.equal(ranges[i][0], ranges[i - 1][1]);
      for (const [from, to] of ranges.slice(0, 3)) assert.equal(to - from, 24 * HOUR);
      // The backfill: three windows of a day hold the 72 rows (the 10 minutes of lookback before each hold none), each committed with its count.
      assert.deepEqual(rows.slice(0, 3).map((r) => [r.status, r.rows_read, r.predictions_loaded]), [['succeeded', 24, 24], ['succeeded', 24, 24], ['succeeded', 24, 24]]);
      const [row] = await sql(daemon.store)<{ features: string; e: string }>(`SELECT CAST(features AS VARCHAR) AS features FROM predictions WHERE model_id = 'whm' AND prediction_id = 'w3'`);
      assert.match(String(row.features), /"age":\s*23/);
      assert.match(String(row.features), /"city":\s*"Oslo"/);
    });

    it('picks up rows inserted later, replaces a row updated inside the lookback, and a late row whose cursor is before the last window', async () => {
      await whClient.query(`INSERT INTO ${ns}.predictions SELECT 'new' || i, now(), 0.5, 'click', 30, 'Oslo', ARRAY[1.0, 2.0] FROM generate_series(1, 10) i`);
      await waitFor('the 10 new rows', async () => (await counts(daemon, 'whm')).p === 82);
      // Updated: its new cursor is now, so the next window reads it again; the newest window's copy is current.
      await whClient.query(`UPDATE ${ns}.predictions SET score = 0.99, updated_at = now() WHERE prediction_id = 'w71'`);
      await waitFor('w71 replaced', async () => (await scores(daemon, 'whm')).get('w71') === 0.99);
      assert.equal((await counts(daemon, 'whm')).p, 82);
      // Late: committed in the warehouse after a window past its cursor was read, but inside the lookback.
      const late = Date.now();
      await waitFor('a window past the late row committed', async () => (await windows()).some((r) => r.status === 'succeeded' && Date.parse(r.key.split('/')[1]) > late));
      await whClient.query(`INSERT INTO ${ns}.predictions VALUES ('late', $1, 0.25, 'click', 40, 'Lima', ARRAY[0.0, 0.0])`, [iso(late)]);
      await waitFor('the late row', async () => (await scores(daemon, 'whm')).get('late') === 0.25);
      assert.equal((await counts(daemon, 'whm')).p, 83);
      const [{ n }] = await sql(daemon.store)<{ n: number }>(`SELECT count(*)::INT AS n FROM predictions WHERE model_id = 'whm' AND prediction_id = 'w71'`);
      assert.equal(n, 1);
    });

    it('joins actuals from a query to predictions from files, and actuals from files to predictions from a query', async () => {
      await waitFor('fm joined', async () => (await counts(daemon, 'fm')).j === 30);
      assert.deepEqual(await counts(daemon, 'fm'), { p: 40, a: 30, j: 30 });
      await waitFor('whm joined', async () => (await counts(daemon, 'whm')).j === 50);
      const [acts] = await ledger(daemon, 'wh-acts');
      assert.equal(acts.key, 'query');
      assert.equal(acts.actuals_loaded, 30);
    });

    it('fails a window whose query the database refuses, once, with its message and the job; an unreachable database is the job\'s status until it answers', async () => {
      const [broken] = await waitFor('the broken window failed', async () => {
        const failed = (await ledger(daemon, 'broken')).filter((r) => r.status === 'failed');
        return failed.length > 0 && failed;
      });
      assert.equal(broken.error_code, 'IMP_ERR_SOURCE_QUERY');
      assert.equal(broken.attempts, 1);
      assert.match(broken.error_message!, /^window\/\S+: job broken: .*column "nope" does not exist \(SQLSTATE 42703\)/);
      const status = async () => (await (await fetch(`${base}/api/jobs/away`, { headers })).json()) as { state: string; lastPoll: { outcome: string; error?: string } | null; files: Record<string, number> };
      const down = await waitFor('the away job\'s poll error', async () => ((await status()).lastPoll?.outcome === 'error' ? status() : undefined));
      assert.match(down.lastPoll!.error!, /^IMP_ERR_SOURCE_UNREACHABLE: job away: cannot open a session on 127\.0\.0\.1:\d+\/importer_wh_\w+: /);
      assert.equal((await counts(daemon, 'away')).a, 0);
      await proxy.restore();
      await waitFor('the away job imported once the database answers', async () => (await counts(daemon, 'away')).a === 30);
    });

    it('exports rows, windows and the cursor lag as metrics', async () => {
      const text = await (await fetch(`${base}/metrics`)).text();
      const lag = Number(/^importer_sql_cursor_lag_seconds\{job="wh-preds"\} (\S+)$/m.exec(text)?.[1]);
      assert.ok(lag >= 0 && lag < 3600, `lag ${lag}`);
      assert.match(text, /^importer_rows_loaded_total\{job="wh-preds",kind="prediction"\} \d+$/m);
      const { jobs } = (await (await fetch(`${base}/api/jobs`, { headers })).json()) as { jobs: Array<{ id: string; source: unknown }> };
      assert.equal(jobs.find((j) => j.id === 'wh-preds')!.source, `sql postgres://127.0.0.1:${new URL(wh.url).port || 5432}/${wh.name}: SELECT * FROM ${ns}.predictions`);
    });
  });
}

describe('dry run of a query source', () => {
  it('runs the query with a limit and reports mapping and row errors as for files', async () => {
    await whClient.query(`CREATE TABLE dry (id text, score text, at timestamptz); INSERT INTO dry VALUES ('a', '0.5', now()), (NULL, '0.1', now()), ('c', 'high', now()), ('d', '0.3', now())`);
    const config = validateConfig({ jobs: [{ id: 'dry', source: { sql: { url: wh.url, query: 'SELECT * FROM dry ORDER BY at, id NULLS FIRST' } }, model: { id: 'dry' }, schema: { predictionId: 'id', predictionScore: 'score' } }] });
    const s3 = createS3Client(config.s3);
    const report = await dryRun(config, config.jobs[0], s3, { limit: 3 });
    assert.equal(report.status, 'invalid');
    assert.equal(report.format, 'sql');
    assert.deepEqual(report.checks, { access: 'ok', schema: 'ok', records: 'failed' });
    assert.deepEqual(report.rows, { read: 3, valid: 1, rejected: 2 });
    assert.deepEqual(report.errors.map((e) => [e.code, e.row]), [['IMP_ERR_ROW_PREDICTION_ID_MISSING', 1], ['IMP_ERR_ROW_VALUE_INVALID', 3]]);
    const missing = await dryRun(validateConfig({ jobs: [{ ...config.jobs[0], source: { sql: { url: wh.url, query: 'SELECT id FROM dry' } } }] }), config.jobs[0] && validateConfig({ jobs: [{ id: 'dry', source: { sql: { url: wh.url, query: 'SELECT id FROM dry' } } , model: { id: 'dry' }, schema: { predictionId: 'id', predictionScore: 'score' } }] }).jobs[0], s3);
    assert.equal(missing.status, 'failed');
    assert.equal(missing.errors[0].code, 'IMP_ERR_SCHEMA_MISSING_COLUMN');
    s3.destroy();
  });
});

// The embedded store only: a child daemon takes ~10 s to start on 2 busy cores, and the PostgreSQL
// store's ledger path is the same for windows as for files (covered by scale-out.test.ts).
for (const kind of STORE_KINDS.filter((k) => k === 'duckdb') as StoreKind[]) {
  describe(`query source killed between two windows: ${kind}`, () => {
    let stack: Stack;
    before(async () => (stack = await startStack({ store: kind })));
    after(async () => stack?.stop());

    it('neither skips nor doubles a window after SIGKILL and restart: exact counts', async () => {
      const ns = `crash_${kind}`;
      const t0 = Date.now();
      // 2000 rows over 48 hours, pulled in 12 windows of 4 hours, no lookback: every row is read by exactly one window.
      await whClient.query(`CREATE SCHEMA ${ns}`);
      await whClient.query(`CREATE TABLE ${ns}.p AS SELECT 'c' || i AS pid, $1::timestamptz + i * interval '86.4 seconds' AS at, (i % 10) / 10.0 AS s FROM generate_series(0, 1999) i`, [new Date(t0 - 48 * HOUR).toISOString()]);
      const port = await freePort();
      const storePath = join(stack.tmp.path, 'crash.duckdb');
      const body = {
        redis: { url: stack.redis.url, prefix: `crash-${kind}` },
        store: kind === 'duckdb' ? { kind, path: storePath, memoryLimit: '512MB', threads: 2 } : { kind, url: stack.db!.url, schema: 'crash' },
        http: { port },
        worker: { concurrency: 2, attempts: 3, backoff: '200ms', lockDuration: '2s', shutdownTimeout: '10s' },
        jobs: [{ id: 'crash', source: { sql: { url: wh.url, query: `SELECT * FROM ${ns}.p`, cursor: { column: 'at' }, windowSize: '4h', refreshInterval: '1s' } }, model: { id: 'crash' }, schema: { predictionId: 'pid', predictionScore: 's', timestamp: 'at' } }],
      };
      const configPath = join(stack.tmp.path, 'crash.yaml');
      const first = await spawnCli(['run'], { path: configPath, body });
      const committed = () => first.output().split('\n').filter((l) => l.includes('"msg":"import succeeded"')).length;
      await waitFor('three windows committed', async () => committed() >= 3, 60_000, 20);
      first.proc.kill('SIGKILL');
      await first.exited;

      const query = async <T>(text: string): Promise<T[]> => {
        if (kind === 'postgres') {
          const c = new pg.Client({ connectionString: stack.db!.url });
          await c.connect();
          try {
            await c.query('SET search_path = crash');
            return (await c.query(text)).rows as T[];
          } finally {
            await c.end();
          }
        }
        const db = await DuckDBInstance.create(storePath);
        const conn = await db.connect();
        try {
          return (await conn.runAndReadAll(text)).getRowObjectsJson() as T[];
        } finally {
          conn.closeSync();
          db.closeSync();
        }
      };
      const [mid] = await query<{ done: number; waiting: number }>(`SELECT count(*) FILTER (WHERE status = 'succeeded')::INT AS done, count(*) FILTER (WHERE status = 'pending')::INT AS waiting FROM import_files`);
      assert.ok(mid.done >= 3 && mid.waiting > 0, `the kill must land between windows: ${JSON.stringify(mid)}`);

      const second = await spawnCli(['run', '--config', configPath]);
      const api = async <T>(text: string) => ((await (await fetch(`http://127.0.0.1:${port}/api/sql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: text, limit: 1000 }) })).json()) as { rows?: T[] }).rows ?? [];
      await waitFor('every row after restart', async () => {
        const [r] = await api<{ n: number }>(`SELECT count(*)::INT AS n FROM predictions`).catch(() => [{ n: 0 }]);
        return r?.n === 2000;
      }, 60_000);
      // The rows may all be in before the restart (the kill can land on an empty window): SIGTERM only once it runs.
      await waitFor('the restarted daemon running', async () => second.output().includes('"msg":"inference-importer started"'), 60_000);
      second.proc.kill('SIGTERM');
      assert.deepEqual(await second.exited, { code: 0, signal: null }, second.output().slice(-2000));

      const windows = await query<{ key: string; status: string; n: number }>(`SELECT key, status, predictions_loaded::INT AS n FROM import_files ORDER BY key`);
      const ranges = windows.map((w) => w.key.split('/').slice(1).map((t) => Date.parse(t)));
      for (let i = 1; i < ranges.length; i++) assert.equal(ranges[i][0], ranges[i - 1][1], `window ${i} follows window ${i - 1}`);
      const backfill = windows.slice(0, 12);
      assert.ok(backfill.every((w) => w.status === 'succeeded'));
      // Each backfill window loaded exactly the rows of its range, and the store holds each row once.
      const perWindow = (await whClient.query(`SELECT count(*)::INT AS n FROM ${ns}.p, (SELECT $1::timestamptz + k * interval '4 hours' - interval '1 millisecond' AS lo FROM generate_series(0, 11) k) w
        WHERE at > lo AND at <= lo + interval '4 hours' GROUP BY lo ORDER BY lo`, [new Date(t0 - 48 * HOUR).toISOString()])).rows.map((r) => r.n);
      assert.deepEqual(backfill.map((w) => w.n), perWindow.length === 12 ? perWindow : assert.fail(`${perWindow.length} ranges`));
      const [total] = await query<{ rows: number; loaded: number }>(`SELECT (SELECT count(*) FROM predictions)::INT AS rows, (SELECT sum(predictions_loaded) FROM import_files)::INT AS loaded`);
      assert.deepEqual(total, { rows: 2000, loaded: 2000 });
    });
  });
}

describe('Redshift: IAM logins and the cursor transfer', () => {
  const role = `IAM:importer_${Math.random().toString(36).slice(2, 8)}`;
  let server: Server;
  let endpoint: string;
  const calls: Array<{ target: string; body: string }> = [];
  let expiresIn = HOUR;
  before(async () => {
    await whClient.query(`CREATE ROLE "${role}" LOGIN; CREATE TABLE rs (id text, at timestamptz, s float8, note text);
      INSERT INTO rs VALUES ('a', '2026-11-01T00:00:00Z', 0.5, 'say "hi", ok'), ('b', '2026-11-01T01:00:00Z', NULL, ''), ('c', '2026-11-01T02:00:00Z', 0.25, NULL);
      GRANT SELECT ON rs TO "${role}"`);
    // A stand-in for the Redshift APIs (there is none here): the real SDK clients talk to it over HTTP.
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d)).on('end', () => {
        const target = String(req.headers['x-amz-target'] ?? new URLSearchParams(body).get('Action'));
        calls.push({ target, body });
        const expires = new Date(Date.now() + expiresIn);
        if (target === 'RedshiftServerless.GetCredentials') {
          res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify({ dbUser: role, dbPassword: 'serverless-password-123', expiration: expires.getTime() / 1000 }));
        } else {
          res.writeHead(200, { 'content-type': 'text/xml' }).end(`<GetClusterCredentialsResponse xmlns="http://redshift.amazonaws.com/doc/2012-12-01/"><GetClusterCredentialsResult>
            <DbUser>${role}</DbUser><DbPassword>cluster-password-123</DbPassword><Expiration>${expires.toISOString()}</Expiration></GetClusterCredentialsResult>
            <ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></GetClusterCredentialsResponse>`);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    server?.close();
    await whClient.query(`REVOKE ALL ON rs FROM "${role}"; DROP ROLE IF EXISTS "${role}"`).catch(() => undefined);
  });

  const job = (iam: Record<string, unknown>, url = `redshift://importer@127.0.0.1:${new URL(wh.url).port || 5432}/${wh.name}?sslmode=disable&iam=true`) =>
    validateConfig({ jobs: [{ id: 'rs', source: { sql: { url, query: 'SELECT * FROM rs ORDER BY id', iam } }, model: { id: 'rs' }, schema: { predictionId: 'id', predictionScore: 's' } }] }).jobs[0] as SqlJob;

  it('logs in with GetClusterCredentials, renews the password before it expires, and streams rows through a cursor', async () => {
    const j = job({ clusterIdentifier: 'ctr-cluster', endpoint, region: 'eu-west-1', autoCreate: true });
    const wh1 = await connectWarehouse(j, 'us-east-1');
    const who = (await wh1.client.query('SELECT current_user AS u')).rows[0].u;
    assert.equal(who, role);
    assert.equal(wh1.dialect, 'redshift');
    const dir = await tmpDir('importer-rs-');
    const engine = await openMemoryEngine({ readableDirectory: dir.path, memoryLimit: '256MB' });
    try {
      const columns = await describeQuery(wh1, j);
      const file = { path: join(dir.path, 'w.csv'), key: 'window' };
      assert.equal(await queryToCsv(wh1, j, windowSelect(j, columns), file.path, 'test'), 3);
      await wh1.close();
      const rel = await windowRelation(file, columns);
      const rows = await engine.run(`SELECT id, CAST("at" AS VARCHAR) AS "at", s, note FROM ${rel.sql} ORDER BY id`);
      assert.deepEqual(rows, [
        { id: 'a', at: '2026-11-01 00:00:00+00', s: 0.5, note: 'say "hi", ok' },
        { id: 'b', at: '2026-11-01 01:00:00+00', s: null, note: '' },
        { id: 'c', at: '2026-11-01 02:00:00+00', s: 0.25, note: null },
      ]);
    } finally {
      engine.close();
      await dir.cleanup();
    }
    assert.equal(calls.length, 1);
    const sent = new URLSearchParams(calls[0].body);
    assert.deepEqual(Object.fromEntries(['Action', 'ClusterIdentifier', 'DbUser', 'DbName', 'DurationSeconds', 'AutoCreate'].map((k) => [k, sent.get(k)])),
      { Action: 'GetClusterCredentials', ClusterIdentifier: 'ctr-cluster', DbUser: 'importer', DbName: wh.name, DurationSeconds: '900', AutoCreate: 'true' });
    // Valid for an hour: the next session reuses it; one that expires within 5 minutes is renewed first.
    await (await connectWarehouse(j, 'us-east-1')).close();
    assert.equal(calls.length, 1);
    calls.length = 0;
    expiresIn = 60_000;
    const j2 = job({ clusterIdentifier: 'other-cluster', endpoint, region: 'eu-west-1' });
    await (await connectWarehouse(j2, 'us-east-1')).close();
    await (await connectWarehouse(j2, 'us-east-1')).close();
    assert.deepEqual(calls.map((c) => new URLSearchParams(c.body).get('ClusterIdentifier')), ['other-cluster', 'other-cluster']);
    expiresIn = HOUR;
  });

  it('logs in to a Redshift Serverless workgroup with GetCredentials', async () => {
    calls.length = 0;
    const wh2 = await connectWarehouse(job({ workgroupName: 'ml-wg', endpoint, region: 'eu-west-1', durationSeconds: 1800 }), 'us-east-1');
    assert.equal((await wh2.client.query('SELECT current_user AS u')).rows[0].u, role);
    await wh2.close();
    assert.deepEqual(calls.map((c) => [c.target, JSON.parse(c.body)]), [['RedshiftServerless.GetCredentials', { workgroupName: 'ml-wg', dbName: wh.name, durationSeconds: 1800 }]]);
  });
});

describe('query source config', () => {
  it('names every bad key of a query source, and what a source may be', () => {
    const check = (source: unknown) => {
      try {
        validateConfig({ jobs: [{ id: 'j', source, model: { id: 'm' }, schema: { predictionId: 'id', predictionScore: 's' } }] });
        return 'valid';
      } catch (err) {
        return (err as Error).message;
      }
    };
    assert.equal(check({ sql: { url: 'mysql://h/db', query: '', cursor: { lookback: 'soon' }, extra: 1 } }), [
      'config has 5 errors:',
      '  jobs[0].source.sql.url: must be a postgres://, postgresql:// or redshift:// URL',
      '  jobs[0].source.sql.query: Too small: expected string to have >=1 characters',
      '  jobs[0].source.sql.cursor.column: required',
      '  jobs[0].source.sql.cursor.lookback: not a duration: "soon" (use e.g. 500ms, 10s, 5m, 1h)',
      '  jobs[0].source.sql: unknown key "extra"',
    ].join('\n'));
    assert.equal(check(42), 'config has 1 error:\n  jobs[0].source: must be s3://bucket/prefix/ or { sql: { url, query, ... } }');
    assert.equal(check('http://x/'), 'config has 1 error:\n  jobs[0].source: must be s3://bucket/prefix/');
    assert.equal(check({ sql: { url: 'redshift://u@c.abc.eu-west-1.redshift.amazonaws.com/dev?iam=true', query: 'SELECT 1' } }), 'valid');
  });
});
