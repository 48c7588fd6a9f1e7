import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startStack, STORE_KINDS, type Stack } from './helpers/stack.ts';
import { olderMultipart, redisCut, rewritesAndDeletes, s3Faults, sameSecond, sigtermDuringImports } from './reliability/scenarios.ts';
import { sigkillRun } from './reliability/sigkill.ts';

/**
 * The short version of the fault suite (`npm run reliability` runs the long one: 20 seeds × 50
 * files per store, and writes the report table into docs/reliability.md): one seeded run per
 * store, 6 files, the daemon SIGKILLed once at random points and restarted; every row exactly
 * once, every ledger row final, SIGTERM exits 0. A failure prints its seed: `RELIABILITY_SEED`.
 * Then the other scenarios of issue 15 (test/reliability/scenarios.ts), each on every store.
 */
const seed = Number(process.env.RELIABILITY_SEED ?? 15);

for (const kind of STORE_KINDS) {
  describe(`fault suite: ${kind}`, () => {
    let stack: Stack;
    before(async () => (stack = await startStack({ store: kind })));
    after(async () => stack?.stop());

    it(`SIGKILL at random points, seed ${seed}: loses and duplicates nothing`, async () => {
      const r = await sigkillRun(stack, kind, seed, 6, 1);
      assert.deepEqual({ lost: r.lost, duplicated: r.duplicated, rows: r.rows, ledger: r.ledger, exit: r.exitCode }, { lost: 0, duplicated: 0, rows: 12_000, ledger: { succeeded: 6 }, exit: 0 }, `seed ${seed}, kill delays ${r.delays.join(', ')} ms${r.output ? `; the process's last output:\n${r.output}` : ''}`);
    });

    it('a file rewritten three times inside one poll interval: the last version wins; a file deleted before its download: vanished, never retried', () => rewritesAndDeletes(stack));
    // Listing, downloads and the queue do not depend on the store: these run on the first store only (suite time).
    if (kind === STORE_KINDS[0]) {
      it('S3 connection resets, truncated bodies and a listing failing mid-way: every file once, nothing recorded from an incomplete listing, retries in the metrics', () => s3Faults(stack));
      it('500 files of one LastModified second over 10 LIST pages: each recorded and queued once, then imported once', () => sameSecond(stack));
      it('a multipart upload whose LastModified is older than files already imported: imported once', () => olderMultipart(stack));
      it('Redis unreachable (data kept) during imports, then back: every file once', () => redisCut(stack));
    }
    it('SIGTERM during imports: exit 0 within the deadline, the held import abandoned, every file once after restart', () => sigtermDuringImports(stack, kind));
  });
}
