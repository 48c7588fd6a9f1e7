import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateConfig } from '../src/config/index.ts';
import type { ImportResult } from '../src/import/index.ts';
import { jobRelation } from '../src/schema/select.ts';
import type { ListedObject, Store } from '../src/store/index.ts';
import { STORE_KINDS, writeFixture } from './helpers/stack.ts';
import { importerOf, sql } from './helpers/sql.ts';
import { openTestStore, type TestStore } from './helpers/store.ts';
import type { TmpDir } from './helpers/tmp.ts';

/**
 * CSV and JSON files read as keys (`keySource`): a clean file's rows are loaded from one parallel
 * read in any order, each numbered by where its key hash stands in the file. On every store the
 * numbers must be the rows' own, and a file that is not clean must go the old way (read whole in
 * file order, staged) with its rejected rows where they are.
 */

// Small read buffers make DuckDB read these files in many pieces on both threads.
const readOptions = { csv: { buffer_size: 16384, max_line_size: 1000 }, json: { maximum_object_size: 1000 } };
const config = (store: Record<string, unknown>) => validateConfig({
  store,
  jobs: (['csv', 'json'] as const).flatMap((format) => [
    { id: `p_${format}`, source: `s3://bkt/p_${format}/`, format, readOptions: readOptions[format], model: { id: 'keyed' }, schema: { predictionId: 'id', predictionScore: 'score' } },
    { id: `a_${format}`, source: `s3://bkt/a_${format}/`, format, readOptions: readOptions[format], model: { id: 'keyed' }, schema: { predictionId: 'id', actualLabel: 'y' } },
  ]).concat([
    // Mappings that need file order: an embedding's dimension from the first vector, a select reading the row number.
    { id: 'emb', source: 's3://bkt/emb/', format: 'json', readOptions: readOptions.json, model: { id: 'keyed_emb' }, schema: { predictionId: 'id', predictionScore: 'score', embeddings: [{ name: 'v', vector: 'emb' }] } },
    { id: 'line', source: 's3://bkt/line/', format: 'csv', readOptions: readOptions.csv, model: { id: 'keyed_line' }, select: ['id', 'score', '__source_row AS f_line'], schema: { predictionId: 'id', predictionScore: 'score', features: 'f_' } },
    { id: 'bad', source: 's3://bkt/bad/', format: 'csv', model: { id: 'keyed' }, schema: { predictionId: 'id', predictionScore: 'score', features: 'f_' } },
  ] as never[]),
});
const ROWS = 20_000;

