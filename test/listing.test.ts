import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createS3Client, listObjects, oldPartitionRanges, partitionDay } from '../src/source/index.ts';
import { BUCKET, ledger, runDaemon, startStack, waitFor, type Stack } from './helpers/stack.ts';

/** Date-partitioned keys, the layout producers write: 3 days × 10 hours × 80 files = 2400 objects. */
const seedKeys = (prefix: string) =>
  Array.from({ length: 2400 }, (_, i) => `${prefix}dt=2026-11-0${1 + Math.floor(i / 800)}/hour=${String(Math.floor(i / 80) % 10).padStart(2, '0')}/part-${String(i % 80).padStart(3, '0')}.txt`);

async function putAll(stack: Stack, keys: string[]) {
  for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => stack.s3.put(BUCKET, k, 'x')));
}

const listRequests = (stack: Stack) => stack.s3.requestLog.filter((r) => r.method === 'GET' && r.query['list-type'] === '2');

describe('listing a large prefix in parallel key ranges', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
    await putAll(stack, seedKeys('big/'));
  });
  after(async () => stack?.stop());

  it('returns exactly the sequential listing, in order, after keys were added and removed around the split keys', async () => {
    const s3 = createS3Client({ region: 'us-east-1', endpoint: stack.s3.endpoint, forcePathStyle: true, maxAttempts: 2 });
    const first = await listObjects(s3, BUCKET, 'big/');
    assert.equal(first.length, 2400);
    const previous = first.map((o) => o.key);
    // 2400 keys are 3 pages, so 2 ranges (never more ranges than pages) split at previous[1200]: change the listing at and around it.
    await stack.s3.del(BUCKET, previous[1200]);
    await putAll(stack, [`${previous[600]}.new`, `${previous[1799]}a`, 'big/a-first.txt', 'big/zz-last.txt', `${previous[1200].slice(0, -4)}-b.txt`]);
    stack.s3.clearLog();
    const parallel = await listObjects(s3, BUCKET, 'big/', { previousKeys: previous, concurrency: 4 });
    const ranged = listRequests(stack);
    const sequential = (await stack.s3.list(BUCKET, 'big/')).map((o) => o.key);
    assert.equal(sequential.length, 2404);
    assert.deepEqual(parallel.map((o) => o.key), sequential);
    assert.equal(ranged.length, 4, 'two pages per range of ~1200 keys');
    assert.deepEqual(ranged.filter((r) => !r.query['continuation-token']).map((r) => r.query['start-after'] ?? null).sort(), [null, previous[1200]].sort());
  });

  it('lists without ranges when the previous listing is small or missing', async () => {
    const s3 = createS3Client({ region: 'us-east-1', endpoint: stack.s3.endpoint, forcePathStyle: true, maxAttempts: 2 });
    stack.s3.clearLog();
    const all = await listObjects(s3, BUCKET, 'big/', { previousKeys: ['big/a'], concurrency: 8 });
    assert.equal(all.length, 2404);
    assert.equal(listRequests(stack).filter((r) => r.query['start-after']).length, 0);
    assert.equal(listRequests(stack).length, 3);
  });

  it('the poller lists the second time in ranges and finds exactly the files added between polls', async () => {
    await putAll(stack, seedKeys('poll/'));
    const daemon = await runDaemon(stack.config([{ id: 'poll', source: `s3://${BUCKET}/poll/`, model: { id: 'poll' }, schema: { predictionId: 'pid', predictionScore: 'score' } }], {
      s3: { endpoint: stack.s3.endpoint, forcePathStyle: true, maxAttempts: 2, listConcurrency: 3 },
    }));
    try {
      stack.s3.clearLog();
      await waitFor('two polls', async () => listRequests(stack).filter((r) => r.query.prefix === 'poll/').length >= 6);
      await stack.s3.put(BUCKET, 'poll/dt=2026-11-02/hour=05/new.csv', 'pid,score\na,0.5\nb,0.25\n');
      await stack.s3.put(BUCKET, 'poll/dt=2026-11-04/hour=00/new.csv', 'pid,score\nc,0.75\n');
      const rows = await waitFor('both new files imported', async () => {
        const l = await ledger(daemon, 'poll');
        return l.length === 2 && l.every((r) => r.status === 'succeeded') && l;
      });
      assert.deepEqual(rows.map((r) => [r.key, r.predictions_loaded]), [['poll/dt=2026-11-02/hour=05/new.csv', 2], ['poll/dt=2026-11-04/hour=00/new.csv', 1]]);
      const ranged = listRequests(stack).filter((r) => r.query.prefix === 'poll/' && r.query['start-after']);
      assert.ok(ranged.length >= 2, `polls after the first list in ranges (saw ${ranged.length} ranged requests)`);
      // Settled versions are remembered between polls (no ledger read for them); a rewrite must still be seen.
      await stack.s3.put(BUCKET, 'poll/dt=2026-11-02/hour=05/new.csv', 'pid,score\na,0.5\nb,0.25\nd,1.0\n');
      const after = await waitFor('the rewrite imported', async () => {
        const l = await ledger(daemon, 'poll');
        return l.length === 3 && l.every((r) => r.status !== 'pending') && l;
      });
      assert.deepEqual(after.map((r) => [r.key, r.status, r.predictions_loaded]), [
        ['poll/dt=2026-11-02/hour=05/new.csv', 'succeeded', 2],
        ['poll/dt=2026-11-02/hour=05/new.csv', 'succeeded', 3],
        ['poll/dt=2026-11-04/hour=00/new.csv', 'succeeded', 1],
      ]);
    } finally {
      await daemon.stop();
    }
  });
});

