import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateConfig, type JobConfig } from '../src/config/index.ts';
import type { ImportRequest } from '../src/import/index.ts';
import { jobRelation } from '../src/schema/select.ts';
import type { ListedObject, Store } from '../src/store/index.ts';
import { STORE_KINDS, writeFixture } from './helpers/stack.ts';
import { importerOf, sql } from './helpers/sql.ts';
import { openTestStore, type TestStore } from './helpers/store.ts';
import type { TmpDir } from './helpers/tmp.ts';

/**
 * One version imported by two runs at once. BullMQ delivers at least once: a run whose lock
 * expired (Redis unreachable for longer than `lockDuration`, an event loop held up) is handed out
 * again while the first one still runs, so the worker can hold two requests for one version. Seen
 * in the Redis-cut scenario as 13 `succeeded` for 12 files: both requests waited together, were
 * imported in one transaction and both claimed the version. Exactly one may import it; the other
 * ends `skipped`, and the rows are there once.
 */

const config = (store: Record<string, unknown>) => validateConfig({
  store,
  jobs: [{ id: 'twice', source: 's3://bkt/twice/', model: { id: 'twice', version: 'v1' }, schema: { predictionId: 'prediction_id', predictionScore: 'proba' } }],
});

for (const kind of STORE_KINDS) {
  describe(`one version, two runs at once: ${kind}`, () => {
    let opened: TestStore<ReturnType<typeof config>>;
    let tmp: TmpDir;
    let store: Store;
    let job: JobConfig;
    before(async () => {
      opened = await openTestStore(kind, { prefix: 'importer-rerun-', config, settings: { memoryLimit: '256MB', threads: 1 } });
      ({ tmp, store } = opened);
      job = opened.config.jobs[0];
    });
    after(() => opened?.close());

    for (const format of ['csv', 'parquet'] as const) {
      it(`imports a ${format} file once: one run succeeds, the other is skipped`, async () => {
        const key = `twice/a.${format}`;
        const obj: ListedObject = { bucket: 'bkt', key, etag: 'e1', size: 100, lastModified: new Date('2026-11-01T00:00:00Z') };
        const [version] = await store.recordDiscovered(job.id, [obj]);
        const path = join(tmp.path, `a.${format}`);
        if (format === 'csv') await writeFile(path, 'prediction_id,proba\nc1,0.1\nc2,0.2\nc3,0.3\n');
        else await writeFixture(path, `SELECT 'p' || i AS prediction_id, i / 10 AS proba FROM range(1, 4) t(i)`, 'FORMAT parquet');
        const request = async (): Promise<ImportRequest> => ({ job, version, file: { path, key }, source: await jobRelation(job, { path, key }), importTime: new Date() });
        const [r1, r2] = await Promise.all([importerOf(store).importFile(await request()), importerOf(store).importFile(await request())]);
        assert.deepEqual([r1.status, r2.status].sort(), ['skipped', 'succeeded']);
        assert.deepEqual([r1.predictionsLoaded, r2.predictionsLoaded].sort(), [0, 3]);
        const ledger = await sql(store)<{ status: string; predictions_loaded: number }>(`SELECT status, predictions_loaded FROM import_files WHERE key = $1`, [key]);
        assert.deepEqual(ledger.map((r) => [r.status, Number(r.predictions_loaded)]), [['succeeded', 3]]);
        const [{ rows, ids }] = await sql(store)<{ rows: number; ids: number }>(`SELECT count(*)::INT AS rows, count(DISTINCT prediction_id)::INT AS ids FROM predictions WHERE model_id = 'twice' AND prediction_id LIKE $1`, [`${format[0]}%`]);
        assert.deepEqual({ rows, ids }, { rows: 3, ids: 3 });
      });
    }
  });
}
