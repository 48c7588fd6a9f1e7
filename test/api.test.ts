import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { startDaemon, type Daemon } from '../src/daemon.ts';
import { createLogger, secretValues } from '../src/log.ts';
import { spawnCli } from './helpers/child.ts';
import { BUCKET, ledger, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';
import { OPEN_ROUTES } from '../src/admin/server.ts';

const TOKEN = 'api-token-0123456789';
const TS = `TIMESTAMPTZ '2026-11-20 10:00:00+00'`;

/**
 * Every [method, path] the server routes, read from Fastify's route tree; `:param` and `*` become
 * a job ID and a plain segment so the paths can be requested.
 */
function routesOf(app: FastifyInstance): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const segments: string[] = [];
  for (const line of app.printRoutes().split('\n')) {
    const m = /^([│ ]*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    segments.length = [...m[1]].length / 4;
    segments.push(m[2]);
    const path = segments.join('').replace(/:id\b/g, 'preds').replace(/:\w+/g, 'x').replace(/\*/g, 'x');
    if (m[3]) for (const method of m[3].split(', ')) out.push([method, path]);
  }
  return out;
}

describe('admin API and dashboard', () => {
  let stack: Stack;
  let daemon: Daemon;
  let base: string;
  const call = async (method: string, path: string, body?: unknown, token: string | null = TOKEN) => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch { /* HTML or Prometheus text */ }
    return { status: res.status, body: json as any };
  };
  const put = async (key: string, sql: string) => {
    const path = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), sql, 'FORMAT parquet');
    await stack.s3.put(BUCKET, key, await readFile(path));
  };

  // The run is configured with a secret in every secret-bearing setting; the last test scans its whole log for them.
  const REDIS_PASSWORD = 'redis-password-4711';
  const SESSION_TOKEN = 'aws-session-token-4711';
  let logged = '';

  before(async () => {
    stack = await startStack();
    const admin = new Redis(stack.redis.url);
    await admin.config('SET', 'requirepass', REDIS_PASSWORD);
    admin.disconnect();
    process.env.AWS_SESSION_TOKEN = SESSION_TOKEN;
    const sink = new Writable({ write: (chunk, _enc, done) => ((logged += chunk), done()) });
    const config = stack.config([
      { id: 'preds', source: `s3://${BUCKET}/preds/`, format: 'parquet', model: { id: 'ctr', version: 'v1' }, schema: { predictionId: 'pid', timestamp: 'ts', predictionLabel: 'label' } },
      { id: 'acts', source: `s3://${BUCKET}/acts/`, model: { id: 'ctr' }, schema: { predictionId: 'pid', timestamp: 'ts', actualLabel: 'label' } },
    ], { http: { port: 0, host: '127.0.0.1', token: TOKEN }, redis: { url: `redis://:${REDIS_PASSWORD}@127.0.0.1:${stack.redis.port}`, prefix: 'api' }, log: { level: 'debug' } });
    daemon = await startDaemon(config, { log: createLogger(config.log.level, sink, secretValues(config)) });
    base = `http://127.0.0.1:${(daemon.http!.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await daemon?.stop();
    await stack?.stop();
  });

  it('answers 401 on every route the server has but health, readiness, metrics and the login page, for every wrong Authorization header; serves them with the token', async () => {
    // Enumerated from the running server, so a route added later is checked without touching this test.
    assert.deepEqual([...OPEN_ROUTES].sort(), ['/healthz', '/login', '/metrics', '/readyz']);
    const routes = routesOf(daemon.http!).filter(([, path]) => !OPEN_ROUTES.has(path));
    const served: Array<[string, string, unknown?]> = [
      ['GET', '/api/jobs'], ['GET', '/api/jobs/preds'], ['GET', '/api/jobs/preds/files'], ['POST', '/api/jobs/preds/pause'], ['POST', '/api/jobs/preds/resume'],
      ['POST', '/api/queue/pause'], ['POST', '/api/queue/resume'], ['POST', '/api/jobs/preds/retry'], ['POST', '/api/jobs/preds/reimport', { key: 'x' }],
      ['POST', '/api/jobs/preds/dry-run', {}], ['GET', '/api/models'], ['POST', '/api/sql', { sql: 'SELECT 1' }], ['GET', '/admin/queues'], ['GET', '/admin/queues/api/queues'],
    ];
    const enumerated = new Set(routes.map(([m, p]) => `${m} ${p}`));
    for (const [method, path] of served) assert.ok(enumerated.has(`${method} ${path}`), `${method} ${path} is among the ${routes.length} enumerated routes`);
    const wrong: Array<[string, string | undefined]> = [
      ['no header', undefined],
      ['Bearer and no token', 'Bearer'],
      ['Bearer and an empty token', 'Bearer '],
      ['a prefix of the token', `Bearer ${TOKEN.slice(0, -1)}`],
      ['the token and one character more', `Bearer ${TOKEN}0`],
      ['the last character differs', `Bearer ${TOKEN.slice(0, -1)}8`],
      ['the first character differs', `Bearer b${TOKEN.slice(1)}`],
      ['another scheme', `Basic ${TOKEN}`],
      ['the bare token', TOKEN],
    ];
    for (const [method, path] of routes) {
      await Promise.all(wrong.map(async ([what, authorization]) => {
        const res = await fetch(`${base}${path}`, { method, headers: authorization === undefined ? {} : { authorization } });
        assert.equal(res.status, 401, `${method} ${path} with ${what}`);
        if (method !== 'HEAD') assert.deepEqual(await res.json(), { code: 'IMP_ERR_HTTP_UNAUTHORIZED', message: 'missing or wrong bearer token' }, `${method} ${path} with ${what}`);
        else await res.arrayBuffer();
      }));
    }
    for (const [method, path, body] of served) {
      const res = await call(method, path, body);
      assert.ok([200, 404].includes(res.status) && !(res.status === 404 && path !== '/api/jobs/preds/reimport'), `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    const dashboard = await fetch(`${base}/admin/queues`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.match(await dashboard.text(), /<title>inference-importer<\/title>|bull-board|<div id="root">/i);
    for (const open of ['/healthz', '/readyz', '/metrics']) assert.equal((await call('GET', open, undefined, null)).status, 200);
  });

  it('lists jobs with state, counters and last poll; files with versions and first errors; 400 and 404 as JSON', async () => {
    await put('preds/a.parquet', `SELECT 'p' || i AS pid, ${TS} AS ts, 'yes' AS label FROM range(5) t(i) UNION ALL SELECT NULL, ${TS}, 'no'`);
    await waitFor('a imported', async () => (await ledger(daemon, 'preds')).some((r) => r.status === 'partially_succeeded'));
    const { body: one } = await call('GET', '/api/jobs/preds');
    assert.equal(one.state, 'active');
    assert.equal(one.source, `s3://${BUCKET}/preds/`);
    assert.deepEqual(one.files, { pending: 0, succeeded: 0, partially_succeeded: 1, failed: 0, superseded: 0, vanished: 0 });
    assert.deepEqual(one.rows, { loaded: 5, rejected: 1 });
    assert.equal(one.lastPoll.outcome, 'ok');
    assert.ok(Date.now() - Date.parse(one.lastPoll.at) < 10_000);
    const { body: files } = await call('GET', '/api/jobs/preds/files?status=partially_succeeded&limit=10');
    assert.equal(files.total, 1);
    assert.equal(files.files[0].key, 'preds/a.parquet');
    assert.deepEqual(files.files[0].firstErrors, [{ code: 'IMP_ERR_ROW_PREDICTION_ID_MISSING', message: 'row 6, column "pid": the prediction ID is null or empty', row: 6, column: 'pid' }]);
    assert.deepEqual(await call('GET', '/api/jobs/preds/files?status=done'), {
      status: 400, body: { code: 'IMP_ERR_HTTP_BAD_REQUEST', message: 'query.status: Invalid option: expected one of "pending"|"succeeded"|"partially_succeeded"|"failed"|"superseded"|"vanished"' },
    });
    assert.deepEqual((await call('GET', '/api/jobs/nope')).status, 404);
    assert.deepEqual((await call('POST', '/api/jobs/preds/reimport', { key: 'preds/none.parquet' })).body.code, 'IMP_ERR_HTTP_NOT_FOUND');
  });

  it('pauses a job through the API (nothing new is imported), resumes it, retries failed files and re-imports one', async () => {
    assert.deepEqual((await call('POST', '/api/jobs/preds/pause')).body, { id: 'preds', state: 'paused' });
    await put('preds/b.parquet', `SELECT 'b' || i AS pid, ${TS} AS ts, 'yes' AS label FROM range(3) t(i)`);
    await stack.s3.put(BUCKET, 'preds/c.parquet', 'not parquet at all');
    await sleep(2500);
    assert.deepEqual((await ledger(daemon, 'preds')).map((r) => r.key), ['preds/a.parquet']);
    assert.equal((await call('GET', '/api/jobs')).body.jobs[0].state, 'paused');
    await call('POST', '/api/jobs/preds/resume');
    await waitFor('b and c ended', async () => {
      const l = await ledger(daemon, 'preds');
      return l.length === 3 && l.every((r) => r.status !== 'pending') && l;
    });
    const failed = (await call('GET', '/api/jobs/preds/files?status=failed')).body.files;
    // A corrupt file is permanent: one attempt, no retries.
    assert.deepEqual(failed.map((f: any) => [f.key, f.errorCode, f.attempts]), [['preds/c.parquet', 'IMP_ERR_FORMAT_UNREADABLE', 1]]);
    // The producer fixes the file in place? No: retry re-runs the same version (here: fails again, attempts start over).
    assert.deepEqual((await call('POST', '/api/jobs/preds/retry')).body, { job: 'preds', retried: ['preds/c.parquet'] });
    await waitFor('c failed again', async () => (await ledger(daemon, 'preds')).find((r) => r.key === 'preds/c.parquet')!.status === 'failed');
    const before = await sql(daemon.store)<{ t: string }>(`SELECT max(loaded_at)::VARCHAR AS t FROM model_predictions.ctr WHERE prediction_id LIKE 'b%'`);
    assert.equal((await call('POST', '/api/jobs/preds/reimport', { key: 'preds/b.parquet' })).body.status, 'pending');
    await waitFor('b re-imported', async () => {
      const [now] = await sql(daemon.store)<{ t: string }>(`SELECT max(loaded_at)::VARCHAR AS t FROM model_predictions.ctr WHERE prediction_id LIKE 'b%'`);
      return now.t !== before[0].t;
    });
    const [{ n }] = await sql(daemon.store)<{ n: number }>(`SELECT count(*)::INT AS n FROM model_predictions.ctr WHERE prediction_id LIKE 'b%'`);
    assert.equal(n, 3);
  });

  it('summarises models and moves the join metrics by exact amounts', async () => {
    await put('acts/a.parquet', `SELECT 'p' || i AS pid, ${TS} + INTERVAL (i * 2) HOUR AS ts, 'yes' AS label FROM range(4) t(i) UNION ALL SELECT 'early', ${TS}, 'no'`);
    await waitFor('actuals imported', async () => (await ledger(daemon, 'acts')).some((r) => r.status === 'succeeded'));
    const { body } = await call('GET', '/api/models');
    assert.deepEqual(body.models, [{ modelId: 'ctr', environment: 'production', predictions: 8, actuals: 5, joined: 4, matchRate: 0.5, actualsWaiting: 1, delayP50: 10_800, delayP90: 19_440 }]);
    const metrics = (await call('GET', '/metrics', undefined, null)).body as string;
    const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1]);
    assert.equal(value('importer_actuals_matched_total{job="acts"}'), 4);
    assert.equal(value('importer_actual_delay_seconds_count{job="acts"}'), 4);
    assert.equal(value('importer_actual_delay_seconds_sum{job="acts"}'), 0 + 7200 + 14_400 + 21_600);
    assert.equal(value('importer_actual_delay_seconds_bucket{le="3600",job="acts"}'), 1);
    assert.equal(value('importer_actual_delay_seconds_bucket{le="21600",job="acts"}'), 4);
    assert.equal(value('importer_actuals_waiting{model="ctr",environment="production"}'), 1);
    assert.equal(value('importer_job_paused{job="preds"}'), 0);
    assert.equal(value('importer_queue_jobs{job="preds",state="failed"}'), 1);
    assert.equal(value('importer_redis_up'), 1);
    assert.equal(value('importer_store_up'), 1);
  });

  it('answers read-only SQL and refuses writes, several statements and file reads', async () => {
    const ok = await call('POST', '/api/sql', { sql: `SELECT prediction_id, actual_label FROM inferences WHERE actual_label IS NOT NULL ORDER BY 1`, limit: 2 });
    assert.deepEqual(ok.body, { columns: ['prediction_id', 'actual_label'], rows: [{ prediction_id: 'p0', actual_label: 'yes' }, { prediction_id: 'p1', actual_label: 'yes' }], truncated: true });
    const refused: Array<[string, RegExp]> = [
      ['DELETE FROM actuals', /only a single SELECT statement is accepted/],
      ['DROP TABLE actuals', /only a single SELECT statement is accepted/],
      ['SELECT 1; DELETE FROM actuals', /only a single SELECT statement is accepted/],
      [`SELECT * FROM read_csv('/etc/passwd')`, /table functions/],
      [`SELECT nextval('import_file_ids')`, /sequence functions/],
      // The files being read before their turn: not store data, and maybe another job's.
      ['SELECT * FROM import_reads.main.t', /import_reads holds files being read/],
      ['SELECT * FROM "IMPORT_READS".t', /import_reads holds files being read/],
      ['SELECT count(*) FROM actuals WHERE prediction_id IN (SELECT x FROM Import_Reads.main.t)', /import_reads holds files being read/],
    ];
    for (const [sql, why] of refused) {
      const res = await call('POST', '/api/sql', { sql });
      assert.equal(res.status, 400, sql);
      assert.equal(res.body.code, 'IMP_ERR_SQL_REFUSED', sql);
      assert.match(res.body.message, why, sql);
    }
    // No replacement scan of files without external access: a path is a table name like any other.
    for (const [query, name] of [[`SELECT * FROM '/etc/passwd'`, '/etc/passwd'], ['SELECT * FROM prediction', 'prediction']]) {
      assert.deepEqual(await call('POST', '/api/sql', { sql: query }), { status: 400, body: {
        code: 'IMP_ERR_SQL_UNKNOWN_TABLE',
        message: `there is no table or view "${name}"; views: actuals, inferences, predictions, shap_values; tables: actual_rows, import_files, model_predictions.ctr, rejected_rows, shap_rows`,
      } });
    }
        const [{ n }] = await sql(daemon.store)<{ n: number }>(`SELECT count(*)::INT AS n FROM actuals`);
    assert.equal(n, 5);
  });

  it('serves the CLI: jobs, jobs status, files --failed, retry and reimport, as tables and JSON', async () => {
    const configFile = { path: join(stack.tmp.path, 'cli.yaml'), body: JSON.parse(JSON.stringify(daemon.config)) };
    const cli = async (...args: string[]) => {
      const child = await spawnCli([...args, '--url', base], configFile);
      const { code } = await child.exited;
      return { code, out: child.output().replace(/^.*(NodeVersionSupportWarning|a\.co\/|trace-warnings|node >=22|upgrade to node|security updates|^$).*\n?/gm, '') };
    };
    const jobs = await cli('jobs', '--json');
    assert.equal(jobs.code, 0);
    assert.deepEqual(JSON.parse(jobs.out).map((j: any) => [j.id, j.state, j.files.failed]), [['preds', 'failing', 1], ['acts', 'active', 0]]);
    const table = await cli('jobs');
    assert.match(table.out, /^JOB +STATE +LAST POLL +PENDING +SUCCEEDED +PARTIAL +FAILED +ROWS +REJECTED\npreds +failing +\d{4}-\d\d-\d\dT[\d:]+Z ok +0 +1 +1 +1 +8 +1\nacts +active .* +5 +0\n$/);
    const status = await cli('jobs', 'status', 'acts');
    assert.match(status.out, /^job acts: active\n {2}source {3}s3:\/\/inference\/acts\/ \(auto\)\n/);
    const files = await cli('files', 'preds', '--failed');
    assert.match(files.out, /^KEY +STATUS +ATTEMPTS +ROWS +LOADED +REJECTED +ERROR\npreds\/c\.parquet +failed +1 +- +0 +- +IMP_ERR_FORMAT_UNREADABLE\npreds\/c\.parquet: cannot be read: Invalid Input Error: No magic bytes found at end of file 'preds\/c\.parquet'\n\(1 of 1\)\n$/);
    assert.deepEqual(await cli('retry', 'preds'), { code: 0, out: '1 failed file queued again: preds/c.parquet\n' });
    const again = await cli('reimport', 'preds', 'preds/nothing.parquet');
    assert.equal(again.code, 1);
    assert.equal(again.out, 'IMP_ERR_HTTP_NOT_FOUND: POST /api/jobs/preds/reimport: HTTP 404: job preds has no file preds/nothing.parquet in its ledger\n');
    const down = await spawnCli(['jobs', 'status', 'preds', '--url', 'http://127.0.0.1:9'], configFile);
    assert.equal((await down.exited).code, 1);
    assert.match(down.output(), /the daemon's API does not answer at http:\/\/127\.0\.0\.1:9 .*is `inference-importer run` running\?/);
  });

  it('logs no secret of the run: not the API token, the Redis password or the AWS keys, in any line', async () => {
    await daemon.stop();
    const lines = logged.trim().split('\n').map((l) => JSON.parse(l));
    const secrets = [TOKEN, REDIS_PASSWORD, SESSION_TOKEN, process.env.AWS_SECRET_ACCESS_KEY!];
    for (const secret of secrets) assert.ok(!logged.includes(secret), `${secret} is in the log`);
    // The log is the whole run: the config dump, imports, a failed file with its error, shutdown.
    const [dump] = lines.filter((l) => l.msg === 'effective config (secrets redacted)');
    assert.deepEqual([dump.config.redis.url, dump.config.http.token], ['[redacted]', '[redacted]']);
    assert.ok(lines.some((l) => l.msg === 'import succeeded'), 'an import is logged');
    assert.ok(lines.some((l) => l.level === 50 && l.code === 'IMP_ERR_FORMAT_UNREADABLE'), 'a failed import is logged');
    assert.equal(lines.at(-1).msg, 'stopped');
  });
});
