import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateConfig, type JobConfig } from '../src/config/index.ts';
import { readerFor } from '../src/formats/index.ts';
import type { ImportResult } from '../src/import/index.ts';
import { jobRelation } from '../src/schema/select.ts';
import { DuckDbStore } from '../src/store/index.ts';
import type { ListedObject } from '../src/store/index.ts';
import { tmpDir, type TmpDir } from './helpers/tmp.ts';
import { writeFixture } from './helpers/stack.ts';
import { importerOf } from './helpers/sql.ts';

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
    return importerOf(store).importFile({ job, version, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
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
    const superseded = await importerOf(store).importFile({ job, version: v1, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
    assert.equal(superseded.status, 'superseded');
    const again = await importerOf(store).importFile({ job, version: v1, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
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
      return importerOf(store).importFile({ job: fjob, version, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
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

  it('numbers the rows of CSV and NDJSON read in parallel as they stand in the file, loaded first or staged', async () => {
    // Small read buffers make DuckDB read these files in many pieces on both threads.
    const readOptions = { csv: { buffer_size: 16384, max_line_size: 1000 }, json: { maximum_object_size: 1000 } };
    const importAs = async (format: 'csv' | 'json', key: string, bad: number | undefined) => {
      const pjob = validateConfig({
        jobs: [{ id: `n${format}`, source: 's3://bkt/n/', format, readOptions: readOptions[format], model: { id: `rows_${format}` }, schema: { predictionId: 'id', predictionScore: 'score' } }],
      }).jobs[0];
      const [version] = await store.recordDiscovered(pjob.id, [obj(key, key)]);
      // Row i (from 1) has ID 'r<i>', except the row `bad`, which has none.
      const rows = `SELECT CASE WHEN i = ${bad ?? 0} THEN NULL ELSE 'r' || i END AS id, i / 7 AS score FROM range(1, 30001) t(i)`;
      const path = await writeFixture(join(tmp.path, key), rows, format === 'csv' ? 'FORMAT csv, HEADER true' : 'FORMAT json');
      const file = { path, key };
      const result = await importerOf(store).importFile({ job: pjob, version, file, source: await jobRelation(pjob, file), importTime: new Date() });
      const [{ n, misplaced }] = await store.query<{ n: number; misplaced: number }>(
        `SELECT count(*)::INT AS n, count(*) FILTER (WHERE source_row <> CAST(substr(prediction_id, 2) AS BIGINT))::INT AS misplaced
         FROM model_predictions.rows_${format} WHERE source_file_id = $1`, [version.fileId]);
      return { result, n, misplaced, rejected: await store.query(`SELECT row_number::INT AS row, code, raw->>'score' AS score FROM rejected_rows WHERE file_id = $1`, [version.fileId]) };
    };
    for (const format of ['csv', 'json'] as const) {
      // Clean: read as keys in file order, then loaded from one read in any order, numbered by key.
      const clean = await importAs(format, `clean.${format}`, undefined);
      assert.deepEqual([clean.result.loadedFirst, clean.result.keyed, clean.n, clean.misplaced], [true, true, 30_000, 0], format);
      // A rejected row: read whole into a table in file order, staged.
      const dirty = await importAs(format, `dirty.${format}`, 21_234);
      assert.deepEqual([dirty.result.loadedFirst, dirty.result.keyed, dirty.result.rowsRejected, dirty.n, dirty.misplaced], [false, false, 1, 29_999, 0], format);
      assert.deepEqual(dirty.rejected, [{ row: 21_234, code: 'IMP_ERR_ROW_PREDICTION_ID_MISSING', score: '3033.4285714285716' }], format);
    }
    // Files are read on a connection of their own while imports insert without keeping order: a
    // reader keeps its file's order whatever the instance-wide setting says.
    await store.query('SET GLOBAL preserve_insertion_order = false');
    try {
      // The first is staged (the job's last file had a rejected row), the second read as keys.
      const staged = await importAs('csv', 'global-unordered.csv', undefined);
      const keyed = await importAs('csv', 'global-unordered-keyed.csv', undefined);
      assert.deepEqual([staged.result.keyed, staged.n, staged.misplaced, keyed.result.keyed, keyed.n, keyed.misplaced], [false, 30_000, 0, true, 30_000, 0]);
    } finally {
      await store.query('SET GLOBAL preserve_insertion_order = true');
    }
    // A data column named rowid would hide DuckDB's row IDs: that file is numbered by its window instead.
    const rjob = validateConfig({ jobs: [{ id: 'nr', source: 's3://bkt/nr/', model: { id: 'rows_rowid' }, schema: { predictionId: 'id', predictionScore: 'score' } }] }).jobs[0];
    const [version] = await store.recordDiscovered('nr', [obj('rowid.csv', 'R1')]);
    const path = await writeFixture(join(tmp.path, 'rowid.csv'), `SELECT 'r' || i AS id, 100 - i AS rowid, 0.5 AS score FROM range(1, 51) t(i)`, 'FORMAT csv, HEADER true');
    await importerOf(store).importFile({ job: rjob, version, file: { path, key: 'rowid.csv' }, source: await jobRelation(rjob, { path, key: 'rowid.csv' }), importTime: new Date() });
    assert.deepEqual(await store.query(`SELECT count(*)::INT AS n, count(*) FILTER (WHERE source_row <> CAST(substr(prediction_id, 2) AS BIGINT))::INT AS misplaced FROM model_predictions.rows_rowid`), [{ n: 50, misplaced: 0 }]);
  });

  it('keeps an overridden row underneath: it comes back when the overriding file drops the ID, and a late retry of the older file does not win', async () => {
    const ajob = validateConfig({ jobs: [{ id: 'acts', source: 's3://bkt/a/', model: { id: 'm' }, schema: { predictionId: 'id', actualLabel: 'y' } }] }).jobs[0];
    const loadA = async (key: string, etag: string, sql: string) => {
      const [version] = await store.recordDiscovered('acts', [obj(key, etag)]);
      const path = await writeFixture(join(tmp.path, `a-${etag}.parquet`), sql, 'FORMAT parquet');
      const file = { path, key };
      return importerOf(store).importFile({ job: ajob, version, file, source: await readerFor('parquet')(file, {}), importTime: new Date() });
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
    await importerOf(store).importFile({ job: ajob, version: again, file: { path, key: 'act1.parquet' }, source: await readerFor('parquet')({ path, key: 'act1.parquet' }, {}), importTime: new Date() });
    assert.deepEqual(await actuals(), [{ id: '1', y: 'cat' }, { id: '2', y: 'gnu' }]);
    const [{ rows, current }] = await store.query<{ rows: number; current: number }>(`SELECT count(*)::INT AS rows, count(*) FILTER (is_current)::INT AS current FROM actual_rows WHERE model_id = 'm'`);
    assert.deepEqual({ rows, current }, { rows: 3, current: 2 });
  });
});

describe('DuckDB store: files of a job waiting together', () => {
  let tmp: TmpDir;
  before(async () => {
    tmp = await tmpDir('importer-group-');
  });
  after(async () => {
    await tmp?.cleanup();
  });

  const gjob = validateConfig({
    jobs: [{ id: 'g', source: 's3://bkt/g/', model: { id: 'gm' }, schema: { predictionId: 'id', predictionScore: 'score', features: 'f_' } }],
  }).jobs[0];
  const ajob = validateConfig({ jobs: [{ id: 'ga', source: 's3://bkt/ga/', model: { id: 'gm' }, schema: { predictionId: 'id', actualLabel: 'y' } }] }).jobs[0];
  // A: 0..999; B: 500..1499 (newer, overrides 500..999); C: 98 good rows, a row without ID and a repeated ID; D (CSV): 3000..3049 and 0.
  const files = [
    { key: 'a.parquet', sql: `SELECT 'id' || i AS id, 0.1 AS score, i AS f_n FROM range(1000) t(i)` },
    { key: 'b.parquet', sql: `SELECT 'id' || i AS id, 0.2 AS score, i AS f_n FROM range(500, 1500) t(i)` },
    { key: 'c.parquet', sql: `SELECT * FROM (SELECT 'id' || i AS id, 0.3 AS score, i AS f_n FROM range(2000, 2098) t(i) UNION ALL SELECT NULL, 0.3, 1 UNION ALL SELECT 'id2000', 0.35, 2) ORDER BY f_n` },
    { key: 'd.csv', sql: `SELECT 'id' || i AS id, 0.4 AS score, i AS f_n FROM range(3000, 3050) t(i) UNION ALL SELECT 'id0', 0.4, 0` },
  ];

  let written = 0;
  /** An import request: version e1 of `key` recorded for the job, its file written (the rows of `sql`, CSV or parquet by extension, or `body` as it is). */
  async function requestFor(store: DuckDbStore, job: JobConfig, key: string, content: { sql: string } | { body: string }, importTime = new Date(), etag = 'e1') {
    const [version] = await store.recordDiscovered(job.id, [obj(key, etag)]);
    const path = join(tmp.path, `${++written}-${key}`);
    if ('sql' in content) await writeFixture(path, content.sql, key.endsWith('.csv') ? 'FORMAT csv, HEADER true' : 'FORMAT parquet');
    else await writeFile(path, content.body);
    const file = { path, key };
    return { job, version, file, source: await jobRelation(job, file), importTime };
  }

  async function openStore(name: string) {
    const store = new DuckDbStore({ path: join(tmp.path, `${name}.duckdb`) });
    await store.init();
    return store;
  }
  /** A fresh store for `fn`, closed after it. */
  async function withStore(name: string, fn: (store: DuckDbStore) => Promise<void>) {
    const store = await openStore(name);
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  }

  async function storeWith(name: string, together: boolean, only = files) {
    const store = await openStore(name);
    const requests = [];
    for (const f of only) requests.push(await requestFor(store, gjob, f.key, f, new Date('2026-11-21T00:00:00Z')));
    const results = together ? await Promise.all(requests.map((r) => importerOf(store).importFile(r))) : [];
    if (!together) for (const r of requests) results.push(await importerOf(store).importFile(r));
    return { store, results };
  }
  const content = (store: DuckDbStore) =>
    store.query(`SELECT f.key, p.prediction_id, p.prediction_score, p.features.n AS n, p.is_current, p.source_row
                 FROM model_predictions.gm p JOIN import_files f ON f.file_id = p.source_file_id ORDER BY ALL`);

  it('imports them in one transaction, with exactly the rows, flags and rejections of one-by-one imports', async () => {
    const one = await storeWith('one-by-one', false);
    const group = await storeWith('together', true);
    try {
      assert.deepEqual(one.results.map((r) => r.filesInTransaction), [1, 1, 1, 1]);
      // The CSV file, read as keys, goes in a transaction of its own: files read as keys are imported with each other only.
      assert.deepEqual(group.results.map((r) => [r.filesInTransaction, r.keyed]), [[3, false], [3, false], [3, false], [1, true]]);
      const summary = (rs: typeof one.results) => rs.map((r) => [r.status, r.rowsRead, r.predictionsLoaded, r.rowsRejected]);
      const expected = [['succeeded', 1000, 1000, 0], ['succeeded', 1000, 1000, 0], ['partially_succeeded', 100, 98, 2], ['succeeded', 51, 51, 0]];
      assert.deepEqual(summary(one.results), expected);
      assert.deepEqual(summary(group.results), expected);
      assert.deepEqual(group.results[2].rejectedByCode, { IMP_ERR_ROW_PREDICTION_ID_MISSING: 1, IMP_ERR_ROW_DUPLICATE_ID: 1 });

      const rows = await content(group.store);
      assert.deepEqual(rows, await content(one.store));
      assert.equal(rows.length, 2149);
      assert.equal(rows.filter((r) => r.is_current).length, 1648);
      const current = (id: string) => rows.filter((r) => r.prediction_id === id && r.is_current).map((r) => [r.key, r.prediction_score]);
      assert.deepEqual(current('id0'), [['d.csv', 0.4]]);
      assert.deepEqual(current('id700'), [['b.parquet', 0.2]]);
      assert.deepEqual(current('id2000'), [['c.parquet', 0.3]]); // the later row of the file wins; the one at row 2 was the duplicate
      const rejected = (s: DuckDbStore) => s.query(`SELECT key, row_number, code FROM rejected_rows ORDER BY ALL`);
      assert.deepEqual(await rejected(group.store), await rejected(one.store));
      assert.deepEqual((await rejected(group.store)).map((r) => r.code), ['IMP_ERR_ROW_PREDICTION_ID_MISSING', 'IMP_ERR_ROW_DUPLICATE_ID']);
      const ledger = (s: DuckDbStore) => s.query(`SELECT key, status, rows_read, predictions_loaded, rows_rejected, error_code FROM import_files ORDER BY key`);
      assert.deepEqual(await ledger(group.store), await ledger(one.store));

      // Actuals of one job arriving together: overlapping files, the newer wins; each joined pair is counted once, for the file whose row is current.
      const acts = [];
      for (const [key, from, to, y] of [['x.parquet', 0, 10, 'no'], ['y.parquet', 5, 15, 'yes']] as const) {
        acts.push(await requestFor(group.store, ajob, key, { sql: `SELECT 'id' || i AS id, '${y}' AS y FROM range(${from}, ${to}) t(i)` }));
      }
      const [x, y] = await Promise.all(acts.map((r) => importerOf(group.store).importFile(r)));
      assert.deepEqual([x.filesInTransaction, x.actualsLoaded, x.matched?.count, y.actualsLoaded, y.matched?.count], [2, 10, 5, 10, 10]);
      const labels = await group.store.query(`SELECT y.actual_label AS y, count(*)::INT AS n FROM actuals y WHERE model_id = 'gm' GROUP BY ALL ORDER BY 1`);
      assert.deepEqual(labels, [{ y: 'no', n: 5 }, { y: 'yes', n: 10 }]);
    } finally {
      await one.store.close();
      await group.store.close();
    }
  });

  it('loads parquet files of one schema in one scan, with exactly the rows of one-by-one imports', async () => {
    const parquet = files.filter((f) => f.key.endsWith('.parquet'));
    const one = await storeWith('pq-one-by-one', false, parquet);
    const group = await storeWith('pq-together', true, parquet);
    try {
      assert.deepEqual(group.results.map((r) => [r.filesInTransaction, r.status, r.predictionsLoaded]), [[3, 'succeeded', 1000], [3, 'succeeded', 1000], [3, 'partially_succeeded', 98]]);
      const rows = await content(group.store);
      assert.deepEqual(rows, await content(one.store));
      assert.equal(rows.length, 2098);
      assert.equal(rows.filter((r) => r.is_current).length, 1598);
      // Rows keep their own file's row numbers (c.parquet: row 1 has no ID, row 2 repeats id2000, row 3 is the id2000 kept).
      assert.deepEqual(rows.filter((r) => r.prediction_id === 'id2000' || r.prediction_id === 'id2001').map((r) => [r.key, r.source_row]), [['c.parquet', '3'], ['c.parquet', '4']]);
    } finally {
      await one.store.close();
      await group.store.close();
    }
  });

  it('a job with a select imports its files in one transaction, each read on its own (a select may hold window functions)', async () => {
    const sjob = validateConfig({
      jobs: [{ id: 's', source: 's3://bkt/s/', model: { id: 'sm' }, select: ['id', 'score * 10 AS score', "'x' || id AS f_tag"], schema: { predictionId: 'id', predictionScore: 'score', features: 'f_' } }],
    }).jobs[0];
    await withStore('select', async (store) => {
      const requests = [];
      for (const [key, from] of [['s1.parquet', 0], ['s2.parquet', 5]] as const) {
        requests.push(await requestFor(store, sjob, key, { sql: `SELECT 'q' || i AS id, i / 100 AS score FROM range(${from}, ${from + 5}) t(i)` }));
      }
      const results = await Promise.all(requests.map((r) => importerOf(store).importFile(r)));
      assert.deepEqual(results.map((r) => [r.filesInTransaction, r.predictionsLoaded]), [[2, 5], [2, 5]]);
      const rows = await store.query(`SELECT f.key, p.prediction_id AS id, p.prediction_score AS s, p.features.tag AS tag, p.source_row::INT AS r
                                      FROM model_predictions.sm p JOIN import_files f ON f.file_id = p.source_file_id WHERE p.prediction_id IN ('q4', 'q5') ORDER BY 2`);
      assert.deepEqual(rows, [{ key: 's1.parquet', id: 'q4', s: 0.4, tag: 'xq4', r: 5 }, { key: 's2.parquet', id: 'q5', s: 0.5, tag: 'xq5', r: 1 }]);
    });
  });

  it('an embedding without a declared dimension takes each file\'s own first vector, also when files are read in one scan', async () => {
    const ejob = validateConfig({
      jobs: [{ id: 'e', source: 's3://bkt/e/', model: { id: 'em' }, schema: { predictionId: 'id', predictionScore: 'score', embeddings: [{ name: 'v', vector: 'emb' }] } }],
    }).jobs[0];
    await withStore('emb', async (store) => {
      const requests = [];
      // e1: 3-long vectors and one 2-long (rejected); e2: 4-long vectors only (all valid on their own).
      for (const [key, sql] of [
        ['e1.parquet', `SELECT * FROM (SELECT 'a' || i AS id, 0.5 AS score, [1.0, 2.0, 3.0]::DOUBLE[] AS emb FROM range(3) t(i) UNION ALL SELECT 'a9', 0.5, [1.0, 2.0]::DOUBLE[]) ORDER BY id`],
        ['e2.parquet', `SELECT 'b' || i AS id, 0.5 AS score, [1.0, 2.0, 3.0, 4.0]::DOUBLE[] AS emb FROM range(4) t(i)`],
      ] as const) {
        requests.push(await requestFor(store, ejob, key, { sql }));
      }
      const results = await Promise.all(requests.map((r) => importerOf(store).importFile(r)));
      assert.deepEqual(results.map((r) => [r.filesInTransaction, r.predictionsLoaded, r.rejectedByCode]), [
        [2, 3, { IMP_ERR_ROW_EMBEDDING_DIMENSION: 1 }],
        [2, 4, {}],
      ]);
    });
  });

  it('loads clean parquet predictions first and checks after; a file with a rejected row is staged, and so is the next file of its job', async () => {
    await withStore('load-first', async (store) => {
      const ids = (from: number, to: number, score: number) => `SELECT 'p' || i AS id, ${score} AS score, i AS f_n FROM range(${from}, ${to}) t(i)`;
      const imp = async (key: string, sql: string, etag = 'e1') => importerOf(store).importFile(await requestFor(store, gjob, key, { sql }, new Date(), etag));
      const outline = (r: Awaited<ReturnType<typeof imp>>) => [r.loadedFirst, r.status, r.rowsRead, r.predictionsLoaded, r.rowsRejected];
      const current = async () => (await store.query<{ key: string; n: number; cur: number }>(
        `SELECT f.key, count(*)::INT AS n, count(*) FILTER (p.is_current)::INT AS cur FROM model_predictions.gm p JOIN import_files f ON f.file_id = p.source_file_id GROUP BY ALL ORDER BY ALL`)).map((r) => [r.key, r.n, r.cur]);
      assert.deepEqual(outline(await imp('a.parquet', ids(0, 10, 0.1))), [true, 'succeeded', 10, 10, 0]);
      // b overrides a's p5..p9: the overlap is found after the load, against the other files' rows.
      assert.deepEqual(outline(await imp('b.parquet', ids(5, 15, 0.2))), [true, 'succeeded', 10, 10, 0]);
      assert.deepEqual(await current(), [['a.parquet', 10, 5], ['b.parquet', 10, 10]]);
      // b rewritten without them: a's rows are current again.
      assert.deepEqual(outline(await imp('b.parquet', ids(10, 15, 0.3), 'e2')), [true, 'succeeded', 5, 5, 0]);
      assert.deepEqual(await current(), [['a.parquet', 10, 10], ['b.parquet', 5, 5]]);
      // A row without ID: the loaded rows are rolled back and the file imported staged.
      const c = await imp('c.parquet', `SELECT * FROM (${ids(20, 22, 0.4)} UNION ALL SELECT NULL, 0.4, 99) ORDER BY f_n`);
      assert.deepEqual([...outline(c), c.rejectedByCode], [false, 'partially_succeeded', 3, 2, 1, { IMP_ERR_ROW_PREDICTION_ID_MISSING: 1 }]);
      assert.deepEqual(outline(await imp('d.parquet', ids(30, 33, 0.5))), [false, 'succeeded', 3, 3, 0]);
      assert.deepEqual(outline(await imp('e.parquet', ids(40, 43, 0.5))), [true, 'succeeded', 3, 3, 0]);
      // An ID twice in one file: the later row wins, the earlier one is rejected as a duplicate.
      const f = await imp('f.parquet', `SELECT * FROM (${ids(50, 52, 0.6)} UNION ALL SELECT 'p50', 0.7, 60) ORDER BY f_n`);
      assert.deepEqual([...outline(f), f.rejectedByCode], [false, 'partially_succeeded', 3, 2, 1, { IMP_ERR_ROW_DUPLICATE_ID: 1 }]);
      assert.deepEqual(await store.query(`SELECT prediction_score AS s, source_row::INT AS r FROM model_predictions.gm WHERE prediction_id = 'p50'`), [{ s: 0.7, r: 3 }]);
      assert.deepEqual(await current(), [['a.parquet', 10, 10], ['b.parquet', 5, 5], ['c.parquet', 2, 2], ['d.parquet', 3, 3], ['e.parquet', 3, 3], ['f.parquet', 2, 2]]);
      assert.deepEqual(await store.query(`SELECT key, row_number::INT AS r, code FROM rejected_rows ORDER BY ALL`), [
        { key: 'c.parquet', r: 3, code: 'IMP_ERR_ROW_PREDICTION_ID_MISSING' },
        { key: 'f.parquet', r: 1, code: 'IMP_ERR_ROW_DUPLICATE_ID' },
      ]);

      // Two clean files waiting together, sharing IDs with each other: one scan, loaded first; the newer file's rows are current.
      await imp('g0.parquet', ids(70, 71, 0.8)); // clean and staged (after f): the job loads first again from here
      const requests = [await requestFor(store, gjob, 'g1.parquet', { sql: ids(60, 70, 0.8) }), await requestFor(store, gjob, 'g2.parquet', { sql: ids(65, 75, 0.9) })];
      const results = await Promise.all(requests.map((r) => importerOf(store).importFile(r)));
      assert.deepEqual(results.map((r) => [r.filesInTransaction, ...outline(r)]), [[2, true, 'succeeded', 10, 10, 0], [2, true, 'succeeded', 10, 10, 0]]);
      assert.deepEqual((await current()).slice(-3), [['g0.parquet', 1, 0], ['g1.parquet', 10, 5], ['g2.parquet', 10, 10]]);
    });
  });

  it('CSV files read as keys: loaded together from one read each, numbered by key; a repeated ID or a random select reads them whole; a parquet file beside them imports apart', async () => {
    await withStore('keyed', async (store) => {
      const csv = (from: number, to: number, score: number) => ({ sql: `SELECT 'k' || i AS id, ${score} AS score, i AS f_n FROM range(${from}, ${to}) t(i)` });
      const summary = (r: ImportResult) => [r.filesInTransaction, r.loadedFirst, r.keyed, r.status, r.predictionsLoaded, r.rowsRejected];
      // Row r of a file holds f_n = from + r - 1: source_row must say so, whichever file the row came from.
      const misplaced = async (from: Record<string, number>) => (await store.query<{ key: string; n: number; bad: number }>(
        `SELECT f.key, count(*)::INT AS n, count(*) FILTER (WHERE p.source_row <> p.features.n - CASE f.key ${Object.entries(from).map(([k, v]) => `WHEN '${k}' THEN ${v - 1}`).join(' ')} END)::INT AS bad
         FROM model_predictions.gm p JOIN import_files f ON f.file_id = p.source_file_id WHERE f.key IN (${Object.keys(from).map((k) => `'${k}'`).join(', ')}) GROUP BY ALL ORDER BY ALL`)).map((r) => [r.key, r.n, r.bad]);
      const together = async (files: Array<[string, { sql: string }]>) => {
        const requests = [];
        for (const [key, content] of files) requests.push(await requestFor(store, gjob, key, content));
        return Promise.all(requests.map((r) => importerOf(store).importFile(r)));
      };

      // Three clean CSV files waiting together, the later ones overriding IDs of the earlier: one transaction, each file keyed.
      const three = await together([['k1.csv', csv(0, 1000, 0.1)], ['k2.csv', csv(500, 1500, 0.2)], ['k3.csv', csv(1400, 1600, 0.3)]]);
      assert.deepEqual(three.map(summary), [[3, true, true, 'succeeded', 1000, 0], [3, true, true, 'succeeded', 1000, 0], [3, true, true, 'succeeded', 200, 0]]);
      assert.deepEqual(await misplaced({ 'k1.csv': 0, 'k2.csv': 500, 'k3.csv': 1400 }), [['k1.csv', 1000, 0], ['k2.csv', 1000, 0], ['k3.csv', 200, 0]]);
      const [{ cur }] = await store.query<{ cur: number }>(`SELECT count(*)::INT AS cur FROM model_predictions.gm WHERE is_current AND prediction_id LIKE 'k%'`);
      assert.equal(cur, 1600);

      // An ID twice in a file: read whole and staged; the later row wins, the earlier is rejected at its own row.
      const [dup] = await together([['kd.csv', { sql: `SELECT * FROM (${csv(2000, 2010, 0.4).sql} UNION ALL SELECT 'k2003', 0.9, 2010) ORDER BY f_n` }]]);
      assert.deepEqual([...summary(dup), dup.rejectedByCode], [1, false, false, 'partially_succeeded', 10, 1, { IMP_ERR_ROW_DUPLICATE_ID: 1 }]);
      assert.deepEqual(await store.query(`SELECT row_number::INT AS r FROM rejected_rows WHERE key = 'kd.csv'`), [{ r: 4 }]);
      assert.deepEqual(await store.query(`SELECT prediction_score AS s, source_row::INT AS r FROM model_predictions.gm WHERE prediction_id = 'k2003'`), [{ s: 0.9, r: 11 }]);
      // The job's next file is staged (read whole) too, and the one after it keyed again.
      const [next, again] = [(await together([['kn.csv', csv(3000, 3010, 0.5)]]))[0], (await together([['ka.csv', csv(3100, 3110, 0.5)]]))[0]];
      assert.deepEqual([summary(next), summary(again)], [[1, false, false, 'succeeded', 10, 0], [1, true, true, 'succeeded', 10, 0]]);

      // A parquet file waiting with them goes in a transaction of its own (a group mixing the two would read the CSV whole).
      const mixed = await together([['km.csv', csv(4000, 4100, 0.6)], ['kp.parquet', csv(4100, 4200, 0.6)]]);
      assert.deepEqual(mixed.map(summary), [[1, true, true, 'succeeded', 100, 0], [1, true, false, 'succeeded', 100, 0]]);
      assert.deepEqual(await misplaced({ 'km.csv': 4000, 'kp.parquet': 4100 }), [['km.csv', 100, 0], ['kp.parquet', 100, 0]]);

      // Actuals are keyed by prediction ID alone.
      const [acts] = [await importerOf(store).importFile(await requestFor(store, ajob, 'ky.csv', { sql: `SELECT 'k' || i AS id, 'yes' AS y FROM range(0, 300) t(i)` }))];
      assert.deepEqual([acts.loadedFirst, acts.keyed, acts.actualsLoaded, acts.matched?.count], [true, true, 300, 300]);
      assert.deepEqual(await store.query(`SELECT count(*)::INT AS n, count(*) FILTER (WHERE source_row <> CAST(substr(prediction_id, 2) AS BIGINT) + 1)::INT AS bad FROM actuals WHERE model_id = 'gm'`), [{ n: 300, bad: 0 }]);

      // A select is applied to both reads; one drawing random values would differ between them, so its file is read whole (and staged).
      for (const [id, select, keyed, score] of [['sel', ['id', 'score * 2 AS score', 'f_n'], true, 0.5], ['rnd', ['id', 'score', 'f_n', 'random() AS f_r'], false, 0.25], ['uid', ['id', 'score', 'f_n', 'uuidv7()::VARCHAR AS f_u'], false, 0.25]] as const) {
        const sjob = validateConfig({ jobs: [{ id, source: `s3://bkt/${id}/`, model: { id: `m_${id}` }, select: [...select], schema: { predictionId: 'id', predictionScore: 'score', features: 'f_' } }] }).jobs[0];
        const r = await importerOf(store).importFile(await requestFor(store, sjob, `${id}.csv`, csv(0, 50, 0.25)));
        assert.deepEqual([r.loadedFirst, r.keyed, r.predictionsLoaded], [keyed, keyed, 50], id);
        assert.deepEqual(await store.query(`SELECT count(*) FILTER (WHERE source_row <> features.n + 1)::INT AS bad, min(prediction_score) AS s FROM model_predictions.m_${id}`), [{ bad: 0, s: score }], id);
      }
    });
  });

  it('a parquet file with a corrupt data page fails as unreadable, naming its key, though it was loaded first', async () => {
    await withStore('corrupt-page', async (store) => {
      const request = await requestFor(store, gjob, 'torn.parquet', { sql: `SELECT 'c' || i AS id, random() AS score, i AS f_n FROM range(20000) t(i)` });
      // Footer intact (the columns can be described), pages in the middle overwritten.
      const bytes = await readFile(request.file.path);
      bytes.fill(0x5a, 4096, bytes.length - 4096);
      await writeFile(request.file.path, bytes);
      await assert.rejects(importerOf(store).importFile(request), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'IMP_ERR_FORMAT_UNREADABLE');
        assert.match(err.message, /^torn\.parquet: cannot be read/);
        return true;
      });
      const [{ n }] = await store.query<{ n: number }>(`SELECT count(*)::INT AS n FROM import_files WHERE key = 'torn.parquet' AND status = 'pending'`);
      assert.equal(n, 1, 'nothing committed');
    });
  });

  it('a broken file fails alone: the group falls back to one transaction per file', async () => {
    await withStore('broken', async (store) => {
      const requests = [];
      for (const [key, body] of [['ok1.parquet', `SELECT 'k' || i AS id, 0.5 AS score FROM range(10) t(i)`], ['bad.parquet', null], ['ok2.parquet', `SELECT 'k' || i AS id, 0.6 AS score FROM range(20, 25) t(i)`]] as const) {
        requests.push(await requestFor(store, gjob, key, body ? { sql: body } : { body: 'PAR1 this is not parquet' }));
      }
      const outcomes = await Promise.allSettled(requests.map((r) => importerOf(store).importFile(r)));
      assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled']);
      const [ok1, bad, ok2] = outcomes;
      assert.deepEqual(ok1.status === 'fulfilled' && [ok1.value.status, ok1.value.predictionsLoaded, ok1.value.filesInTransaction], ['succeeded', 10, 1]);
      assert.deepEqual(ok2.status === 'fulfilled' && [ok2.value.status, ok2.value.predictionsLoaded, ok2.value.filesInTransaction], ['succeeded', 5, 1]);
      assert.equal(bad.status === 'rejected' && bad.reason.code, 'IMP_ERR_FORMAT_UNREADABLE');
      assert.match(bad.status === 'rejected' ? bad.reason.message : '', /^bad\.parquet: cannot be read/);
      const [{ n }] = await store.query<{ n: number }>(`SELECT count(*)::INT AS n FROM model_predictions.gm WHERE is_current`);
      assert.equal(n, 15);
    });
  });
});
