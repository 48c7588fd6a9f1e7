import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateConfig } from '../src/config/index.ts';
import { readerFor } from '../src/formats/index.ts';
import { DuckDbStore } from '../src/store/index.ts';
import type { ListedObject } from '../src/store/index.ts';
import { tmpDir, type TmpDir } from './helpers/tmp.ts';
import { writeFixture } from './helpers/stack.ts';

const job = validateConfig({
  jobs: [{ id: 'j', source: 's3://bkt/p/', model: { id: 'm', version: 'v1' }, schema: { predictionId: 'id', predictionScore: 'score' } }],
}).jobs[0];
const obj = (key: string, etag: string, size = 100): ListedObject => ({ bucket: 'b', key, etag, size, lastModified: new Date('2026-11-01T00:00:00Z') });

describe('DuckDB store', () => {
  let tmp: TmpDir;
  let store: DuckDbStore;
  before(async () => {
    tmp = await tmpDir('importer-store-');
    store = new DuckDbStore({ path: join(tmp.path, 's.duckdb') });
    await store.init();
  });
  after(async () => {
    await store?.close();
    await tmp?.cleanup();
  });

  const load = async (key: string, etag: string, sql: string) => {
    const [version] = await store.recordDiscovered('j', [obj(key, etag)]);
    const path = await writeFixture(join(tmp.path, `${etag}.parquet`), sql, 'FORMAT parquet');
    const file = { path, key };
    return store.importFile({ job, version, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
  };
  const scores = async () => (await store.query<{ id: string; s: number }>(`SELECT prediction_id AS id, prediction_score AS s FROM model_predictions.m ORDER BY 1`));

  it('re-records a known version whose listed size changed, without a second ledger row', async () => {
    await store.recordDiscovered('j', [obj('a.parquet', 'e1', 10)]);
    await store.recordDiscovered('j', [obj('a.parquet', 'e1', 20)]);
    const latest = await store.latestVersions('j');
    assert.equal(latest.get('a.parquet')!.size, 20);
    const [{ n }] = await store.query<{ n: number }>(`SELECT count(*)::INT AS n FROM import_files WHERE key = 'a.parquet'`);
    assert.equal(n, 1);
  });

  it('imports content that went back to an older ETag again, replacing the newer rows', async () => {
    assert.equal((await load('r.parquet', 'A', `SELECT 'x' || i AS id, 0.1 AS score FROM range(3) t(i)`)).status, 'succeeded');
    assert.equal((await load('r.parquet', 'B', `SELECT 'x' || i AS id, 0.2 AS score FROM range(2) t(i)`)).status, 'succeeded');
    assert.deepEqual(await scores(), [{ id: 'x0', s: 0.2 }, { id: 'x1', s: 0.2 }]);
    const result = await load('r.parquet', 'A', `SELECT 'x' || i AS id, 0.1 AS score FROM range(3) t(i)`);
    assert.equal(result.predictionsLoaded, 3);
    assert.deepEqual(await scores(), [{ id: 'x0', s: 0.1 }, { id: 'x1', s: 0.1 }, { id: 'x2', s: 0.1 }]);
    const versions = await store.query(`SELECT etag, status FROM import_files WHERE key = 'r.parquet' ORDER BY file_id`);
    assert.deepEqual(versions, [{ etag: 'A', status: 'succeeded' }, { etag: 'B', status: 'succeeded' }]);
  });

  it('skips a version already committed and supersedes one that is no longer current', async () => {
    const [v1] = await store.recordDiscovered('j', [obj('s.parquet', 'S1')]);
    const path = await writeFixture(join(tmp.path, 's1.parquet'), `SELECT 'y' AS id, 0.5 AS score`, 'FORMAT parquet');
    const file = { path, key: 's.parquet' };
    await store.recordDiscovered('j', [obj('s.parquet', 'S2')]);
    const superseded = await store.importFile({ job, version: v1, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
    assert.equal(superseded.status, 'superseded');
    const again = await store.importFile({ job, version: v1, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
    assert.equal(again.status, 'skipped');
    const [{ n }] = await store.query<{ n: number }>(`SELECT count(*)::INT AS n FROM model_predictions.m WHERE prediction_id = 'y'`);
    assert.equal(n, 0);
  });

  it('widens the feature struct for new features and BIGINT → DOUBLE, and refuses other type changes', async () => {
    const fjob = validateConfig({
      jobs: [{ id: 'f', source: 's3://bkt/f/', model: { id: 'feat' }, schema: { predictionId: 'id', predictionLabel: 'l' } }],
    }).jobs[0];
    const loadF = async (key: string, sql: string) => {
      const [version] = await store.recordDiscovered('f', [obj(key, key)]);
      const path = await writeFixture(join(tmp.path, key), sql, 'FORMAT parquet');
      const file = { path, key };
      return store.importFile({ job: fjob, version, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
    };
    await loadF('f1.parquet', `SELECT 'a' AS id, 'yes' AS l, 3::INTEGER AS age`);
    await loadF('f2.parquet', `SELECT 'b' AS id, 'no' AS l, 4.5::DOUBLE AS age, 'Oslo' AS city`);
    const [type] = await store.query<{ t: string }>(`SELECT column_type AS t FROM (DESCRIBE model_predictions.feat) WHERE column_name = 'features'`);
    assert.equal(type.t, 'STRUCT(age DOUBLE, city VARCHAR)');
    assert.deepEqual(await store.query(`SELECT prediction_id AS id, features.age AS age, features.city AS city FROM model_predictions.feat ORDER BY 1`), [
      { id: 'a', age: 3, city: null },
      { id: 'b', age: 4.5, city: 'Oslo' },
    ]);
    await assert.rejects(loadF('f3.parquet', `SELECT 'c' AS id, 'no' AS l, true AS city`), {
      code: 'IMP_ERR_SCHEMA_FEATURE_CONFLICT',
      message: 'feature "city" (column "city") is BOOLEAN in this file but VARCHAR in model "feat"; cast it in the producer or rename it',
    });
    const [json] = await store.query<{ f: string }>(`SELECT features::VARCHAR AS f FROM predictions WHERE model_id = 'feat' AND prediction_id = 'b'`);
    assert.deepEqual(JSON.parse(json.f), { age: 4.5, city: 'Oslo' });
  });

  it('keeps an overridden row underneath: it comes back when the overriding file drops the ID, and a late retry of the older file does not win', async () => {
    const ajob = validateConfig({ jobs: [{ id: 'acts', source: 's3://bkt/a/', model: { id: 'm' }, schema: { predictionId: 'id', actualLabel: 'y' } }] }).jobs[0];
    const loadA = async (key: string, etag: string, sql: string) => {
      const [version] = await store.recordDiscovered('acts', [obj(key, etag)]);
      const path = await writeFixture(join(tmp.path, `a-${etag}.parquet`), sql, 'FORMAT parquet');
      const file = { path, key };
      return store.importFile({ job: ajob, version, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
    };
    const actuals = async () => store.query(`SELECT prediction_id AS id, actual_label AS y FROM actuals WHERE model_id = 'm' ORDER BY 1`);
    await loadA('act1.parquet', 'A1', `SELECT '1' AS id, 'cat' AS y UNION ALL SELECT '2', 'dog'`);
    await loadA('act2.parquet', 'B1', `SELECT '1' AS id, 'eel' AS y`);
    assert.deepEqual(await actuals(), [{ id: '1', y: 'eel' }, { id: '2', y: 'dog' }]);
    await loadA('act2.parquet', 'B2', `SELECT '3' AS id, 'fox' AS y`);
    assert.deepEqual(await actuals(), [{ id: '1', y: 'cat' }, { id: '2', y: 'dog' }, { id: '3', y: 'fox' }]);
    // act1 imported again (same version, e.g. a reimport): act2's rows are newer files and keep winning where they overlap.
    await loadA('act2.parquet', 'B3', `SELECT '2' AS id, 'gnu' AS y`);
    const [again] = await store.resetVersions('acts', { key: 'act1.parquet' });
    const path = await writeFixture(join(tmp.path, 'a-A1-again.parquet'), `SELECT '1' AS id, 'cat' AS y UNION ALL SELECT '2', 'dog'`, 'FORMAT parquet');
    await store.importFile({ job: ajob, version: again, file: { path, key: 'act1.parquet' }, source: await readerFor('parquet')({ path, key: 'act1.parquet' }, {}), importTime: new Date() });
    assert.deepEqual(await actuals(), [{ id: '1', y: 'cat' }, { id: '2', y: 'gnu' }]);
    const [{ rows, current }] = await store.query<{ rows: number; current: number }>(`SELECT count(*)::INT AS rows, count(*) FILTER (is_current)::INT AS current FROM actual_rows WHERE model_id = 'm'`);
    assert.deepEqual({ rows, current }, { rows: 3, current: 2 });
  });
});
