import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Daemon } from '../src/daemon.ts';
import { spawnCli } from './helpers/child.ts';
import { BUCKET, ledger, runDaemon, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';

describe('pause and resume', () => {
  let stack: Stack;
  let daemon: Daemon;
  before(async () => (stack = await startStack()));
  // A failed assertion must not leave a daemon running: its timers would keep the test file from ending.
  after(async () => {
    await daemon?.stop();
    await stack?.stop();
  });

  it('a paused job neither polls nor imports, stays paused across a restart, and imports once resumed', async () => {
    const config = stack.config([
      { id: 'held', source: `s3://${BUCKET}/held/`, model: { id: 'held' }, schema: { predictionId: 'pid', predictionScore: 's' } },
      { id: 'free', source: `s3://${BUCKET}/free/`, model: { id: 'free' }, schema: { predictionId: 'pid', predictionScore: 's' } },
    ]);
    const configFile = { path: join(stack.tmp.path, 'pause.yaml'), body: JSON.parse(JSON.stringify({ ...config, defaults: { pollInterval: '1s' }, worker: { ...config.worker, backoff: '200ms', lockDuration: '3s', shutdownTimeout: '10s' } })) };
    const cli = async (...args: string[]) => {
      const child = await spawnCli(args, configFile);
      const { code } = await child.exited;
      return { code, out: child.output().replace(/^.*NodeVersionSupportWarning.*\n?/gm, '') };
    };
    const parquet = async (key: string, n: number) => {
      const p = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), `SELECT 'x' || i AS pid, 0.5 AS s FROM range(${n}) t(i)`, 'FORMAT parquet');
      await stack.s3.put(BUCKET, key, await readFile(p));
    };

    assert.deepEqual(await cli('jobs', 'pause', 'held'), { code: 0, out: 'job held paused\n' });
    assert.deepEqual(await cli('jobs', 'pause', 'nope'), { code: 2, out: 'IMP_ERR_CONFIG_INVALID: no job "nope" in the config; jobs: held, free\n' });

    daemon = await runDaemon(config);
    await parquet('held/a.parquet', 5);
    await parquet('free/a.parquet', 3);
    await waitFor('free imported', async () => (await ledger(daemon, 'free')).some((r) => r.status === 'succeeded'));
    await sleep(2500);
    assert.deepEqual(await ledger(daemon, 'held'), []); // not even listed
    await daemon.stop();

    daemon = await runDaemon(config);
    await sleep(2500);
    assert.deepEqual(await ledger(daemon, 'held'), []);
    const listed = await cli('jobs', '--json');
    assert.equal(listed.code, 0);
    assert.deepEqual(JSON.parse(listed.out).map((j: { id: string; state: string }) => [j.id, j.state]), [['held', 'paused'], ['free', 'active']]);

    assert.deepEqual(await cli('jobs', 'resume', 'held'), { code: 0, out: 'job held resumed\n' });
    const rows = await waitFor('held imported', async () => {
      const l = await ledger(daemon, 'held');
      return l.length === 1 && l[0].status === 'succeeded' && l;
    });
    assert.equal(rows[0].predictions_loaded, 5);

    // A global pause holds every job, including files already queued.
    assert.deepEqual(await cli('queue', 'pause'), { code: 0, out: '2 jobs paused\n' });
    await parquet('free/b.parquet', 4);
    await sleep(2500);
    assert.equal((await ledger(daemon, 'free')).length, 1);
    assert.deepEqual(await cli('queue', 'resume'), { code: 0, out: '2 jobs resumed\n' });
    await waitFor('free/b imported', async () => (await ledger(daemon, 'free')).some((r) => r.key === 'free/b.parquet' && r.status === 'succeeded'));
    await daemon.stop();
  });
});
