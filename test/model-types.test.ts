import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateConfig } from '../src/config/index.ts';
import type { Daemon } from '../src/daemon.ts';
import { BUCKET, ledger, runDaemon, startStack, STORE_KINDS, waitFor, writeFixture, type Stack, type StoreKind } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';
import { createS3Client } from '../src/source/s3.ts';
import { dryRun, formatDryRun } from '../src/worker/dry-run.ts';

/**
 * The schema fields and model types of the hosted importers beyond the basics, against every store:
 * multiclass actual score maps and threshold scores (Arize), raw inputs and named predictions
 * (Aporia), SHAP values in files of their own, object-detection and generative models.
 */

const TS = `TIMESTAMPTZ '2026-11-20 10:00:00+00'`;
const job = (id: string, model: object, schema: object) => ({ id, source: `s3://${BUCKET}/${id}/`, model, schema });
const jobs = [
  job('mc', { id: 'mc', type: 'multiclass' }, { predictionId: 'pid', timestamp: 'ts', predictionLabel: 'label', predictionScore: 'scores', thresholdScores: 'thr', features: ['n'] }),
  job('mc-acts', { id: 'mc', type: 'multiclass' }, { predictionId: 'pid', actualLabel: 'label', actualScore: 'scores' }),
  job('ap', { id: 'ap', type: 'binary' }, { predictionId: 'id', timestamp: 'ts', rawInputs: ['raw_text'], predictions: { will_buy: 'boolean', proba: 'numeric' } }),
  job('sx', { id: 'sx', type: 'binary' }, { predictionId: 'pid', predictionScore: 'score', shapValues: 'shap/', features: ['age'] }),
  job('sx-shap', { id: 'sx' }, { predictionId: 'pid', shapValues: 'shap/' }),
  job('od', { id: 'od', type: 'object_detection' }, { predictionId: 'pid', timestamp: 'ts', predictionBoxes: { coordinates: 'boxes', categories: 'cats', scores: 'conf' } }),
  job('od-acts', { id: 'od', type: 'object_detection' }, { predictionId: 'pid', actualBoxes: { coordinates: 'boxes', categories: 'cats' } }),
  job('llm', { id: 'llm', type: 'generative' }, {
    predictionId: 'pid', timestamp: 'ts', prompt: { text: 'prompt', vector: 'pv' }, response: { text: 'response' }, tokenCounts: { prompt: 'pt', response: 'rt' },
  }),
];

/** A JSON (or map) column as text, parsed by the test: both stores then compare alike. */
const json = (kind: StoreKind, c: string) => (kind === 'duckdb' ? `CAST(to_json(${c}) AS VARCHAR)` : `CAST(${c} AS TEXT)`);
const parse = (rows: Array<Record<string, unknown>>) =>
  rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'string' && /^[[{]/.test(v) ? JSON.parse(v) : v])));

