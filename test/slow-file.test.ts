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
import { DuckDbStore, PostgresStore, type ListedObject, type Store } from '../src/store/index.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';
import { STORE_KINDS } from './helpers/stack.ts';
import { importerOf, sql } from './helpers/sql.ts';
import { tmpDir, type TmpDir } from './helpers/tmp.ts';

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
    let tmp: TmpDir;
    let db: TestDatabase | undefined;
    let store: Store;
    let jobs: JobConfig[];
    before(async () => {
      tmp = await tmpDir('importer-slow-');
      if (kind === 'postgres') {
        db = await createTestDatabase();
        const c = config({ kind: 'postgres', url: db.url, memoryLimit: '256MB', threads: 1 });
        jobs = [...c.jobs];
        store = new PostgresStore({ ...c.store, readableDirectory: tmp.path } as never);
      } else {
        jobs = [...config({ kind: 'duckdb', path: join(tmp.path, 's.duckdb') }).jobs];
        // Sandboxed as the daemon's store is: the reader connections must keep to the downloads too.
        store = new DuckDbStore({ path: join(tmp.path, 's.duckdb'), memoryLimit: '256MB', threads: 1, readableDirectory: join(tmp.path, 'downloads') });
      }
      await store.init();
    });
    after(async () => {
      await store?.close();
      await db?.drop();
      await tmp?.cleanup();
    });

    it('imports a good file of another job while the slow one is read, then fails the slow one alone', async () => {
      const dir = kind === 'postgres' ? tmp.path : join(tmp.path, 'downloads');
      await promisify(execFile)('mkdir', ['-p', dir]);
      const request = async (job: JobConfig, key: string, path: string) => {
        const [version] = await store.recordDiscovered(job.id, [obj(key)]);
        const file = { path, key };
        return { job, version, file, source: await jobRelation(job, file), importTime: new Date() };
      };
      const slowPath = join(dir, 'slow.json');
      await promisify(execFile)('mkfifo', [slowPath]);
      const goodPath = join(dir, 'good.csv');
      await writeFile(goodPath, 'prediction_id,proba\ng1,0.1\ng2,0.2\ng3,0.3\n');

      const a = await request(jobs[0], 'slow/a.json', slowPath);
      let aSettled = false;
      const aImport = importerOf(store).importFile(a);
      aImport.then(() => (aSettled = true), () => (aSettled = true));
      const b = await request(jobs[1], 'good/b.csv', goodPath);
      let deadline: NodeJS.Timeout | undefined;
      let aReading = false;
      try {
        const bResult = await Promise.race([
          importerOf(store).importFile(b),
          new Promise<'deadline'>((resolve) => (deadline = setTimeout(() => resolve('deadline'), DEADLINE_MS))),
        ]);
        assert.notEqual(bResult, 'deadline', 'the good file was not imported while the slow one was being read');
        assert.deepEqual([(bResult as ImportResult).status, (bResult as ImportResult).predictionsLoaded, aSettled], ['succeeded', 3, false]);
        const ledger = await sql(store)<{ key: string; status: string }>(`SELECT key, status FROM import_files ORDER BY key`);
        assert.deepEqual(ledger, [{ key: 'good/b.csv', status: 'succeeded' }, { key: 'slow/a.json', status: 'pending' }]);
        const [{ n }] = await sql(store)<{ n: number }>(`SELECT count(*)::INT AS n FROM predictions WHERE model_id = 'good'`);
        assert.equal(n, 3);
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
        assert.match(err.message, /^slow\/a\.json: cannot be read: /);
        return true;
      });
      const [{ n }] = await sql(store)<{ n: number }>(`SELECT count(*)::INT AS n FROM predictions`);
      assert.equal(n, 3, 'the slow file loaded nothing');
    });
  });
}
