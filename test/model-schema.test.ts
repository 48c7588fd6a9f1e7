import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateConfig } from '../src/config/index.ts';
import type { Daemon } from '../src/daemon.ts';
import { BUCKET, ledger, runDaemon, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

const TS = `TIMESTAMPTZ '2026-11-20 10:00:00+00'`;
const jobs = [
  {
    id: 'typed', source: `s3://${BUCKET}/typed/`, model: { id: 'typed', type: 'binary' },
    schema: {
      predictionId: 'pid', timestamp: 'ts', predictionLabel: 'label', features: 'f/', shapValues: 'shap/',
      featureTypes: { age: 'numeric', member: 'boolean', since: 'datetime', zip: 'categorical', img: { tensor: { dimensions: [2, 2] } } },
      embeddings: [{ name: 'review', vector: 'emb', rawData: 'text', dimension: 3 }],
    },
  },
  {
    id: 'rank', source: `s3://${BUCKET}/rank/`, model: { id: 'search', type: 'ranking' },
    schema: { predictionId: 'pid', timestamp: 'ts', predictionGroupId: 'query', rank: 'pos', predictionScore: 'score' },
  },
  { id: 'rank-acts', source: `s3://${BUCKET}/rank-acts/`, model: { id: 'search', type: 'ranking' }, schema: { predictionId: 'pid', relevanceScore: 'rel' } },
  {
    id: 'multi', source: `s3://${BUCKET}/multi/`, model: { id: 'multi', type: 'multiclass' },
    schema: { predictionId: 'pid', timestamp: 'ts', predictionLabel: 'label', predictionScore: 'scores', features: [] as string[] },
  },
];
jobs[3].schema.features = ['n'];

describe('model schemas', () => {
  let stack: Stack;
  let daemon: Daemon;
  before(async () => {
    stack = await startStack();
    daemon = await runDaemon(stack.config(jobs));
  });
  after(async () => {
    await daemon?.stop();
    await stack?.stop();
  });

  const put = async (key: string, sql: string) => {
    const path = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), sql, 'FORMAT parquet');
    await stack.s3.put(BUCKET, key, await readFile(path));
  };
  const done = (job: string) => waitFor(`${job} imported`, async () => {
    const l = await ledger(daemon, job);
    return l.length > 0 && l.every((r) => r.status !== 'pending') && l;
  });
  const rejected = (job: string) => sql(daemon.store)<{ r: number; col: string; code: string }>(
    `SELECT row_number::INT AS r, column_name AS col, code FROM rejected_rows WHERE job_id = $1 ORDER BY r`, [job]);

  it('casts declared feature types, keeps SHAP values and embeddings, and rejects values that do not fit', async () => {
    await put('typed/a.parquet', `
      SELECT 'a' AS pid, ${TS} AS ts, 'yes' AS label, '42' AS "f/age", 'true' AS "f/member", '2026-01-02T03:04:05Z' AS "f/since", 1234 AS "f/zip",
             [[1, 2], [3, 4]] AS "f/img", 0.25 AS "shap/age", [0.1, 0.2, 0.3] AS emb, 'great' AS text
      UNION ALL SELECT 'b', ${TS}, 'no', 'old', 'true', '2026-01-02T03:04:05Z', 1, [[1, 2], [3, 4]], 0.5, [0.1, 0.2, 0.3], 'bad age'
      UNION ALL SELECT 'c', ${TS}, 'no', '7', 'maybe', '2026-01-02T03:04:05Z', 1, [[1, 2], [3, 4]], 0.5, [0.1, 0.2, 0.3], 'bad bool'
      UNION ALL SELECT 'd', ${TS}, 'no', '7', 'false', 'someday', 1, [[1, 2], [3, 4]], 0.5, [0.1, 0.2, 0.3], 'bad date'
      UNION ALL SELECT 'e', ${TS}, 'no', '7', 'false', '2026-01-02T03:04:05Z', 1, [[1, 2, 3]], 0.5, [0.1, 0.2, 0.3], 'bad tensor'
      UNION ALL SELECT 'f', ${TS}, 'no', '7', 'false', '2026-01-02T03:04:05Z', 1, [[1, 2], [3, 4]], 0.5, [0.1, 0.2], 'short vector'`);
    const [file] = await done('typed');
    assert.deepEqual([file.status, file.predictions_loaded, file.rows_rejected], ['partially_succeeded', 1, 5]);
    assert.deepEqual(await rejected('typed'), [
      { r: 2, col: 'f/age', code: 'IMP_ERR_ROW_VALUE_INVALID' },
      { r: 3, col: 'f/member', code: 'IMP_ERR_ROW_VALUE_INVALID' },
      { r: 4, col: 'f/since', code: 'IMP_ERR_ROW_VALUE_INVALID' },
      { r: 5, col: 'f/img', code: 'IMP_ERR_ROW_TENSOR_SHAPE' },
      { r: 6, col: 'emb', code: 'IMP_ERR_ROW_EMBEDDING_DIMENSION' },
    ]);
    const types = Object.fromEntries((await sql(daemon.store)<{ column_name: string; column_type: string }>(`SELECT column_name, column_type FROM (DESCRIBE model_predictions.typed)`)).map((r) => [r.column_name, r.column_type]));
    assert.equal(types.features, 'STRUCT(age DOUBLE, member BOOLEAN, since TIMESTAMP WITH TIME ZONE, zip VARCHAR, img DOUBLE[])');
    assert.equal(types.shap, 'STRUCT(age DOUBLE)');
    assert.equal(types.embeddings, 'STRUCT(review STRUCT(vector DOUBLE[], raw_data VARCHAR, link VARCHAR))');
    const [row] = await sql(daemon.store)(`SELECT features.age AS age, features.member AS member, strftime(features.since, '%Y-%m-%d') AS since, features.zip AS zip,
      features.img AS img, shap.age AS shap_age, embeddings.review.vector AS vec, embeddings.review.raw_data AS raw FROM model_predictions.typed`);
    assert.deepEqual(row, { age: 42, member: true, since: '2026-01-02', zip: '1234', img: [1, 2, 3, 4], shap_age: 0.25, vec: [0.1, 0.2, 0.3], raw: 'great' });
  });

  it('imports ranking groups with ranks 1-100 and joins relevance actuals', async () => {
    await put('rank/a.parquet', `SELECT 'q1-' || i AS pid, ${TS} AS ts, 'q1' AS query, i AS pos, 1.0 / i AS score FROM range(1, 4) t(i)
      UNION ALL SELECT 'q2-0', ${TS}, 'q2', 0, 0.1 UNION ALL SELECT 'q2-101', ${TS}, 'q2', 101, 0.1 UNION ALL SELECT 'q3-1', ${TS}, NULL, 1, 0.1`);
    await put('rank-acts/a.parquet', `SELECT 'q1-' || i AS pid, CASE WHEN i = 1 THEN 1.0 ELSE 0.0 END AS rel FROM range(1, 4) t(i)`);
    const [preds] = await done('rank');
    await done('rank-acts');
    assert.deepEqual([preds.predictions_loaded, preds.rows_rejected], [3, 3]);
    assert.deepEqual(await rejected('rank'), [
      { r: 4, col: 'pos', code: 'IMP_ERR_ROW_RANK_OUT_OF_RANGE' },
      { r: 5, col: 'pos', code: 'IMP_ERR_ROW_RANK_OUT_OF_RANGE' },
      { r: 6, col: 'query', code: 'IMP_ERR_ROW_GROUP_ID_MISSING' },
    ]);
    const joined = await sql(daemon.store)(`SELECT prediction_group_id AS g, rank, relevance_score AS rel FROM inferences WHERE model_id = 'search' ORDER BY rank`);
    assert.deepEqual(joined, [{ g: 'q1', rank: 1, rel: 1 }, { g: 'q1', rank: 2, rel: 0 }, { g: 'q1', rank: 3, rel: 0 }]);
  });

  it('keeps multiclass score maps and takes the predicted class score', async () => {
    await put('multi/a.parquet', `SELECT 'm1' AS pid, ${TS} AS ts, 'cat' AS label, MAP {'cat': 0.7, 'dog': 0.2, 'eel': 0.1} AS scores, 1 AS n
      UNION ALL SELECT 'm2', ${TS}, NULL, MAP {'cat': 0.3, 'dog': 0.6, 'eel': 0.1}, 2
      UNION ALL SELECT 'm3', ${TS}, 'dog', MAP {'cat': 'NaN'::DOUBLE, 'dog': 0.6}, 3`);
    const [file] = await done('multi');
    assert.deepEqual([file.predictions_loaded, file.rows_rejected], [2, 1]);
    assert.deepEqual(await rejected('multi'), [{ r: 3, col: 'scores', code: 'IMP_ERR_ROW_SCORE_NOT_FINITE' }]);
    const rows = await sql(daemon.store)(`SELECT prediction_id AS id, prediction_score AS s, map_keys(prediction_scores) AS classes FROM model_predictions.multi ORDER BY 1`);
    assert.deepEqual(rows, [{ id: 'm1', s: 0.7, classes: ['cat', 'dog', 'eel'] }, { id: 'm2', s: 0.6, classes: ['cat', 'dog', 'eel'] }]);
  });

  it('checks the fields each model type needs in the config', () => {
    const base = { source: 's3://bucket/x/', schema: { predictionId: 'id' } };
    assert.throws(
      () => validateConfig({
        jobs: [
          { ...base, id: 'r', model: { id: 'r', type: 'regression' }, schema: { predictionId: 'id', predictionLabel: 'y' } },
          { ...base, id: 'k', model: { id: 'k', type: 'ranking' }, schema: { predictionId: 'id', predictionScore: 's' } },
          { ...base, id: 'b', model: { id: 'b', batchId: 'x' }, schema: { predictionId: 'id', predictionLabel: 'y', rank: 'r' } },
        ],
      }),
      {
        message: [
          'config has 5 errors:',
          '  jobs[0].schema.predictionScore: required for a regression model (the predicted value)',
          '  jobs[1].schema.predictionGroupId: required for a ranking model',
          '  jobs[1].schema.rank: required for a ranking model',
          '  jobs[2].model.type: predictionGroupId, rank and relevance fields need model.type: ranking',
          '  jobs[2].model.batchId: batch IDs belong to training and validation data; set model.environment',
        ].join('\n'),
      },
    );
  });
});