for (const kind of STORE_KINDS) {
  describe(`CSV and JSON read as keys: ${kind}`, () => {
    let opened: TestStore<ReturnType<typeof config>>;
    let tmp: TmpDir;
    let store: Store;
    before(async () => {
      opened = await openTestStore(kind, { prefix: 'importer-keyed-', config, settings: { memoryLimit: '256MB', threads: 2 } });
      ({ tmp, store } = opened);
    });
    after(() => opened?.close());

    // Every row a file loaded, current or not (the views leave source_row out).
    const predictionRows = (modelId: string) => (kind === 'postgres' ? 'prediction_rows' : `model_predictions.${modelId}`);
    let n = 0;
    /** Imports the rows of `rows` as a file of the job `jobId`; returns the result and how many of its rows sit at another number than their ID's. */
    async function importRows(jobId: string, rows: string): Promise<{ result: ImportResult; n: number; misplaced: number }> {
      const { request, rowsTable } = await prepare(jobId, rows);
      const result = await importerOf(store).importFile(request);
      // Row r of every file here holds the ID 'r<r>'.
      const [counts] = await sql(store)<{ n: number; misplaced: number }>(
        `SELECT count(*)::INT AS n, count(*) FILTER (WHERE source_row <> CAST(substr(prediction_id, 2) AS BIGINT))::INT AS misplaced
         FROM ${rowsTable} WHERE source_file_id = $1`, [request.version.fileId]);
      return { result, ...counts };
    }
    /** The rows of `rows` written as a file of the job `jobId`, its version recorded: the import request, and the table its rows land in. */
    async function prepare(jobId: string, rows: string) {
      const job = opened.config.jobs.find((j) => j.id === jobId)!;
      const ext = job.format === 'csv' ? 'csv' : 'json';
      const rowsTable = job.schema.actualLabel ? 'actual_rows' : predictionRows(job.model.id);
      const key = `${jobId}/${++n}.${ext}`;
      const obj: ListedObject = { bucket: 'bkt', key, etag: 'e1', size: 100, lastModified: new Date('2026-11-01T00:00:00Z') };
      const [version] = await store.recordDiscovered(jobId, [obj]);
      const path = await writeFixture(join(tmp.path, `${n}.${ext}`), rows, ext === 'csv' ? 'FORMAT csv, HEADER true' : 'FORMAT json');
      const file = { path, key };
      return { request: { job, version, file, source: await jobRelation(job, file), importTime: new Date() }, rowsTable };
    }
    const outline = (r: { result: ImportResult; n: number; misplaced: number }) =>
      [r.result.keyed, r.result.loadedFirst, r.result.status, r.result.rowsRejected, r.n, r.misplaced];

    for (const format of ['csv', 'json'] as const) {
      it(`${format}: a clean file of predictions, then of actuals, keyed; a file with a rejected row or a repeated ID read whole`, async () => {
        const ids = () => `SELECT 'r' || i AS id, i / 7 AS score FROM range(1, ${ROWS + 1}) t(i)`;
        assert.deepEqual(outline(await importRows(`p_${format}`, ids())), [true, true, 'succeeded', 0, ROWS, 0]);
        assert.deepEqual(outline(await importRows(`a_${format}`, `SELECT 'r' || i AS id, 'yes' AS y FROM range(1, ${ROWS + 1}) t(i)`)), [true, true, 'succeeded', 0, ROWS, 0]);

        // Row 7,777 without an ID: staged, every other row at its own number, the rejected one named by its.
        const dirty = await importRows(`p_${format}`, `SELECT CASE WHEN i = 7777 THEN NULL ELSE 'r' || i END AS id, i / 7 AS score FROM range(1, ${ROWS + 1}) t(i)`);
        assert.deepEqual(outline(dirty), [false, false, 'partially_succeeded', 1, ROWS - 1, 0]);
        const fileId = async () => (await sql(store)<{ id: number }>(`SELECT max(file_id)::INT AS id FROM import_files WHERE job_id = $1`, [`p_${format}`]))[0].id;
        assert.deepEqual(await sql(store)(`SELECT row_number::INT AS r, code FROM rejected_rows WHERE file_id = $1`, [await fileId()]), [{ r: 7777, code: 'IMP_ERR_ROW_PREDICTION_ID_MISSING' }]);

        // The job's next file is read whole too (its last one needed staging); the one after is keyed again.
        assert.deepEqual(outline(await importRows(`p_${format}`, ids())), [false, false, 'succeeded', 0, ROWS, 0]);
        assert.deepEqual(outline(await importRows(`p_${format}`, ids())), [true, true, 'succeeded', 0, ROWS, 0]);

        // 'r5' again as the last row: the later one wins, the earlier (row 5) is rejected as a duplicate.
        const repeated = await importRows(`p_${format}`,
          `SELECT CASE WHEN i > ${ROWS} THEN 'r5' ELSE 'r' || i END AS id, CASE WHEN i > ${ROWS} THEN 0.5 ELSE i / 7 END AS score FROM range(1, ${ROWS + 2}) t(i)`);
        assert.deepEqual(outline(repeated), [false, false, 'partially_succeeded', 1, ROWS, 1]);
        assert.deepEqual(await sql(store)(`SELECT row_number::INT AS r, code FROM rejected_rows WHERE file_id = $1`, [await fileId()]), [{ r: 5, code: 'IMP_ERR_ROW_DUPLICATE_ID' }]);
        assert.deepEqual(await sql(store)(`SELECT source_row::INT AS r, prediction_score AS s FROM ${predictionRows('keyed')} WHERE source_file_id = $1 AND prediction_id = 'r5'`, [await fileId()]), [{ r: ROWS + 1, s: 0.5 }]);
      });
    }

    it('a mapping that needs file order reads the file whole: an embedding without a dimension, a select reading the row number', async () => {
      // The first vector (row 1) is 3 long, later ones 2: rows 2.. are rejected for their dimension, whichever order the file is read in.
      const emb = await importRows('emb', `SELECT 'r' || i AS id, 0.5 AS score, CASE WHEN i = 1 THEN [1.0, 2.0, 3.0] ELSE [1.0, 2.0] END AS emb FROM range(1, 2001) t(i)`);
      assert.deepEqual([...outline(emb), emb.result.rejectedByCode], [false, false, 'partially_succeeded', 1999, 1, 0, { IMP_ERR_ROW_EMBEDDING_DIMENSION: 1999 }]);
      const line = await importRows('line', `SELECT 'r' || i AS id, i / 7 AS score FROM range(1, ${ROWS + 1}) t(i)`);
      assert.deepEqual(outline(line), [false, true, 'succeeded', 0, ROWS, 0]);
      const feature = kind === 'postgres' ? `(features->>'line')::BIGINT` : 'features.line';
      const [{ off }] = await sql(store)<{ off: number }>(`SELECT count(*) FILTER (WHERE ${feature} IS DISTINCT FROM source_row)::INT AS off FROM ${predictionRows('keyed_line')} WHERE model_id = 'keyed_line'`);
      assert.equal(off, 0);
    });

    it('a value that does not convert, in a column the keys read leaves out, is found in the turn: the file is refused naming it, nothing loaded', async () => {
      // DuckDB types f_n from its first rows (BIGINT); the last row's 'n/a' is met only when every column is read.
      const { request, rowsTable } = await prepare('bad', `SELECT 'b' || i AS id, i / 7 AS score, CASE WHEN i = 30000 THEN 'n/a' ELSE i::VARCHAR END AS f_n FROM range(1, 30001) t(i)`);
      await assert.rejects(importerOf(store).importFile(request), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'IMP_ERR_FORMAT_UNREADABLE');
        // Line 30,001 of the file: its header, then row 30,000.
        assert.equal(err.message.startsWith(`${request.file.key}: cannot be read: Conversion Error: CSV Error on Line: 30001`), true, err.message);
        return true;
      });
      const [{ c }] = await sql(store)<{ c: number }>(`SELECT count(*)::INT AS c FROM ${rowsTable} WHERE source_file_id = $1`, [request.version.fileId]);
      assert.equal(c, 0);
    });
  });
}
