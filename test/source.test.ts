import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { startDaemon } from '../src/daemon.ts';
import { createLogger } from '../src/log.ts';
import { createS3Client } from '../src/source/index.ts';
import { dryRun } from '../src/worker/dry-run.ts';
import { spawnCli } from './helpers/child.ts';
import { BUCKET, counts, ledger, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';

const job = (id: string, source: string) => ({ id, source, model: { id }, schema: { predictionId: 'pid', predictionScore: 'score' } });

describe('what a source names', () => {
  let stack: Stack;
  before(async () => (stack = await startStack()));
  after(async () => stack?.stop());

  const put = async (key: string, n: number) => {
    const p = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), `SELECT '${key}#' || i AS pid, 0.5 AS score FROM range(0, ${n}) t(i)`, 'FORMAT parquet');
    await stack.s3.put(BUCKET, key, await readFile(p));
  };

  it('a source without a trailing slash is a folder or exactly one object, never a string prefix; an empty source is flagged once', async () => {
    await put('housing/predictions/a.parquet', 3);
    await put('housing/predictions-archive/old.parquet', 5);
    await put('housing/predictions.parquet', 7);
    await put('single/x.parquet', 2);
    await put('single/x.parquet-copy/y.parquet', 4);
    await put('single/x.parquet.old.parquet', 6);
    await stack.s3.put(BUCKET, 'typo/readme.txt', Buffer.from('not data'));
    const config = stack.config(
      [job('folder', `s3://${BUCKET}/housing/predictions`), job('object', `s3://${BUCKET}/single/x.parquet`), job('typo', `s3://${BUCKET}/typo/`)],
      { defaults: { pollInterval: '1s', emptyPolls: 2 } },
    );
    const lines: string[] = [];
    const sink = new Writable({ write: (c, _e, done) => (lines.push(String(c)), done()) });
    const daemon = await startDaemon(config, { log: createLogger('info', sink) });
    try {
      const base = `http://127.0.0.1:${(daemon.http!.server.address() as AddressInfo).port}`;
      const jobState = async (id: string) => (await (await fetch(`${base}/api/jobs/${id}`)).json()) as { state: string; lastPoll: { outcome: string } | null };
      await waitFor('both imported', async () => {
        const [f, o] = [await ledger(daemon, 'folder'), await ledger(daemon, 'object')];
        return f.length === 1 && o.length === 1 && f[0].status === 'succeeded' && o[0].status === 'succeeded';
      });
      await waitFor('typo flagged', async () => (await jobState('typo')).state === 'empty');
      // A few more polls of every job: still nothing from the neighbours, still one line about the empty job.
      const polls = async () => Number(/importer_poll_duration_seconds_count\{job="typo"\} (\d+)/.exec(await daemon.metrics.registry.metrics())?.[1] ?? 0);
      const seen = await polls();
      await waitFor('three more polls', async () => (await polls()) >= seen + 3);
      assert.deepEqual((await ledger(daemon, 'folder')).map((r) => [r.key, r.predictions_loaded]), [['housing/predictions/a.parquet', 3]]);
      assert.deepEqual((await ledger(daemon, 'object')).map((r) => [r.key, r.predictions_loaded]), [['single/x.parquet', 2]]);
      assert.deepEqual([(await counts(daemon, 'folder')).p, (await counts(daemon, 'object')).p], [3, 2]);
      assert.equal((await jobState('folder')).state, 'active');
      assert.deepEqual(await jobState('typo').then((j) => [j.state, j.lastPoll?.outcome]), ['empty', 'empty']);
      const text = await daemon.metrics.registry.getSingleMetricAsString('importer_job_empty');
      assert.match(text, /^importer_job_empty\{job="typo"\} 1$/m);
      assert.match(text, /^importer_job_empty\{job="folder"\} 0$/m);
      const flagged = lines.map((l) => JSON.parse(l)).filter((l) => /no importable object/.test(l.msg));
      assert.deepEqual(flagged.map((l) => [l.level, l.job, l.msg]), [
        [40, 'typo', `job typo: no importable object under folder s3://${BUCKET}/typo/ for 2 polls (1 object listed); check jobs[].source and jobs[].format`],
      ]);

      // The dry run says what each source names, and that an empty one is a finding about its content, not access.
      const s3 = createS3Client(config.s3);
      assert.equal((await dryRun(config, config.jobs[0], s3)).source, `folder s3://${BUCKET}/housing/predictions/`);
      const single = await dryRun(config, config.jobs[1], s3);
      assert.deepEqual([single.status, single.source, single.file, single.rows?.read], ['ok', `object s3://${BUCKET}/single/x.parquet`, `s3://${BUCKET}/single/x.parquet`, 2]);
      const typo = await dryRun(config, config.jobs[2], s3);
      assert.equal(typo.status, 'empty');
      assert.deepEqual(typo.checks, { access: 'ok', schema: 'skipped', records: 'skipped' });
      assert.deepEqual(typo.errors, []);
      assert.equal(typo.note, `IMP_ERR_SOURCE_EMPTY: no importable object under s3://${BUCKET}/typo/ yet (1 object listed, none a file this job imports as format auto): normal until the first file arrives, else check jobs[].source and jobs[].format`);

      // A file arriving clears the flag.
      await put('typo/first.parquet', 1);
      await waitFor('typo imported', async () => (await ledger(daemon, 'typo')).some((r) => r.status === 'succeeded'));
      await waitFor('typo active again', async () => (await jobState('typo')).state === 'active');
      assert.match(await daemon.metrics.registry.getSingleMetricAsString('importer_job_empty'), /^importer_job_empty\{job="typo"\} 0$/m);
    } finally {
      await daemon.stop();
    }
  });

  it('names the credential chain and what it tried when there are no credentials; an unknown job is exit 2 for every command', async () => {
    const configPath = join(stack.tmp.path, 'nocreds.yaml');
    const body = {
      redis: { url: stack.redis.url, prefix: 'nocreds' }, store: { path: join(stack.tmp.path, 'nocreds.duckdb') },
      s3: { endpoint: stack.s3.endpoint, forcePathStyle: true, maxAttempts: 1 }, http: { port: 1 },
      jobs: [job('a', `s3://${BUCKET}/housing/`)],
    };
    const env = { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_PROFILE: 'nobody', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials', AWS_CONFIG_FILE: '/nonexistent/config', AWS_EC2_METADATA_DISABLED: 'true' };
    const dry = await spawnCli(['dry-run', '--job', 'a', '--json'], { path: configPath, body }, env);
    assert.equal((await dry.exited).code, 1);
    const report = JSON.parse(dry.output().slice(dry.output().indexOf('{\n')));
    assert.deepEqual(report.checks.access, 'failed');
    assert.equal(report.errors[0].code, 'IMP_ERR_SOURCE_ACCESS');
    assert.equal(report.errors[0].message, `cannot list s3://${BUCKET}/housing/: no AWS credentials: the default credential chain tried environment (AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY: not set), shared files (profile "nobody" in /nonexistent/credentials and /nonexistent/config: none usable), web identity / IRSA (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN: not set), container endpoint (AWS_CONTAINER_CREDENTIALS_*: not set), instance metadata (IMDS: disabled by AWS_EC2_METADATA_DISABLED); give the importer credentials in one of these ways (on Kubernetes: IRSA)`);
    assert.doesNotMatch(dry.output(), /check s3\.endpoint and the network/);

    // store.kind left out is duckdb (config check passes), and a job that is not in the config is exit 2 whatever the command.
    const check = await spawnCli(['config', 'check', '--config', configPath]);
    assert.equal((await check.exited).code, 0, check.output());
    // Side by side: each is a process start, which is most of the time here.
    const unknown = [['jobs', 'status', 'nope'], ['files', 'nope'], ['retry', 'nope'], ['reimport', 'nope', 'k'], ['jobs', 'pause', 'nope'], ['dry-run', '--job', 'nope']];
    const [bare, ...runs] = await Promise.all([spawnCli([]), ...unknown.map((args) => spawnCli([...args, '--config', configPath]))]);
    for (const [i, c] of runs.entries()) {
      assert.equal((await c.exited).code, 2, `${unknown[i].join(' ')}: ${c.output()}`);
      assert.match(c.output(), /^IMP_ERR_CONFIG_INVALID: no job "nope" in the config; jobs: a$/m, unknown[i].join(' '));
    }
    assert.equal((await bare.exited).code, 0);
    assert.match(bare.output(), /^Usage: inference-importer \[options\] \[command\]/m);
  });
});
