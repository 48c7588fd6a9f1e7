import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { validateConfig, type JobConfig } from '../src/config/index.ts';
import type { ImportResult } from '../src/import/index.ts';
import { jobRelation } from '../src/schema/select.ts';
import type { ListedObject, Store } from '../src/store/index.ts';
import { STORE_KINDS } from './helpers/stack.ts';
import { importerOf, sql } from './helpers/sql.ts';
import { openTestStore, type TestStore } from './helpers/store.ts';
import type { TmpDir } from './helpers/tmp.ts';

/**
 * A slow file must not hold the store's write turn (issue 15, item 11). The slow file is a named
 * pipe: DuckDB's read of it lasts until the test writes into it, so "still being read" is a state
 * the test holds, not a race it hopes to win. While job A's file is being read, job B's good file
 * is imported; then A's file turns out hostile and fails alone with its error.
 */

const config = (store: Record<string, unknown>) => validateConfig({
  store,
  jobs: [
    { id: 'slow', source: 's3://bkt/slow/', model: { id: 'slow', version: 'v1' }, schema: { predictionId: 'prediction_id', predictionScore: 'proba' } },
    { id: 'good', source: 's3://bkt/good/', model: { id: 'good', version: 'v1' }, schema: { predictionId: 'prediction_id', predictionScore: 'proba' } },
  ],
});
const obj = (key: string): ListedObject => ({ bucket: 'bkt', key, etag: 'e1', size: 100, lastModified: new Date('2026-11-01T00:00:00Z') });
/** Long enough for any healthy import of three rows; the old code never finished B while A was read. */
const DEADLINE_MS = 60_000;

for (const kind of STORE_KINDS) {
  describe(`a slow file beside a good one: ${kind}`, () => {
    let opened: TestStore<ReturnType<typeof config>>;
    let tmp: TmpDir;
    let store: Store;
    let jobs: JobConfig[];
    before(async () => {
      // Sandboxed as the daemon's store is: the DuckDB store's reader connections must keep to the downloads too.
      opened = await openTestStore(kind, {
        prefix: 'importer-slow-', config, settings: { memoryLimit: '256MB', threads: 1 },
        readable: (dir) => (kind === 'postgres' ? dir : join(dir, 'downloads')),
      });
      ({ tmp, store } = opened);
      jobs = [...opened.config.jobs];
    });
    after(() => opened?.close());

    let n = 0;
    /**
     * Imports a good file of `goodJob` while a file of the job `slow` is being read (held open as a
     * named pipe), then lets the slow file turn out hostile: it must fail alone with its error.
     */
    async function goodWhileSlowIsRead(goodJob: JobConfig) {
      const dir = join(kind === 'postgres' ? tmp.path : join(tmp.path, 'downloads'), String(++n));
      await promisify(execFile)('mkdir', ['-p', dir]);
      const request = async (job: JobConfig, key: string, path: string) => {
        const [version] = await store.recordDiscovered(job.id, [obj(key)]);
        const file = { path, key };
        return { job, version, file, source: await jobRelation(job, file), importTime: new Date() };
      };
      const slowPath = join(dir, 'slow.json');
      await promisify(execFile)('mkfifo', [slowPath]);
      const goodPath = join(dir, 'good.csv');
      await writeFile(goodPath, `prediction_id,proba\n${n}g1,0.1\n${n}g2,0.2\n${n}g3,0.3\n`);
      const slowKey = `slow/${n}.json`;
      const goodKey = `${goodJob.id}/${n}.csv`;

      const a = await request(jobs[0], slowKey, slowPath);
      let aSettled = false;
      const aImport = importerOf(store).importFile(a);
      aImport.then(() => (aSettled = true), () => (aSettled = true));
      const b = await request(goodJob, goodKey, goodPath);
      let deadline: NodeJS.Timeout | undefined;
      let aReading = false;
      try {
        const bResult = await Promise.race([
          importerOf(store).importFile(b),
          new Promise<'deadline'>((resolve) => (deadline = setTimeout(() => resolve('deadline'), DEADLINE_MS))),
        ]);
        assert.notEqual(bResult, 'deadline', 'the good file was not imported while the slow one was being read');
        assert.deepEqual([(bResult as ImportResult).status, (bResult as ImportResult).predictionsLoaded, aSettled], ['succeeded', 3, false]);
        const ledger = await sql(store)<{ key: string; status: string }>(`SELECT key, status FROM import_files WHERE key IN ($1, $2)`, [goodKey, slowKey]);
        assert.deepEqual(Object.fromEntries(ledger.map((r) => [r.key, r.status])), { [goodKey]: 'succeeded', [slowKey]: 'pending' });
        const [{ c }] = await sql(store)<{ c: number }>(`SELECT count(*)::INT AS c FROM predictions WHERE model_id = $1 AND prediction_id LIKE $2`, [goodJob.model.id, `${n}g%`]);
        assert.equal(c, 3);
      } finally {
        clearTimeout(deadline);
        // A pipe opens for writing without waiting only while a reader holds it open: proof A is mid-read.
        let fd: number;
        try {
          fd = openSync(slowPath, constants.O_WRONLY | constants.O_NONBLOCK);
          aReading = true;
        } catch {
          fd = openSync(slowPath, 'w');
        }
        // The slow file turns out hostile: an array with trailing garbage.
        writeSync(fd, '[{"prediction_id": "s1", "proba": 0.5}] garbage');
        closeSync(fd);
      }
      assert.equal(aReading, true, 'the slow file was being read when the good one was imported');
      await assert.rejects(aImport, (err: Error & { code?: string }) => {
        assert.equal(err.code, 'IMP_ERR_FORMAT_UNREADABLE');
        assert.equal(err.message.startsWith(`${slowKey}: cannot be read: `), true, err.message);
        return true;
      });
      const [{ s }] = await sql(store)<{ s: number }>(`SELECT count(*)::INT AS s FROM predictions WHERE prediction_id = 's1'`);
      assert.equal(s, 0, 'the slow file loaded nothing');
    }

    it('imports a good file of another job while the slow one is read, then fails the slow one alone', async () => {
      await goodWhileSlowIsRead(jobs[1]);
    });

    // Files of one job wait for each other's reads to import together, but not for long.
    it('imports a good file of the same job while the slow one is read', async () => {
      await goodWhileSlowIsRead(jobs[0]);
    });
  });
}