for (const kind of STORE_KINDS) {
  describe(`schema fields and model types: ${kind}`, () => {
    let stack: Stack;
    let daemon: Daemon;
    before(async () => {
      stack = await startStack({ store: kind });
      daemon = await runDaemon(stack.config(jobs));
    });
    after(async () => {
      await daemon?.stop();
      await stack?.stop();
    });
    const q = (text: string) => sql(daemon.store)(text).then(parse);
    const put = async (key: string, query: string) => {
      const path = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), query, 'FORMAT parquet');
      await stack.s3.put(BUCKET, key, await readFile(path));
    };
    const done = (jobId: string, n = 1) => waitFor(`${jobId} imported`, async () => {
      const l = await ledger(daemon, jobId);
      return l.length >= n && l.every((r) => r.status !== 'pending') && l;
    });
    const rejected = (jobId: string) => sql(daemon.store)<{ r: number; col: string; code: string }>(
      `SELECT CAST(row_number AS INT) AS r, column_name AS col, code FROM rejected_rows WHERE job_id = '${jobId}' ORDER BY r`);
    const outcome = (l: Awaited<ReturnType<typeof ledger>>) => l.map((r) => [r.key.split('/').pop(), r.status, r.predictions_loaded, r.actuals_loaded, r.rows_rejected]);

    it('keeps multiclass actual score maps and threshold scores, the scalar actual score being the actual class\'s', async () => {
      await put('mc/a.parquet', `SELECT 'm1' AS pid, ${TS} AS ts, 'cat' AS label, MAP {'cat': 0.7, 'dog': 0.3} AS scores, MAP {'cat': 0.5, 'dog': 0.6} AS thr, 1 AS n
        UNION ALL SELECT 'm2', ${TS}, 'dog', MAP {'cat': 0.1, 'dog': 0.9}, MAP {'cat': 0.5, 'dog': 'Infinity'::DOUBLE}, 2`);
      await put('mc-acts/a.parquet', `SELECT 'm1' AS pid, 'dog' AS label, MAP {'cat': 0.0, 'dog': 1.0} AS scores
        UNION ALL SELECT 'm2', NULL, MAP {'cat': 0.25, 'dog': 0.75} UNION ALL SELECT 'm3', 'cat', MAP {'cat': 'NaN'::DOUBLE}`);
      assert.deepEqual(outcome(await done('mc')), [['a.parquet', 'partially_succeeded', 1, 0, 1]]);
      assert.deepEqual(outcome(await done('mc-acts')), [['a.parquet', 'partially_succeeded', 0, 2, 1]]);
      assert.deepEqual(await rejected('mc'), [{ r: 2, col: 'thr', code: 'IMP_ERR_ROW_SCORE_NOT_FINITE' }]);
      assert.deepEqual(await rejected('mc-acts'), [{ r: 3, col: 'scores', code: 'IMP_ERR_ROW_SCORE_NOT_FINITE' }]);
      assert.deepEqual(await q(`SELECT prediction_id AS id, prediction_score AS s, ${json(kind, 'threshold_scores')} AS thr, actual_label AS al, actual_score AS a,
          ${json(kind, 'actual_scores')} AS scores FROM inferences WHERE model_id = 'mc' ORDER BY 1`),
        [{ id: 'm1', s: 0.7, thr: { cat: 0.5, dog: 0.6 }, al: 'dog', a: 1, scores: { cat: 0, dog: 1 } }]);
      // An actual without a label takes its highest class score.
      assert.deepEqual(await q(`SELECT prediction_id AS id, actual_score AS a FROM actuals WHERE model_id = 'mc' ORDER BY 1`), [{ id: 'm1', a: 1 }, { id: 'm2', a: 0.75 }]);
    });

    it('keeps Aporia raw inputs (not as features) and several typed named predictions', async () => {
      await put('ap/a.parquet', `SELECT 'a1' AS id, ${TS} AS ts, 'I want cover' AS raw_text, 'true' AS will_buy, 0.8 AS proba, 10 AS amount
        UNION ALL SELECT 'a2', ${TS}, 'hm', 'maybe', 0.4, 11
        UNION ALL SELECT 'a3', ${TS}, 'no', NULL, NULL, 12
        UNION ALL SELECT 'a4', ${TS}, NULL, 'false', NULL, 13`);
      assert.deepEqual(outcome(await done('ap')), [['a.parquet', 'partially_succeeded', 2, 0, 2]]);
      assert.deepEqual(await rejected('ap'), [{ r: 2, col: 'will_buy', code: 'IMP_ERR_ROW_VALUE_INVALID' }, { r: 3, col: 'will_buy', code: 'IMP_ERR_ROW_PREDICTION_MISSING' }]);
      assert.deepEqual(await q(`SELECT prediction_id AS id, prediction_label AS l, ${json(kind, 'features')} AS f, ${json(kind, 'raw_inputs')} AS raw,
          ${json(kind, 'named_predictions')} AS p FROM predictions WHERE model_id = 'ap' ORDER BY 1`), [
        { id: 'a1', l: null, f: { amount: 10 }, raw: { raw_text: 'I want cover' }, p: { will_buy: true, proba: 0.8 } },
        { id: 'a4', l: null, f: { amount: 13 }, raw: { raw_text: null }, p: { will_buy: false, proba: null } },
      ]);
    });

    it('matches SHAP values sent in files of their own to predictions by ID, whichever arrives first', async () => {
      // SHAP first for s1 and s2 (s9 never gets a prediction); a row without any value is rejected.
      await put('sx-shap/early.parquet', `SELECT 's1' AS pid, 0.5 AS "shap/age" UNION ALL SELECT 's2', -0.25 UNION ALL SELECT 's9', 0.1 UNION ALL SELECT 's3', NULL`);
      assert.deepEqual(outcome(await done('sx-shap')), [['early.parquet', 'partially_succeeded', 3, 0, 1]]);
      assert.deepEqual(await rejected('sx-shap'), [{ r: 4, col: 'shap/age', code: 'IMP_ERR_ROW_SHAP_MISSING' }]);
      await put('sx/p.parquet', `SELECT 's' || i AS pid, i / 10 AS score, 30 + i AS age, CASE WHEN i = 3 THEN 0.3 END AS "shap/age" FROM range(1, 4) t(i)`);
      await done('sx');
      const shap = () => q(`SELECT prediction_id AS id, ${json(kind, 'shap')} AS shap FROM inferences WHERE model_id = 'sx' ORDER BY 1`);
      assert.deepEqual(await shap(), [{ id: 's1', shap: { age: 0.5 } }, { id: 's2', shap: { age: -0.25 } }, { id: 's3', shap: { age: 0.3 } }]);
      // A later SHAP file for s3 takes the place of the values sent with its prediction; rewriting the early one replaces its rows.
      await put('sx-shap/late.parquet', `SELECT 's3' AS pid, 0.75 AS "shap/age"`);
      await put('sx-shap/early.parquet', `SELECT 's1' AS pid, 0.125 AS "shap/age"`);
      await done('sx-shap', 3);
      assert.deepEqual(await shap(), [{ id: 's1', shap: { age: 0.125 } }, { id: 's2', shap: { age: null } }, { id: 's3', shap: { age: 0.75 } }]);
      assert.deepEqual(await q(`SELECT count(*) AS n FROM shap_values WHERE model_id = 'sx'`).then((r) => Number(r[0].n)), 2);
    });

    it('imports object-detection boxes for predictions and actuals and rejects malformed ones', async () => {
      await put('od/a.parquet', `SELECT 'o1' AS pid, ${TS} AS ts, [[0, 0, 10, 20], [5, 5, 6, 7]] AS boxes, ['cat', 'dog'] AS cats, [0.9, 0.4] AS conf
        UNION ALL SELECT 'o2', ${TS}, [[0, 0, 10]], ['cat'], [0.9]
        UNION ALL SELECT 'o3', ${TS}, [[0, 0, 10, 20]], ['cat', 'dog'], [0.9]
        UNION ALL SELECT 'o4', ${TS}, [[0, 0, 10, 20]], ['cat'], [0.9, 0.1]
        UNION ALL SELECT 'o5', ${TS}, [[10, 0, 0, 20]], ['cat'], [0.9]
        UNION ALL SELECT 'o6', ${TS}, NULL, NULL, NULL`);
      await put('od-acts/a.parquet', `SELECT 'o1' AS pid, [[1, 1, 9, 19]] AS boxes, ['cat'] AS cats UNION ALL SELECT 'o7', NULL, NULL`);
      assert.deepEqual(outcome(await done('od')), [['a.parquet', 'partially_succeeded', 1, 0, 5]]);
      assert.deepEqual(outcome(await done('od-acts')), [['a.parquet', 'partially_succeeded', 0, 1, 1]]);
      assert.deepEqual(await rejected('od'), [
        { r: 2, col: 'boxes', code: 'IMP_ERR_ROW_BOUNDING_BOX' },
        { r: 3, col: 'cats', code: 'IMP_ERR_ROW_BOUNDING_BOX' },
        { r: 4, col: 'conf', code: 'IMP_ERR_ROW_BOUNDING_BOX' },
        { r: 5, col: 'boxes', code: 'IMP_ERR_ROW_BOUNDING_BOX' },
        { r: 6, col: 'boxes', code: 'IMP_ERR_ROW_PREDICTION_MISSING' },
      ]);
      assert.deepEqual(await rejected('od-acts'), [{ r: 2, col: 'boxes', code: 'IMP_ERR_ROW_ACTUAL_MISSING' }]);
      assert.deepEqual(await q(`SELECT prediction_id AS id, ${json(kind, 'prediction_boxes')} AS p, ${json(kind, 'actual_boxes')} AS a FROM inferences WHERE model_id = 'od'`), [{
        id: 'o1',
        p: { coordinates: [[0, 0, 10, 20], [5, 5, 6, 7]], categories: ['cat', 'dog'], scores: [0.9, 0.4] },
        a: { coordinates: [[1, 1, 9, 19]], categories: ['cat'], scores: null },
      }]);
    });

    it('imports a generative model\'s prompt, response, prompt vector and token counts', async () => {
      await put('llm/a.parquet', `SELECT 'g1' AS pid, ${TS} AS ts, 'Why is the sky blue?' AS prompt, [0.1, 0.2] AS pv, 'Rayleigh scattering.' AS response, 6 AS pt, 3 AS rt
        UNION ALL SELECT 'g2', ${TS}, 'Hi', [0.3, 0.4], 'Hello', -3, 1
        UNION ALL SELECT 'g3', ${TS}, 'Hi', [0.3, 0.4], NULL, 1, 0`);
      assert.deepEqual(outcome(await done('llm')), [['a.parquet', 'partially_succeeded', 1, 0, 2]]);
      assert.deepEqual(await rejected('llm'), [{ r: 2, col: 'pt', code: 'IMP_ERR_ROW_VALUE_INVALID' }, { r: 3, col: 'response', code: 'IMP_ERR_ROW_PREDICTION_MISSING' }]);
      assert.deepEqual(await q(`SELECT prediction_id AS id, ${json(kind, 'llm')} AS llm FROM predictions WHERE model_id = 'llm'`), [{
        id: 'g1', llm: { prompt: 'Why is the sky blue?', prompt_vector: [0.1, 0.2], response: 'Rayleigh scattering.', prompt_tokens: 6, response_tokens: 3 },
      }]);
    });

    // The dry run opens no store: once is enough.
    it('reports the new fields and their row errors in the dry run', { skip: kind !== STORE_KINDS[0] }, async () => {
      const config = stack.config(jobs);
      const s3 = createS3Client(config.s3);
      const check = (jobId: string, key: string) => dryRun(config, config.jobs.find((j) => j.id === jobId)!, s3, { key });
      const od = await check('od', 'od/a.parquet');
      assert.deepEqual([od.status, od.fields, od.errors.map((e) => [e.code, e.row, e.column])], ['invalid', { prediction_boxes: { coordinates: 'boxes', categories: 'cats', scores: 'conf' } }, [
        ['IMP_ERR_ROW_BOUNDING_BOX', 2, 'boxes'], ['IMP_ERR_ROW_BOUNDING_BOX', 3, 'cats'], ['IMP_ERR_ROW_BOUNDING_BOX', 4, 'conf'], ['IMP_ERR_ROW_BOUNDING_BOX', 5, 'boxes'],
        ['IMP_ERR_ROW_PREDICTION_MISSING', 6, 'boxes'],
      ]]);
      const ap = await check('ap', 'ap/a.parquet');
      assert.deepEqual(ap.fields, { features: { amount: 'amount' }, raw_inputs: { raw_text: 'raw_text' }, named_predictions: { will_buy: 'will_buy', proba: 'proba' } });
      assert.match(formatDryRun(ap), /\n {2}fields {3}raw_inputs: raw_text\n {2}fields {3}named_predictions: will_buy, proba\n/);
      const shap = await check('sx-shap', 'sx-shap/late.parquet');
      assert.deepEqual([shap.status, shap.shapOnly, shap.fields], ['ok', true, { shap: { age: 'shap/age' } }]);
      assert.match(formatDryRun(shap), /fields {3}shap: age \(shap\/age\)\n {2}fields {3}SHAP values alone, matched to predictions by prediction ID/);
    });
  });
}