describe('old date partitions (partitionHorizon)', () => {
  it('finds the ranges of old day partitions per parent folder, never a recent, undated or small one', () => {
    const DAY = 86_400_000;
    const cutoff = Date.UTC(2026, 0, 10);
    const keys = [
      'p/a.csv',
      ...Array.from({ length: 1200 }, (_, i) => `p/m=1/dt=2026-01-0${1 + Math.floor(i / 200)}/f${String(i).padStart(4, '0')}.csv`),
      ...Array.from({ length: 10 }, (_, i) => `p/m=1/dt=2026-01-10/f${i}.csv`),
      ...Array.from({ length: 1000 }, (_, i) => `p/m=2/dt=20260101/f${String(i).padStart(4, '0')}.csv`),
      ...Array.from({ length: 999 }, (_, i) => `p/m=3/dt=2026-01-01/f${String(i).padStart(4, '0')}.csv`),
      ...Array.from({ length: 1500 }, (_, i) => `p/m=4/dt=2026-01-0${1 + Math.floor(i / 500)}/f${String(i).padStart(4, '0')}.csv`),
      'p/m=4/dt=2026-01-05x/f.csv',
      ...Array.from({ length: 1000 }, (_, i) => `p/m=4/dt=2026-01-0${7 + Math.floor(i / 500)}/f${String(i).padStart(4, '0')}.csv`),
    ];
    assert.deepEqual(oldPartitionRanges(keys, 'p/', 'dt', cutoff).map((r) => [r.first, r.last, r.keys]), [
      ['p/m=1/dt=2026-01-01/f0000.csv', 'p/m=1/dt=2026-01-06/f1199.csv', 1200],
      ['p/m=2/dt=20260101/f0000.csv', 'p/m=2/dt=20260101/f0999.csv', 1000],
      ['p/m=4/dt=2026-01-01/f0000.csv', 'p/m=4/dt=2026-01-03/f1499.csv', 1500],
      ['p/m=4/dt=2026-01-07/f0000.csv', 'p/m=4/dt=2026-01-08/f0999.csv', 1000],
    ]);
    // A day is old once it has ended by the cutoff: 2026-01-07 has, 2026-01-08 ends 1 ms after this one (leaving 500 keys, too few).
    assert.equal(oldPartitionRanges(keys.filter((k) => k.includes('m=4/dt=2026-01-0')), 'p/', 'dt', Date.UTC(2026, 0, 8) + DAY - 1).length, 1);
    assert.deepEqual([partitionDay('2026-02-30'), partitionDay('2026-02-28T05'), partitionDay('x2026-02-28')], [undefined, Date.UTC(2026, 1, 28), undefined]);
  });

  it('polls leave old partitions out, find new keys after them and before them, and the full listing imports a late file in an old partition once', async () => {
    const stack = await startStack();
    const today = new Date().toISOString().slice(0, 10);
    let now = Date.now();
    const csv = (id: string) => `pid,score\n${id},0.5\n`;
    // Both intervals an hour: after the daemon's first poll, only the test's own polls list.
    const job = { id: 'parts', source: `s3://${BUCKET}/parts/`, model: { id: 'parts' }, schema: { predictionId: 'pid', predictionScore: 'score' }, pollInterval: '1h', activePollInterval: '1h', partitionHorizon: '2d', fullListInterval: '1h' };
    const config = stack.config([job], { s3: { endpoint: stack.s3.endpoint, forcePathStyle: true, maxAttempts: 2, listConcurrency: 3 } });
    const old = seedKeys('parts/').map((k) => k.replace('dt=2026-11-0', 'dt=2020-01-0'));
    await putAll(stack, old);
    await stack.s3.put(BUCKET, `parts/dt=${today}/a.csv`, csv('a'));
    const daemon = await runDaemon(config, { clock: () => now });
    const poll = async () => (await daemon.poller!.pollJob(config.jobs[0]))!;
    try {
      await waitFor('the first (full) poll imported a.csv', async () => (await ledger(daemon, 'parts')).some((r) => r.status === 'succeeded'));
      await stack.s3.put(BUCKET, 'parts/dt=2020-01-02/hour=05/late.csv', csv('late'));
      await stack.s3.put(BUCKET, `parts/dt=${today}/b.csv`, csv('b'));
      await stack.s3.put(BUCKET, 'parts/0-before.csv', csv('before'));
      stack.s3.clearLog();
      const partial = await poll();
      assert.deepEqual([partial.full, partial.listed, partial.discoveredNew], [false, 3, 2]);
      // One request before the 2400 old keys (stopping at the first), one after the last.
      assert.deepEqual(listRequests(stack).map((r) => r.query['start-after'] ?? null).sort(), [null, old[old.length - 1]].sort());
      const again = await poll();
      assert.deepEqual([again.full, again.discoveredNew], [false, 0]);
      now += 3_600_000;
      const fullPass = await poll();
      assert.deepEqual([fullPass.full, fullPass.listed, fullPass.discoveredNew], [true, 2404, 1]);
      assert.deepEqual([(await poll()).full, (await poll()).discoveredNew], [false, 0]);
      const rows = await waitFor('every file imported', async () => {
        const l = await ledger(daemon, 'parts');
        return l.length === 4 && l.every((r) => r.status === 'succeeded') && l;
      });
      assert.deepEqual(rows.map((r) => [r.key, r.predictions_loaded]), [
        ['parts/0-before.csv', 1], ['parts/dt=2020-01-02/hour=05/late.csv', 1], [`parts/dt=${today}/a.csv`, 1], [`parts/dt=${today}/b.csv`, 1],
      ]);
    } finally {
      await daemon.stop();
      await stack.stop();
    }
  });
});
