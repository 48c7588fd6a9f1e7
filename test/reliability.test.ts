import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startStack, STORE_KINDS, type Stack } from './helpers/stack.ts';
import { sigkillRun } from './reliability/sigkill.ts';

/**
 * The short version of the fault suite (`npm run reliability` runs the long one: 20 seeds × 50
 * files per store, and writes the report table into docs/reliability.md): one seeded run per
 * store, 6 files, the daemon SIGKILLed once at random points and restarted; every row exactly
 * once, every ledger row final, SIGTERM exits 0. A failure prints its seed: `RELIABILITY_SEED`.
 */
const seed = Number(process.env.RELIABILITY_SEED ?? 15);

for (const kind of STORE_KINDS) {
  describe(`SIGKILL at random points: ${kind}`, () => {
    let stack: Stack;
    before(async () => (stack = await startStack({ store: kind })));
    after(async () => stack?.stop());

    it(`seed ${seed}: loses and duplicates nothing`, async () => {
      const r = await sigkillRun(stack, kind, seed, 6, 1);
      assert.deepEqual({ lost: r.lost, duplicated: r.duplicated, rows: r.rows, ledger: r.ledger, exit: r.exitCode }, { lost: 0, duplicated: 0, rows: 12_000, ledger: { succeeded: 6 }, exit: 0 }, `seed ${seed}, kill delays ${r.delays.join(', ')} ms${r.output ? `; the process's last output:\n${r.output}` : ''}`);
    });
  });
}
