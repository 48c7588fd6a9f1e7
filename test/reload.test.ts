import assert from 'node:assert/strict';
import { mkdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import type { Config } from '../src/config/index.ts';
import { startDaemon, type Daemon } from '../src/daemon.ts';
import { createLogger } from '../src/log.ts';
import { spawnCli } from './helpers/child.ts';
import { BUCKET, counts, ledger, startStack, STORE_KINDS, waitFor, writeFixture, type Stack } from './helpers/stack.ts';

const TOKEN = 'reload-token-0123456789';

/** The config as YAML would hold it (durations as text, so the file round-trips through the schema). */
function asYaml(config: Readonly<Config>, jobs: unknown[], patch: Record<string, unknown> = {}) {
  return stringify(JSON.parse(JSON.stringify({
    ...config,
    defaults: { pollInterval: '1s' },
    worker: { ...config.worker, backoff: '200ms', lockDuration: '3s', shutdownTimeout: '10s' },
    jobs,
    ...patch,
  })));
}

const job = (id: string, prefix = id, model = id) => ({ id, source: `s3://${BUCKET}/${prefix}/`, format: 'parquet', model: { id: model, version: 'v1' }, schema: { predictionId: 'pid', predictionScore: 's' } });

describe('live config reload', () => {
  let stack: Stack;
  before(async () => (stack = await startStack()));
  after(async () => stack?.stop());

  const parquet = async (key: string, n: number, prefix = 'x') => {
    const p = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), `SELECT '${prefix}' || i AS pid, 0.5 AS s FROM range(${n}) t(i)`, 'FORMAT parquet');
    await stack.s3.put(BUCKET, key, await readFile(p));
  };

  it('adds, edits and removes jobs from a rewritten file and a ConfigMap symlink swap; keeps the running config when the new one is invalid; purges exactly one job', async () => {
    const base = stack.config([job('a')], { http: { port: 0, host: '127.0.0.1', token: TOKEN } });
    // The layout a Kubernetes ConfigMap volume has: the file is a symlink through `..data` to a timestamped folder.
    const dir = join(stack.tmp.path, 'configmap');
    await mkdir(join(dir, '..v1'), { recursive: true });
    await writeFile(join(dir, '..v1', 'importer.yaml'), asYaml(base, [job('a')]));
    await symlink('..v1', join(dir, '..data'));
    await symlink('..data/importer.yaml', join(dir, 'importer.yaml'));
    let version = 1;
    const swap = async (text: string) => {
      const v = `..v${++version}`;
      await mkdir(join(dir, v));
      await writeFile(join(dir, v, 'importer.yaml'), text);
      await symlink(v, join(dir, '..data_tmp'));
      await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    };
    const lines: string[] = [];
    const log = createLogger('info', new Writable({ write(chunk, _enc, done) { lines.push(...String(chunk).trim().split('\n')); done(); } }));
    const daemon: Daemon = await startDaemon(base, { log, configPath: join(dir, 'importer.yaml') });
    const url = `http://127.0.0.1:${(daemon.http!.server.address() as AddressInfo).port}`;
    const call = async (method: string, path: string) => {
      const res = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
      return { status: res.status, body: (await res.json()) as any };
    };
    try {
      await parquet('a/1.parquet', 5, 'a');
      await parquet('b/1.parquet', 3, 'b');
      await waitFor('a/1 imported', async () => (await ledger(daemon, 'a')).some((r) => r.status === 'succeeded'));

      // Added by a symlink swap (the file's own inode never changes): b starts polling and importing.
      await swap(asYaml(base, [job('a'), job('b')]));
      await waitFor('b/1 imported', async () => (await ledger(daemon, 'b')).some((r) => r.status === 'succeeded'));
      assert.deepEqual((await call('GET', '/api/jobs')).body.jobs.map((j: { id: string }) => j.id), ['a', 'b']);
      assert.equal((await call('GET', '/api/config')).body.lastReload.trigger, 'watch');
      assert.deepEqual((await call('GET', '/api/config')).body.lastReload.added, ['b']);
      // Error series exist at zero from the start, for a started and an added job, so rate() and alerts work before the first error.
      const series = await (await fetch(`${url}/metrics`)).text();
      for (const j of ['a', 'b']) {
        assert.match(series, new RegExp(`^importer_poll_errors_total\\{job="${j}"\\} 0$`, 'm'));
        assert.match(series, new RegExp(`^importer_rows_rejected_total\\{job="${j}",reason="IMP_ERR_ROW_DUPLICATE_ID"\\} 0$`, 'm'));
      }

      // Edited: b reads another prefix from its next poll.
      await parquet('b2/1.parquet', 4, 'c');
      await swap(asYaml(base, [job('a'), job('b', 'b2')]));
      await waitFor('b2/1 imported', async () => (await ledger(daemon, 'b')).some((r) => r.key === 'b2/1.parquet' && r.status === 'succeeded'));
      assert.deepEqual((await call('GET', '/api/config')).body.lastReload.changed, ['b']);

      // Invalid: the running config stays, the API and the metric say so, and the errors are logged once.
      const broken = asYaml(base, [job('a'), { ...job('b', 'b2'), schema: { predictionScore: 's' } }], { http: { port: 'eighty' } });
      await swap(broken);
      const failed = await waitFor('reload failed', async () => {
        const c = (await call('GET', '/api/config')).body;
        return c.lastReloadFailed && c;
      });
      assert.deepEqual(failed.lastReload.errors, ['http.port: Invalid input: expected number, received string', 'jobs[1].schema.predictionId: required']);
      assert.deepEqual(failed.jobs, ['a', 'b']);
      const reloadApi = await call('POST', '/api/config/reload');
      assert.equal(reloadApi.status, 422);
      assert.equal(reloadApi.body.code, 'IMP_ERR_CONFIG_INVALID');
      const metrics = await (await fetch(`${url}/metrics`)).text();
      assert.match(metrics, /^importer_config_reload_failed 1$/m);
      assert.match(metrics, /^importer_config_reloads_total\{outcome="failed"\} 2$/m);
      assert.equal(lines.filter((l) => l.includes('config reload failed')).length, 1);
      await parquet('b2/2.parquet', 2, 'd');
      await waitFor('b2/2 imported under the running config', async () => (await ledger(daemon, 'b')).some((r) => r.key === 'b2/2.parquet' && r.status === 'succeeded'));

      // Removed, by rewriting the file in place (through the symlink), with a setting that needs a restart.
      await writeFile(join(dir, 'importer.yaml'), asYaml(base, [job('b', 'b2')], { http: { port: 0, host: '127.0.0.1', token: 'another-token-0123456789' } }));
      const removed = await waitFor('a removed', async () => {
        const c = (await call('GET', '/api/config')).body;
        return c.jobs.length === 1 && c.lastReload.outcome === 'applied' && c;
      });
      assert.deepEqual(removed.lastReload.removed, ['a']);
      assert.deepEqual(removed.needsRestart, ['http.token']);
      assert.equal(removed.lastReloadFailed, false);
      assert.match(await (await fetch(`${url}/metrics`)).text(), /^importer_config_reload_failed 0$/m);
      assert.deepEqual(await daemon.queues.get('a').getJobCounts('waiting', 'completed', 'failed'), { waiting: 0, completed: 0, failed: 0 });
      // A file added under a removed job's prefix before one under a live job's is never listed.
      await parquet('a/2.parquet', 7, 'e');
      await parquet('b2/3.parquet', 1, 'f');
      await waitFor('b2/3 imported', async () => (await ledger(daemon, 'b')).some((r) => r.key === 'b2/3.parquet' && r.status === 'succeeded'));
      await sleep(1500);
      assert.deepEqual((await ledger(daemon, 'a')).map((r) => r.key), ['a/1.parquet']);
      assert.equal((await call('GET', '/api/jobs/a')).status, 404);
      // Its rows stay until purged.
      assert.deepEqual(await counts(daemon, 'a'), { p: 5, a: 0, j: 0 });

      assert.equal((await call('DELETE', '/api/jobs/b?purge=true')).status, 409);
      assert.equal((await call('DELETE', '/api/jobs/a')).body.code, 'IMP_ERR_HTTP_BAD_REQUEST');
      assert.deepEqual((await call('DELETE', '/api/jobs/a?purge=true')).body, { job: 'a', purged: { files: 1, predictions: 5, actuals: 0 } });
      assert.deepEqual(await counts(daemon, 'a'), { p: 0, a: 0, j: 0 });
      assert.deepEqual(await ledger(daemon, 'a'), []);
      assert.deepEqual(await counts(daemon, 'b'), { p: 3 + 4 + 2 + 1, a: 0, j: 0 });
      assert.equal((await call('DELETE', '/api/jobs/a?purge=true')).status, 404);
    } finally {
      await daemon.stop();
    }
  });

  for (const kind of STORE_KINDS) {
    it(`purging a job makes another job's row for the same prediction current again (${kind})`, async () => {
      const own = await startStack({ store: kind });
      const config = own.config([job('p1', 'p1', 'shared'), job('p2', 'p2', 'shared')]);
      const path = join(own.tmp.path, 'shared.yaml');
      await writeFile(path, asYaml(config, [job('p1', 'p1', 'shared'), job('p2', 'p2', 'shared')]));
      const daemon = await startDaemon(config, { log: createLogger('silent'), configPath: path, watchConfig: false });
      const put = async (key: string, n: number) => {
        const p = await writeFixture(join(own.tmp.path, key.replaceAll('/', '_')), `SELECT 'same' || i AS pid, 0.5 AS s FROM range(${n}) t(i)`, 'FORMAT parquet');
        await own.s3.put(BUCKET, key, await readFile(p));
      };
      try {
        await put('p1/1.parquet', 4);
        await waitFor('p1 imported', async () => (await ledger(daemon, 'p1')).some((r) => r.status === 'succeeded'));
        await put('p2/1.parquet', 2);
        await waitFor('p2 imported', async () => (await ledger(daemon, 'p2')).some((r) => r.status === 'succeeded'));
        await writeFile(path, asYaml(config, [job('p1', 'p1', 'shared')]));
        assert.deepEqual((await daemon.reload('test')).removed, ['p2']);
        assert.deepEqual(await daemon.store.purgeJob('p2'), { files: 1, predictions: 2, actuals: 0 });
        // same0 and same1 were p2's rows (newer); p1's rows for them are current again: still 4 predictions, all p1's.
        assert.deepEqual(await counts(daemon, 'shared'), { p: 4, a: 0, j: 0 });
        assert.deepEqual(await ledger(daemon, 'p2'), []);
        assert.equal((await ledger(daemon, 'p1')).length, 1);
      } finally {
        await daemon.stop();
        await own.stop();
      }
    });
  }

  it('SIGHUP reloads the config instead of killing the process', async () => {
    const config = stack.config([job('h')]);
    const path = join(stack.tmp.path, 'hup.yaml');
    const body = JSON.parse(JSON.stringify({ ...config, log: { level: 'info' }, defaults: { pollInterval: '1s' }, worker: { ...config.worker, backoff: '200ms', lockDuration: '3s', shutdownTimeout: '10s' }, jobs: [job('h')] }));
    const child = await spawnCli(['run'], { path, body });
    try {
      await waitFor('started', async () => child.output().includes('inference-importer started'));
      await writeFile(path, stringify({ ...body, jobs: [job('h'), job('h2')] }));
      child.proc.kill('SIGHUP');
      await waitFor('reloaded', async () => child.output().includes('"msg":"config reloaded"'));
      const reloaded = child.output().split('\n').find((l) => l.includes('"msg":"config reloaded"'))!;
      // The watch may see the write first; either way the process is alive and the job is added once.
      assert.deepEqual(JSON.parse(reloaded).added, ['h2']);
      child.proc.kill('SIGHUP');
      await waitFor('second SIGHUP handled', async () => child.output().split('\n').filter((l) => l.includes('reloading the config')).length === 2);
      assert.equal(child.proc.exitCode, null);
      child.proc.kill('SIGTERM');
      assert.deepEqual(await child.exited, { code: 0, signal: null });
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    }
  });
});
