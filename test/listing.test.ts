import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createS3Client, listObjects } from '../src/source/index.ts';
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
