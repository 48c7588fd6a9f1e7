import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Daemon } from '../src/daemon.ts';
import { BUCKET, counts, ledger, runDaemon, startStack, STORE_KINDS, waitFor, writeFixture, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

/**
 * The store conformance suite: the same pipeline, ledger and validation scenarios against every
 * store, through the daemon and the store-neutral views (`predictions`, `actuals`, `inferences`,
 * `import_files`, `rejected_rows`) and the admin API, like BullMQ's adapter conformance tests.
 */

const predictionsSql = (start: number, n: number, score = '(i % 100) / 100.0') => `
  SELECT 'p' || i AS prediction_id, TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i) AS prediction_ts,
         CASE WHEN i % 2 = 0 THEN 'click' ELSE 'no_click' END AS predicted_label, ${score} AS proba,
         20 + i % 50 AS "feature/age", CASE WHEN i % 3 = 0 THEN 'Oslo' ELSE 'Lima' END AS "feature/city", 'eu' AS "tag/region"
  FROM range(${start}, ${start + n}) t(i)`;
const actualsSql = (start: number, n: number) => `
  SELECT 'p' || i AS prediction_id, CASE WHEN i % 4 = 0 THEN 'click' ELSE 'no_click' END AS label,
         TIMESTAMPTZ '2026-11-02 00:00:00+00' AS actual_ts FROM range(${start}, ${start + n}) t(i)`;

const jobs = [
  {
    id: 'preds', source: `s3://${BUCKET}/ctr/prediction/`,
    model: { id: 'ctr', version: 'v1', type: 'binary' },
    schema: { predictionId: 'prediction_id', timestamp: 'prediction_ts', predictionLabel: 'predicted_label', predictionScore: 'proba', features: 'feature/', tags: 'tag/' },
  },
  { id: 'acts', source: `s3://${BUCKET}/ctr/actuals/`, model: { id: 'ctr' }, schema: { predictionId: 'prediction_id', actualLabel: 'label', timestamp: 'actual_ts' } },
  {
    id: 'strict', source: `s3://${BUCKET}/strict/`, onInvalidRows: 'fail',
    model: { id: 'strict', version: 'v1' }, schema: { predictionId: 'prediction_id', predictionScore: 'proba', features: 'feature/' },
  },
];

for (const kind of STORE_KINDS) {
  describe(`store conformance: ${kind}`, () => {
    let stack: Stack;
    let daemon: Daemon;
    let base: string;
    const headers = { authorization: 'Bearer conformance-token-0123456789' };

    before(async () => {
      stack = await startStack({ store: kind });
      daemon = await runDaemon(stack.config(jobs, { http: { port: 0, token: 'conformance-token-0123456789', host: '127.0.0.1' } }));
      const address = daemon.http!.server.address() as { port: number };
      base = `http://127.0.0.1:${address.port}`;
    });
    after(async () => {
      await daemon?.stop();
      await stack?.stop();
    });

    const upload = async (key: string, query: string, options: string) => {
      const path = await writeFixture(join(stack.tmp.path, `${kind}-${key.replaceAll('/', '_')}`), query, options);
      return stack.s3.put(BUCKET, key, await readFile(path));
    };
    /** The job's ledger once every version of these keys has ended. */
    const settled = (job: string, ...keys: string[]) =>
      waitFor(`${keys.join(', ')} settled`, async () => {
        const l = await ledger(daemon, job);
        return keys.every((k) => l.some((r) => r.key === k)) && l.every((r) => r.status !== 'pending') && l;
      }, 60_000);
    const q = <T = Record<string, unknown>>(text: string, params: unknown[] = []) => sql(daemon.store)<T>(text, params);

    it('imports every format, joins actuals that arrive first, and counts exactly', async () => {
      await upload('ctr/actuals/early.parquet', actualsSql(0, 30), 'FORMAT parquet');
      await settled('acts', 'ctr/actuals/early.parquet');
      assert.deepEqual(await counts(daemon, 'ctr'), { p: 0, a: 30, j: 0 });
      await upload('ctr/prediction/2026/11/01/a.parquet', predictionsSql(0, 100), 'FORMAT parquet');
      await upload('ctr/prediction/2026/11/02/b.csv', predictionsSql(100, 50), 'FORMAT csv, HEADER true');
      await upload('ctr/prediction/2026/11/03/c.ndjson.gz', predictionsSql(150, 20), 'FORMAT json, COMPRESSION gzip');
      const l = await settled('preds', 'ctr/prediction/2026/11/01/a.parquet', 'ctr/prediction/2026/11/02/b.csv', 'ctr/prediction/2026/11/03/c.ndjson.gz');
      assert.deepEqual(l.map((r) => [r.key.split('/').pop(), r.status, r.predictions_loaded, r.attempts]), [
        ['a.parquet', 'succeeded', 100, 1], ['b.csv', 'succeeded', 50, 1], ['c.ndjson.gz', 'succeeded', 20, 1],
      ]);
      assert.deepEqual(await counts(daemon, 'ctr'), { p: 170, a: 30, j: 30 });
      const [row] = await q(`SELECT prediction_label, prediction_score, actual_label, model_version FROM inferences WHERE prediction_id = 'p4'`);
      assert.deepEqual(row, { prediction_label: 'click', prediction_score: 0.04, actual_label: 'click', model_version: 'v1' });
      const [nulls] = await q<{ n: number }>(`SELECT count(*)::INT AS n FROM inferences WHERE model_id = 'ctr' AND actual_label IS NULL`);
      assert.equal(nulls.n, 140);
    });

    it('replaces what a changed file contributed; the same file twice changes nothing; the newest file holding an ID is current', async () => {
      await upload('ctr/prediction/r/x.parquet', predictionsSql(1000, 10), 'FORMAT parquet');
      await settled('preds', 'ctr/prediction/r/x.parquet');
      // A corrections file re-sends p1000..p1004 with other scores: it becomes current for them.
      await upload('ctr/prediction/r/y.parquet', predictionsSql(1000, 5, '0.99'), 'FORMAT parquet');
      await settled('preds', 'ctr/prediction/r/y.parquet');
      const scores = async () => (await q<{ id: string; s: number }>(`SELECT prediction_id AS id, prediction_score AS s FROM predictions WHERE prediction_id LIKE 'p100_' ORDER BY 1`)).map((r) => `${r.id}=${r.s}`);
      assert.deepEqual(await scores(), ['p1000=0.99', 'p1001=0.99', 'p1002=0.99', 'p1003=0.99', 'p1004=0.99', 'p1005=0.05', 'p1006=0.06', 'p1007=0.07', 'p1008=0.08', 'p1009=0.09']);
      // y rewritten without p1000..p1002: x's rows of those become current again.
      await upload('ctr/prediction/r/y.parquet', `SELECT * FROM (${predictionsSql(1003, 2, '0.5')})`, 'FORMAT parquet');
      await waitFor('y rewritten', async () => (await ledger(daemon, 'preds')).filter((r) => r.key.endsWith('r/y.parquet')).length === 2 && (await ledger(daemon, 'preds')).every((r) => r.status !== 'pending'));
      assert.deepEqual(await scores(), ['p1000=0', 'p1001=0.01', 'p1002=0.02', 'p1003=0.5', 'p1004=0.5', 'p1005=0.05', 'p1006=0.06', 'p1007=0.07', 'p1008=0.08', 'p1009=0.09']);
      const [{ rows, ids }] = await q<{ rows: number; ids: number }>(`SELECT count(*)::INT AS rows, count(DISTINCT prediction_id)::INT AS ids FROM predictions WHERE model_id = 'ctr'`);
      assert.equal(rows, ids);
      assert.equal(rows, 180);
      // Reimport of the same version: nothing changes, still one current row per ID.
      const r = await fetch(`${base}/api/jobs/preds/reimport`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ key: 'ctr/prediction/r/x.parquet' }) });
      assert.equal(r.status, 200);
      await waitFor('reimported', async () => (await ledger(daemon, 'preds')).every((l) => l.status !== 'pending'));
      assert.deepEqual(await scores(), ['p1000=0', 'p1001=0.01', 'p1002=0.02', 'p1003=0.5', 'p1004=0.5', 'p1005=0.05', 'p1006=0.06', 'p1007=0.07', 'p1008=0.08', 'p1009=0.09']);
      assert.deepEqual(await counts(daemon, 'ctr'), { p: 180, a: 30, j: 30 });
    });

    it('rejects bad rows with their codes and loads the rest; onInvalidRows: fail loads nothing of the file', async () => {
      const bad = `SELECT * FROM (${predictionsSql(2000, 6)}) UNION ALL SELECT NULL, NULL, 'click', 0.5, 1, 'x', 'eu'
                   UNION ALL SELECT 'p2001', NULL, 'click', 0.7, 1, 'x', 'eu'`;
      await upload('ctr/prediction/bad/rows.csv', bad, 'FORMAT csv, HEADER true');
      const [file] = (await settled('preds', 'ctr/prediction/bad/rows.csv')).filter((l) => l.key.endsWith('bad/rows.csv'));
      assert.deepEqual([file.status, file.rows_read, file.predictions_loaded, file.rows_rejected], ['partially_succeeded', 8, 6, 2]);
      const rejected = await q<{ r: number; code: string }>(`SELECT row_number::INT AS r, code FROM rejected_rows WHERE key = 'ctr/prediction/bad/rows.csv' ORDER BY 1`);
      assert.deepEqual(rejected.map((x) => `${x.r}:${x.code}`), ['2:IMP_ERR_ROW_DUPLICATE_ID', '7:IMP_ERR_ROW_PREDICTION_ID_MISSING']);
      const [p2001] = await q<{ s: number }>(`SELECT prediction_score AS s FROM predictions WHERE prediction_id = 'p2001'`);
      assert.equal(p2001.s, 0.7); // the last row of an ID wins

      await upload('strict/a.parquet', `SELECT 'q' || i AS prediction_id, CASE WHEN i = 3 THEN 'NaN'::DOUBLE ELSE 0.5 END AS proba, i AS "feature/n" FROM range(5) t(i)`, 'FORMAT parquet');
      const [strict] = await settled('strict', 'strict/a.parquet');
      assert.deepEqual([strict.status, strict.error_code, strict.predictions_loaded, strict.rows_rejected], ['failed', 'IMP_ERR_ROWS_INVALID', 0, 1]);
      assert.match(strict.error_message!, /^strict\/a\.parquet: 1 invalid row\(s\) and onInvalidRows: fail, so nothing was loaded; first: row 4, column "proba"/);
      assert.deepEqual(await counts(daemon, 'strict'), { p: 0, a: 0, j: 0 });
    });

    it('fails a corrupt file and a feature whose type changed at the first attempt, naming them; other files import', async () => {
      await stack.s3.put(BUCKET, 'strict/broken.parquet', Buffer.from('PAR1 this is not parquet PAR1'));
      await upload('strict/c.parquet', `SELECT 's' || i AS prediction_id, 0.5 AS proba, i * 2 AS "feature/n" FROM range(4) t(i)`, 'FORMAT parquet');
      await settled('strict', 'strict/c.parquet');
      await upload('strict/b.parquet', `SELECT 'r' || i AS prediction_id, 0.5 AS proba, 'text' AS "feature/n" FROM range(3) t(i)`, 'FORMAT parquet');
      const l = await settled('strict', 'strict/broken.parquet', 'strict/b.parquet', 'strict/c.parquet');
      const byKey = Object.fromEntries(l.map((r) => [r.key, r]));
      assert.deepEqual([byKey['strict/broken.parquet'].status, byKey['strict/broken.parquet'].error_code, byKey['strict/broken.parquet'].attempts], ['failed', 'IMP_ERR_FORMAT_UNREADABLE', 1]);
      assert.match(byKey['strict/broken.parquet'].error_message!, /^strict\/broken\.parquet: cannot be read/);
      assert.deepEqual([byKey['strict/c.parquet'].status, byKey['strict/c.parquet'].predictions_loaded], ['succeeded', 4]);
      assert.deepEqual([byKey['strict/b.parquet'].status, byKey['strict/b.parquet'].error_code, byKey['strict/b.parquet'].attempts], ['failed', 'IMP_ERR_SCHEMA_FEATURE_CONFLICT', 1]);
      assert.match(byKey['strict/b.parquet'].error_message!, /feature "n" \(column "feature\/n"\) is VARCHAR in this file but BIGINT in model "strict"/);
      assert.deepEqual(await counts(daemon, 'strict'), { p: 4, a: 0, j: 0 });
    });

    it('answers the admin API from the store: jobs, files, models, read-only SQL', async () => {
      const get = async (path: string) => {
        const r = await fetch(`${base}${path}`, { headers });
        return { status: r.status, body: await r.json() as Record<string, unknown> & Array<Record<string, unknown>> };
      };
      const jobsPage = await get('/api/jobs/strict');
      assert.equal(jobsPage.status, 200);
      const byStatus = Object.entries((jobsPage.body as unknown as { files: Record<string, number> }).files).filter(([, n]) => n > 0);
      assert.deepEqual(Object.fromEntries(byStatus), { failed: 3, succeeded: 1 });
      const files = await get('/api/jobs/strict/files?status=failed');
      assert.deepEqual((files.body as unknown as { files: Array<{ key: string }> }).files.map((f) => f.key).sort(), ['strict/a.parquet', 'strict/b.parquet', 'strict/broken.parquet']);
      const models = await get('/api/models');
      const ctr = (models.body as unknown as { models: Array<Record<string, unknown>> }).models.find((m) => m.modelId === 'ctr')!;
      assert.deepEqual([ctr.predictions, ctr.actuals, ctr.joined, ctr.actualsWaiting], [186, 30, 30, 0]);
      const post = (body: unknown) => fetch(`${base}/api/sql`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const ok = await post({ sql: `SELECT prediction_id FROM predictions WHERE model_id = 'strict' ORDER BY 1`, limit: 3 });
      assert.deepEqual(await ok.json(), { columns: ['prediction_id'], rows: [{ prediction_id: 's0' }, { prediction_id: 's1' }, { prediction_id: 's2' }], truncated: true });
      const refused = await post({ sql: `DELETE FROM import_files` });
      assert.equal(refused.status, 400);
      assert.equal(((await refused.json()) as { code: string }).code, 'IMP_ERR_SQL_REFUSED');
      const [{ n }] = await q<{ n: number }>(`SELECT count(*)::INT AS n FROM import_files`);
      assert.ok(n > 0);
    });
  });
}