describe('config of the model types', () => {
  it('checks the fields object-detection, generative and multiclass threshold models need', () => {
    const base = { source: 's3://bucket/x/' };
    assert.throws(
      () => validateConfig({
        jobs: [
          { ...base, id: 'o', model: { id: 'o', type: 'object_detection' }, schema: { predictionId: 'id', predictionLabel: 'y', predictionBoxes: { coordinates: 'b', categories: 'c' } } },
          { ...base, id: 'g', model: { id: 'g', type: 'generative' }, schema: { predictionId: 'id', prompt: { text: 'p' } } },
          { ...base, id: 'b', model: { id: 'b', type: 'binary' }, schema: { predictionId: 'id', predictionScore: 's', thresholdScores: 't', actualBoxes: { coordinates: 'b', categories: 'c' }, tokenCounts: {} } },
          { ...base, id: 's', model: { id: 's' }, schema: { predictionId: 'id' } },
        ],
      }),
      {
        message: [
          'config has 6 errors:',
          '  jobs[0].schema: an object-detection model maps its predictions and actuals as predictionBoxes and actualBoxes, not labels or scores',
          '  jobs[1].schema.response: required for a generative model (the response text, optionally its vector)',
          '  jobs[2].schema.actualBoxes: bounding boxes belong to object-detection models; set model.type: object_detection',
          '  jobs[2].schema.tokenCounts: prompts, responses and token counts belong to generative models; set model.type: generative',
          '  jobs[2].schema.thresholdScores: threshold scores belong to multiclass models; set model.type: multiclass',
          '  jobs[3].schema: maps neither predictions (predictionLabel/predictionScore) nor actuals (actualLabel/actualScore) nor SHAP values (shapValues)',
        ].join('\n'),
      },
    );
  });
});
