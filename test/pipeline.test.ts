import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Daemon } from '../src/daemon.ts';
import { BUCKET, counts, ledger, runDaemon, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

/** n prediction rows with ids p<start>..; features feature/age, feature/city; tag tag/region. */
const predictionsSql = (start: number, n: number) => `
  SELECT 'p' || i AS prediction_id, TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i) AS prediction_ts,
         CASE WHEN i % 2 = 0 THEN 'click' ELSE 'no_click' END AS predicted_label, (i % 100) / 100.0 AS proba,
         20 + i % 50 AS "feature/age", CASE WHEN i % 3 = 0 THEN 'Oslo' ELSE 'Lima' END AS "feature/city", 'eu' AS "tag/region"
  FROM range(${start}, ${start + n}) t(i)`;

const actualsSql = (start: number, n: number) => `
  SELECT 'p' || i AS prediction_id, CASE WHEN i % 4 = 0 THEN 'click' ELSE 'no_click' END AS label FROM range(${start}, ${start + n}) t(i)`;

const predictionJob = (id: string, prefix: string, format = 'auto') => ({
  id, source: `s3://${BUCKET}/${prefix}`, format,
  model: { id: 'ctr', version: 'v1', environment: 'production' },
  schema: { predictionId: 'prediction_id', timestamp: 'prediction_ts', predictionLabel: 'predicted_label', predictionScore: 'proba', features: 'feature/', tags: 'tag/' },
});
const actualsJob = (id: string, prefix: string) => ({
  id, source: `s3://${BUCKET}/${prefix}`, model: { id: 'ctr', environment: 'production' }, schema: { predictionId: 'prediction_id', actualLabel: 'label' },
});

describe('import pipeline', () => {
  let stack: Stack;
  let daemon: Daemon;

  before(async () => {
    stack = await startStack();
    daemon = await runDaemon(stack.config([
      predictionJob('preds', 'ctr/prediction/'), actualsJob('acts', 'ctr/actuals/'),
      // The same IDs under another environment and another model, which the inferences view must keep apart.
      { ...actualsJob('acts-training', 'ctr/actuals-training/'), model: { id: 'ctr', environment: 'training' } },
      { ...actualsJob('acts-other', 'other/actuals/'), model: { id: 'other', environment: 'production' } },
    ]));
  });
  after(async () => {
    await daemon?.stop();
    await stack?.stop();
  });

  const upload = async (key: string, sql: string, options: string) => {
    const path = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), sql, options);
    return stack.s3.put(BUCKET, key, await readFile(path));
  };

  it('imports parquet, csv, csv.gz, json and ndjson.gz from prefixes three levels deep', async () => {
    await upload('ctr/prediction/2026/11/01/a.parquet', predictionsSql(0, 100), 'FORMAT parquet');
    await upload('ctr/prediction/2026/11/02/b.csv', predictionsSql(100, 50), 'FORMAT csv, HEADER true');
    await upload('ctr/prediction/2026/11/03/c.csv.gz', predictionsSql(150, 40), 'FORMAT csv, HEADER true, COMPRESSION gzip');
    await upload('ctr/prediction/2026/11/04/d.json', predictionsSql(190, 30), 'FORMAT json, ARRAY true');
    await upload('ctr/prediction/2026/11/05/e.ndjson.gz', predictionsSql(220, 20), 'FORMAT json, COMPRESSION gzip');
    const rows = await waitFor('5 files imported', async () => {
      const l = await ledger(daemon, 'preds');
      return l.length === 5 && l.every((r) => r.status === 'succeeded') && l;
    });
    assert.deepEqual(rows.map((r) => [r.key, r.predictions_loaded]), [
      ['ctr/prediction/2026/11/01/a.parquet', 100],
      ['ctr/prediction/2026/11/02/b.csv', 50],
      ['ctr/prediction/2026/11/03/c.csv.gz', 40],
      ['ctr/prediction/2026/11/04/d.json', 30],
      ['ctr/prediction/2026/11/05/e.ndjson.gz', 20],
    ]);
    assert.equal((await counts(daemon)).p, 240);
    const [typed] = await sql(daemon.store)<{ age: number; city: string; region: string; ts: string; label: string; score: number }>(
      `SELECT features.age::INT AS age, features.city AS city, tags.region AS region, strftime(prediction_ts, '%Y-%m-%dT%H:%M:%S') AS ts, prediction_label AS label, prediction_score AS score
       FROM model_predictions.ctr WHERE prediction_id = 'p103'`,
    );
    assert.deepEqual(typed, { age: 23, city: 'Lima', region: 'eu', ts: '2026-11-01T00:01:43', label: 'no_click', score: 0.03 });
  });

  it('imports a file listed on many polls once, and an identical re-upload not at all', async () => {
    await upload('ctr/prediction/once/f.parquet', predictionsSql(300, 25), 'FORMAT parquet');
    await waitFor('f imported', async () => (await ledger(daemon, 'preds')).some((r) => r.key.endsWith('once/f.parquet') && r.status === 'succeeded'));
    const before = await sql(daemon.store)<{ loaded_at: string }>(`SELECT max(loaded_at)::VARCHAR AS loaded_at FROM model_predictions.ctr WHERE prediction_id = 'p300'`);
    await upload('ctr/prediction/once/f.parquet', predictionsSql(300, 25), 'FORMAT parquet'); // same bytes, same ETag
    await new Promise((r) => setTimeout(r, 3500)); // three more polls
    const rows = (await ledger(daemon, 'preds')).filter((r) => r.key.endsWith('once/f.parquet'));
    assert.equal(rows.length, 1);
    assert.equal(rows[0].attempts, 1);
    const after = await sql(daemon.store)<{ loaded_at: string }>(`SELECT max(loaded_at)::VARCHAR AS loaded_at FROM model_predictions.ctr WHERE prediction_id = 'p300'`);
    assert.deepEqual(after, before);
    const [{ n }] = await sql(daemon.store)<{ n: number }>(`SELECT count(*)::INT AS n FROM predictions WHERE prediction_id BETWEEN 'p300' AND 'p324' AND length(prediction_id) = 4`);
    assert.equal(n, 25);
  });

  it('replaces the rows of a rewritten key: v2 with fewer rows leaves no v1 row behind', async () => {
    const key = 'ctr/prediction/rewrite/r.parquet';
    await upload(key, predictionsSql(1000, 30), 'FORMAT parquet');
    await waitFor('v1 imported', async () => (await ledger(daemon, 'preds')).some((r) => r.key === key && r.status === 'succeeded'));
    await upload(key, `SELECT * REPLACE ('v2' AS predicted_label) FROM (${predictionsSql(1000, 10)})`, 'FORMAT parquet');
    const rows = await waitFor('v2 imported', async () => {
      const l = (await ledger(daemon, 'preds')).filter((r) => r.key === key);
      return l.length === 2 && l.every((r) => r.status === 'succeeded') && l;
    });
    assert.deepEqual(rows.map((r) => r.predictions_loaded), [30, 10]);
    const left = await sql(daemon.store)<{ n: number; labels: string }>(
      `SELECT count(*)::INT AS n, string_agg(DISTINCT prediction_label, ',') AS labels FROM model_predictions.ctr WHERE prediction_id BETWEEN 'p1000' AND 'p1029' AND length(prediction_id) = 5`,
    );
    assert.deepEqual(left, [{ n: 10, labels: 'v2' }]);
  });

  it('imports again, once each: a same-size rewrite with a new ETag, content back at an earlier ETag, an object that vanished and came back, a failed version that came back', async () => {
    const csv = (label: string) => `prediction_id,prediction_ts,predicted_label,proba\nq1,2026-11-01T00:00:00Z,${label},0.25\nq2,2026-11-01T00:00:00Z,${label},0.5\n`;
    const metric = async (series: string) =>
      Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(await daemon.metrics.registry.metrics())?.[1] ?? 0);
    const counters = async () => ({
      new: await metric('importer_files_discovered_total{job="preds",kind="new"}'),
      changed: await metric('importer_files_discovered_total{job="preds",kind="changed"}'),
      imported: await metric('importer_files_imported_total{job="preds",outcome="succeeded"}'),
      failed: await metric('importer_files_imported_total{job="preds",outcome="failed"}'),
    });
    const start = await counters();
    const moved = async () => {
      const now = await counters();
      return { new: now.new - start.new, changed: now.changed - start.changed, imported: now.imported - start.imported, failed: now.failed - start.failed };
    };
    const labels = async () => (await sql(daemon.store)<{ id: string; label: string }>(`SELECT prediction_id AS id, prediction_label AS label FROM predictions WHERE prediction_id IN ('q1', 'q2') ORDER BY 1`));
    const versions = async (key: string) => (await sql(daemon.store)<{ etag: string; status: string }>(`SELECT etag, status FROM import_files WHERE key = $1 ORDER BY file_id`, [key]));
    const settled = (key: string, n: number) => waitFor(`${n} settled versions of ${key}`, async () => {
      const v = await versions(key);
      return v.length === n && v.every((r) => r.status !== 'pending') && v;
    });
    const polls = () => metric('importer_poll_duration_seconds_count{job="preds"}');
    /** Two more polls: the second started after the first ended, so it saw the ledger as it is now. */
    const twoPolls = async () => {
      const seen = await polls();
      await waitFor('two more polls', async () => (await polls()) >= seen + 2);
    };
    const key = 'ctr/prediction/change/same-size.csv';
    const etagA = await stack.s3.put(BUCKET, key, csv('click'));
    await waitFor('A imported', async () => (await versions(key)).some((v) => v.status === 'succeeded'));
    await twoPolls(); // A is now among the poller's settled objects, which skip the ledger read
    assert.equal(csv('click').length, csv('nclik').length);
    const etagB = await stack.s3.put(BUCKET, key, csv('nclik'));
    assert.notEqual(etagB, etagA);
    await waitFor('B imported', async () => (await labels()).every((r) => r.label === 'nclik') && (await settled(key, 2)));
    assert.deepEqual(await versions(key), [{ etag: etagA, status: 'succeeded' }, { etag: etagB, status: 'succeeded' }]);
    assert.equal(await stack.s3.put(BUCKET, key, csv('click')), etagA);
    await waitFor('A again', async () => (await labels()).every((r) => r.label === 'click') && (await settled(key, 2)));
    assert.deepEqual(await versions(key), [{ etag: etagA, status: 'succeeded' }, { etag: etagB, status: 'succeeded' }]);
    assert.deepEqual(await labels(), [{ id: 'q1', label: 'click' }, { id: 'q2', label: 'click' }]);

    // Deleted between the listing and the download (the GET is held until it is gone): vanished; then back, same bytes.
    const gone = 'ctr/prediction/change/gone.csv';
    stack.s3.faults.add({ method: 'GET', keyIncludes: gone, delayMs: 1500, times: 1 });
    const etagG = await stack.s3.put(BUCKET, gone, csv('click').replaceAll('q', 'g'));
    await waitFor('the GET of gone.csv', async () => stack.s3.requestLog.some((r) => r.method === 'GET' && r.path.endsWith(gone)));
    await stack.s3.del(BUCKET, gone);
    await waitFor('gone.csv vanished', async () => (await versions(gone))[0]?.status === 'vanished');
    assert.equal(await stack.s3.put(BUCKET, gone, csv('click').replaceAll('q', 'g')), etagG);
    await waitFor('gone.csv imported', async () => (await versions(gone))[0].status === 'succeeded');
    assert.deepEqual(await versions(gone), [{ etag: etagG, status: 'succeeded' }]);

    // Back to content whose import failed: its finished queue entry must not swallow the new attempt.
    const bad = 'ctr/prediction/change/bad.csv';
    const etagBad = await stack.s3.put(BUCKET, bad, 'id,score\nx,0.5\n');
    await settled(bad, 1);
    const etagGood = await stack.s3.put(BUCKET, bad, csv('click').replaceAll('q', 'b'));
    await settled(bad, 2);
    await stack.s3.put(BUCKET, bad, 'id,score\nx,0.5\n');
    await twoPolls();
    assert.deepEqual(await settled(bad, 2), [{ etag: etagBad, status: 'failed' }, { etag: etagGood, status: 'succeeded' }]);

    // More polls change nothing: each version was imported once.
    await twoPolls();
    assert.deepEqual(await moved(), { new: 4, changed: 4, imported: 5, failed: 2 });
    const [{ n }] = await sql(daemon.store)<{ n: number }>(`SELECT count(*)::INT AS n FROM predictions WHERE prediction_id IN ('q1', 'q2', 'g1', 'g2')`);
    assert.equal(n, 4);
  });

  it('joins actuals that arrive before their predictions once the predictions land', async () => {
    await upload('ctr/actuals/2026/11/06/early.csv', actualsSql(5000, 20), 'FORMAT csv, HEADER true');
    await waitFor('actuals imported', async () => (await ledger(daemon, 'acts')).some((r) => r.key.endsWith('early.csv') && r.status === 'succeeded'));
    const joined = async () =>
      (await sql(daemon.store)<{ n: number }>(`SELECT count(actual_label)::INT AS n FROM inferences WHERE prediction_id LIKE 'p50__'`))[0].n;
    assert.equal(await joined(), 0);
    const [{ waiting }] = await sql(daemon.store)<{ waiting: number }>(`SELECT count(*)::INT AS waiting FROM actuals WHERE prediction_id LIKE 'p50__'`);
    assert.equal(waiting, 20);
    await upload('ctr/prediction/2026/11/06/late.parquet', predictionsSql(5000, 30), 'FORMAT parquet');
    await waitFor('predictions joined', async () => (await joined()) === 20);
    const [row] = await sql(daemon.store)(`SELECT prediction_label, actual_label FROM inferences WHERE prediction_id = 'p5004'`);
    assert.deepEqual(row, { prediction_label: 'click', actual_label: 'click' });
  });

  it('the inferences view: a prediction without actuals has empty actual columns; a newer file with the same IDs replaces rows, never doubles them', async () => {
    const view = () => sql(daemon.store)<Record<string, unknown>>(
      `SELECT prediction_id, prediction_label, actual_label, actual_score, relevance_label, relevance_score, actual_ts IS NULL AS no_actual_ts
       FROM inferences WHERE prediction_id LIKE 'p80__' ORDER BY prediction_id`);
    const row = (id: number, label: string, actual: string | null) => ({
      prediction_id: `p${id}`, prediction_label: label, actual_label: actual, actual_score: null, relevance_label: null, relevance_score: null, no_actual_ts: actual === null,
    });
    await upload('ctr/prediction/view/1.parquet', predictionsSql(8000, 5), 'FORMAT parquet');
    await upload('ctr/actuals/view/1.csv', actualsSql(8000, 2), 'FORMAT csv, HEADER true');
    await upload('ctr/actuals-training/view/1.csv', `SELECT prediction_id, 'training' AS label FROM (${actualsSql(8000, 5)})`, 'FORMAT csv, HEADER true');
    await upload('other/actuals/view/1.csv', `SELECT prediction_id, 'other' AS label FROM (${actualsSql(8000, 5)})`, 'FORMAT csv, HEADER true');
    await waitFor('all imported', async () => {
      const done = await sql(daemon.store)(`SELECT 1 FROM import_files WHERE key LIKE '%/view/1.%' AND status = 'succeeded'`);
      return done.length === 4 && (await view()).filter((r) => r.actual_label !== null).length >= 2;
    });
    assert.deepEqual(await view(), [row(8000, 'click', 'click'), row(8001, 'no_click', 'no_click'), row(8002, 'click', null), row(8003, 'no_click', null), row(8004, 'click', null)]);
    // Another file (another key) with some of the same IDs: its rows win, one row per ID.
    await upload('ctr/prediction/view/2.parquet', `SELECT * REPLACE ('v2' AS predicted_label) FROM (${predictionsSql(8003, 4)})`, 'FORMAT parquet');
    await upload('ctr/actuals/view/2.csv', `SELECT prediction_id, 'late' AS label FROM (${actualsSql(8001, 3)})`, 'FORMAT csv, HEADER true');
    await waitFor('the second files imported', async () => (await view()).length === 7 && (await view()).filter((r) => r.actual_label === 'late').length === 3);
    assert.deepEqual(await view(), [
      row(8000, 'click', 'click'), row(8001, 'no_click', 'late'), row(8002, 'click', 'late'), row(8003, 'v2', 'late'), row(8004, 'v2', null), row(8005, 'v2', null), row(8006, 'v2', null),
    ]);
    const [{ p, a }] = await sql(daemon.store)<{ p: number; a: number }>(
      `SELECT (SELECT count(*) FROM predictions WHERE prediction_id LIKE 'p80__')::INT AS p, (SELECT count(*) FROM actuals WHERE prediction_id LIKE 'p80__' AND model_id = 'ctr' AND environment = 'production')::INT AS a`);
    assert.deepEqual({ p, a }, { p: 7, a: 4 });
  });

  it('ignores side files (_SUCCESS, .crc, _temporary/, empty objects) without errors', async () => {
    await stack.s3.put(BUCKET, 'ctr/prediction/side/_SUCCESS', '');
    await stack.s3.put(BUCKET, 'ctr/prediction/side/.part-0.parquet.crc', 'crc bytes');
    await stack.s3.put(BUCKET, 'ctr/prediction/side/_temporary/0/part-0.parquet', 'not yet');
    await stack.s3.put(BUCKET, 'ctr/prediction/side/empty.parquet', '');
    await stack.s3.put(BUCKET, 'ctr/prediction/side/notes.txt', 'hello'); // auto: unknown extension
    await upload('ctr/prediction/side/part-0.parquet', predictionsSql(6000, 5), 'FORMAT parquet');
    await waitFor('part-0 imported', async () => (await ledger(daemon, 'preds')).some((r) => r.key.endsWith('side/part-0.parquet') && r.status === 'succeeded'));
    const side = (await ledger(daemon, 'preds')).filter((r) => r.key.includes('/side/'));
    assert.deepEqual(side.map((r) => r.key), ['ctr/prediction/side/part-0.parquet']);
  });

  it('fails a corrupt parquet and a CSV without the ID column with messages naming them; other files import', async () => {
    const good = await writeFixture(join(stack.tmp.path, 'good.parquet'), predictionsSql(7000, 10), 'FORMAT parquet');
    const bytes = await readFile(good);
    await stack.s3.put(BUCKET, 'ctr/prediction/bad/corrupt.parquet', Buffer.concat([bytes.subarray(0, 200), Buffer.alloc(300, 7), bytes.subarray(-8)]));
    await upload('ctr/prediction/bad/no-id.csv', `SELECT * EXCLUDE (prediction_id) FROM (${predictionsSql(7100, 5)})`, 'FORMAT csv, HEADER true');
    await upload('ctr/prediction/bad/fine.parquet', predictionsSql(7200, 7), 'FORMAT parquet');
    const rows = await waitFor('bad files failed', async () => {
      const l = (await ledger(daemon, 'preds')).filter((r) => r.key.includes('/bad/'));
      return l.length === 3 && l.every((r) => r.status !== 'pending') && l;
    }, 60_000);
    const byKey = Object.fromEntries(rows.map((r) => [r.key.split('/').pop(), r]));
    assert.equal(byKey['fine.parquet'].status, 'succeeded');
    assert.equal(byKey['fine.parquet'].predictions_loaded, 7);
    assert.equal(byKey['corrupt.parquet'].status, 'failed');
    assert.equal(byKey['corrupt.parquet'].error_code, 'IMP_ERR_FORMAT_UNREADABLE');
    // Permanent errors fail at the first attempt (BullMQ's UnrecoverableError), where transient ones would be retried 3 times.
    assert.equal(byKey['corrupt.parquet'].attempts, 1);
    assert.equal(byKey['no-id.csv'].attempts, 1);
    assert.match(byKey['corrupt.parquet'].error_message!, /^ctr\/prediction\/bad\/corrupt\.parquet: cannot be read: /);
    assert.equal(byKey['no-id.csv'].status, 'failed');
    assert.equal(byKey['no-id.csv'].error_code, 'IMP_ERR_SCHEMA_MISSING_COLUMN');
    assert.equal(
      byKey['no-id.csv'].error_message,
      'ctr/prediction/bad/no-id.csv: mapped column "prediction_id" not found; the file has "prediction_ts", "predicted_label", "proba", "feature/age", "feature/city", "tag/region"',
    );
    const [{ n }] = await sql(daemon.store)<{ n: number }>(`SELECT count(*)::INT AS n FROM predictions WHERE prediction_id LIKE 'p71__'`);
    assert.equal(n, 0);
  });
});
