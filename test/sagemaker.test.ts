import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { Daemon } from '../src/daemon.ts';
import { unpackRecord } from '../src/formats/sagemaker.ts';
import { BUCKET, ledger, runDaemon, startStack, waitFor, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

const CORPUS = new URL('../../shared/corpus/sagemaker-capture/', import.meta.url).pathname;
const capture = (id: string, prefix: string, model: string, extra: Record<string, unknown> = {}, schema: Record<string, unknown> = {}) => ({
  id, source: `s3://${BUCKET}/${prefix}/`, format: 'sagemaker-capture', model: { id: model },
  schema: { predictionId: 'inference_id', features: 'feature/', ...schema }, ...extra,
});
const groundTruth = (id: string, prefix: string, model: string) => ({
  id, source: `s3://${BUCKET}/${prefix}/`, format: 'sagemaker-ground-truth', model: { id: model }, schema: { predictionId: 'inference_id', actualLabel: 'label' },
});

describe('SageMaker Data Capture and ground truth', () => {
  let stack: Stack;
  let daemon: Daemon;
  before(async () => {
    stack = await startStack();
    daemon = await runDaemon(stack.config([
      capture('sdk-csv', 'sdk-csv/capture', 'sdk-csv', { capture: { featureNames: ['a', 'b', 'c', 'd', 'e', 'f', 'g'] } }, { predictionScore: 'score' }),
      groundTruth('sdk-csv-gt', 'sdk-csv/groundtruth', 'sdk-csv'),
      // Captured in 2019: older than the default 5-year window.
      capture('sdk-json', 'sdk-json', 'sdk-json', { timestamps: { maxAge: '10y' } }, { timestamp: 'inference_time', predictionScore: 'score' }),
      capture('intro', 'intro/capture', 'churn', {}, { timestamp: 'inference_time', predictionScore: 'score' }),
      groundTruth('intro-gt', 'intro/groundtruth', 'churn'),
      capture('clarify', 'clarify', 'clarify', {}, { timestamp: 'inference_time', predictionLabel: 'predicted_label', predictionScore: 'score' }),
      capture('merged', 'merged', 'merged', {}, { timestamp: 'inference_time', predictionLabel: 'predicted_label', predictionScore: 'score', actualLabel: 'label' }),
    ]));
    const files: Array<[string, string]> = [
      ['sdk-csv/capture/2026/11/20/00/python-sdk-capture-template.jsonl', 'python-sdk-capture-template.jsonl'],
      ['sdk-csv/groundtruth/2026/11/20/01/python-sdk-actuals-groundtruth.jsonl', 'python-sdk-actuals-groundtruth.jsonl'],
      ['sdk-json/ep/AllTraffic/2019/11/24/07/python-sdk-captured-data.jsonl', 'python-sdk-captured-data.jsonl'],
      ['intro/capture/ep/AllTraffic/2022/04/18/00/intro.jsonl', 'examples-model-monitor-intro-csv-capture.jsonl'],
      ['intro/groundtruth/2022/04/18/01/a.jsonl', 'examples-groundtruth-01d3c1a8-aa99-4149-9d5e-78bea047a788.jsonl'],
      ['intro/groundtruth/2022/04/18/01/b.jsonl', 'examples-groundtruth-01f96064-3ed9-4c96-87d9-c548cf03bf99.jsonl'],
      ['clarify/ep/AllTraffic/2024/01/19/19/json.jsonl', 'examples-clarify-endpoint-json-capture.jsonl'],
      ['clarify/ep/AllTraffic/2023/01/19/05/jsonlines.jsonl', 'examples-clarify-endpoint-jsonlines-capture.jsonl'],
      ['merged/2024/01/19/20/merged.jsonl', 'examples-clarify-merged-with-inferenceId.jsonl'],
    ];
    for (const [key, name] of files) await stack.s3.put(BUCKET, key, await readFile(`${CORPUS}${name}`));
    await waitFor('every capture file imported', async () => {
      const rows = await sql(daemon.store)<{ n: number; pending: number }>(`SELECT count(*)::INT AS n, count(*) FILTER (status = 'pending')::INT AS pending FROM import_files`);
      return rows[0].n === files.length && rows[0].pending === 0;
    }, 60_000);
  });
  after(async () => {
    await daemon?.stop();
    await stack?.stop();
  });

  const summary = async (model: string) => (await sql(daemon.store)<{ p: number; a: number; j: number }>(
    `SELECT (SELECT count(*) FROM predictions WHERE model_id = $1)::INT AS p, (SELECT count(*) FROM actuals WHERE model_id = $1)::INT AS a,
            (SELECT count(*) FROM inferences WHERE model_id = $1 AND actual_label IS NOT NULL)::INT AS j`, [model]))[0];

  it('imports CSV captures with named features and joins their ground truth by eventId', async () => {
    assert.deepEqual(await summary('sdk-csv'), { p: 44, a: 44, j: 44 });
    const [row] = await sql(daemon.store)(`SELECT prediction_id, prediction_score, to_json(features)::VARCHAR AS f FROM model_predictions."sdk-csv" WHERE prediction_id = '74b0dd56-e7c8-368e-94b1-14a138a96000'`);
    assert.deepEqual(row, { prediction_id: '74b0dd56-e7c8-368e-94b1-14a138a96000', prediction_score: 0.302709460258, f: '{"a":9,"b":45,"c":45,"d":42,"e":7,"f":5,"g":0}' });
    assert.deepEqual(await sql(daemon.store)(`SELECT actual_label, count(*)::INT AS n FROM actuals WHERE model_id = 'sdk-csv' GROUP BY 1 ORDER BY 1`), [{ actual_label: '0', n: 10 }, { actual_label: '1', n: 34 }]);
  });

  it('gives each of several inferences in one record its own ID, <id>_<index>', async () => {
    assert.deepEqual(await summary('sdk-json'), { p: 6, a: 0, j: 0 });
    const rows = await sql(daemon.store)(`SELECT prediction_id, prediction_score, strftime(prediction_ts, '%Y-%m-%dT%H:%M:%SZ') AS ts FROM model_predictions."sdk-json" ORDER BY prediction_ts, prediction_id LIMIT 3`);
    assert.deepEqual(rows, [
      { prediction_id: '12b73486-e916-45de-9d82-7fa23d4a39a6_0', prediction_score: 3.5, ts: '2019-11-24T07:30:50Z' },
      { prediction_id: '12b73486-e916-45de-9d82-7fa23d4a39a6_1', prediction_score: 4, ts: '2019-11-24T07:30:50Z' },
      { prediction_id: '12b73486-e916-45de-9d82-7fa23d4a39a6_2', prediction_score: 5.5, ts: '2019-11-24T07:30:50Z' },
    ]);
    assert.deepEqual(await summary('clarify'), { p: 6, a: 0, j: 0 }); // 1 + 2 JSON instances, 1 + 2 JSON Lines
    const ids = await sql(daemon.store)<{ id: string }>(`SELECT prediction_id AS id FROM model_predictions.clarify ORDER BY 1`);
    assert.deepEqual(ids.map((r) => r.id.replace(/^[0-9a-f-]{36}/, '<uuid>')).sort(), ['<uuid>', '<uuid>', '<uuid>_0', '<uuid>_0', '<uuid>_1', '<uuid>_1']);
    const [jsonl] = await sql(daemon.store)(`SELECT prediction_label, prediction_score, len(json_keys(features::JSON))::INT AS features FROM model_predictions.clarify WHERE prediction_id = '40394cfe-37c3-4abb-b22c-dd7accbe9608'`);
    assert.deepEqual(jsonl, { prediction_label: '1', prediction_score: 0.989977359771728, features: 14 });
  });

  it('reads the 69-feature intro capture, ground truth keyed by eventId, and a merged record with inferenceId', async () => {
    assert.deepEqual((await summary('churn')).p, 3);
    const churn = await sql(daemon.store)(`SELECT len(json_keys(to_json(features)))::INT AS n, round(prediction_score, 4) AS s FROM model_predictions.churn ORDER BY s`);
    assert.deepEqual(churn, [{ n: 69, s: 0.0179 }, { n: 69, s: 0.0364 }, { n: 69, s: 0.3791 }]);
    assert.deepEqual((await summary('churn')).a, 2);
    assert.deepEqual(await summary('merged'), { p: 334, a: 334, j: 334 });
    const [first] = await sql(daemon.store)(`SELECT prediction_id, actual_label FROM inferences WHERE model_id = 'merged' ORDER BY prediction_id LIMIT 1`);
    assert.deepEqual(first, { prediction_id: '7_0', actual_label: '0' });
    const l = await ledger(daemon, 'sdk-csv');
    assert.deepEqual(l.map((r) => [r.status, r.rows_read]), [['succeeded', 44]]);
  });

  it('reads CSV payloads as RFC 4180: commas and line breaks inside quotes, escaped quotes', () => {
    const rows = unpackRecord({
      captureData: {
        endpointInput: { observedContentType: 'text/csv', encoding: 'CSV', data: '"Self-emp, not inc",37\n"say ""hi""\nthere", 5 ,x' },
        endpointOutput: { observedContentType: 'text/csv', encoding: 'CSV', data: '0.25\n"0.75"' },
      },
      eventMetadata: { eventId: 'e2' },
    }, ['workclass', 'age', 'note'], 'f: line 2');
    assert.deepEqual(rows, [
      { inference_id: 'e2_0', event_id: 'e2', inference_time: null, 'feature/workclass': 'Self-emp, not inc', 'feature/age': 37, score: 0.25 },
      { inference_id: 'e2_1', event_id: 'e2', inference_time: null, 'feature/workclass': 'say "hi"\nthere', 'feature/age': 5, 'feature/note': 'x', predicted_label: '0.75' },
    ]);
    assert.throws(
      () => unpackRecord({ captureData: { endpointInput: { observedContentType: 'text/csv', encoding: 'CSV', data: '"open,1' } }, eventMetadata: { eventId: 'e' } }, undefined, 'f.jsonl: line 4'),
      { code: 'IMP_ERR_FORMAT_UNREADABLE', message: 'f.jsonl: line 4 endpointInput: CSV data has a quote opened at character 1 and never closed' },
    );
    assert.throws(
      () => unpackRecord({ captureData: { endpointInput: { observedContentType: 'text/csv', encoding: 'CSV', data: '"a"b,1' } }, eventMetadata: { eventId: 'e' } }, undefined, 'f.jsonl: line 5'),
      { code: 'IMP_ERR_FORMAT_UNREADABLE', message: 'f.jsonl: line 5 endpointInput: CSV data has text after the closing quote at character 4; a quote inside a quoted cell is written ""' },
    );
  });

  it('unpacks BASE64 payloads and refuses content types it cannot read', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const rows = unpackRecord({
      captureData: {
        endpointInput: { observedContentType: 'text/csv', encoding: 'BASE64', data: b64('1,2\n3,4') },
        endpointOutput: { observedContentType: 'application/json', encoding: 'BASE64', data: b64('{"predictions":[0.1,0.9]}') },
      },
      eventMetadata: { eventId: 'e1', inferenceId: 'inf', inferenceTime: '2026-11-20T10:00:00Z' },
    }, ['x', 'y'], 'f: line 1');
    assert.deepEqual(rows, [
      { inference_id: 'inf_0', event_id: 'e1', inference_time: '2026-11-20T10:00:00Z', 'feature/x': 1, 'feature/y': 2, score: 0.1 },
      { inference_id: 'inf_1', event_id: 'e1', inference_time: '2026-11-20T10:00:00Z', 'feature/x': 3, 'feature/y': 4, score: 0.9 },
    ]);
    assert.throws(
      () => unpackRecord({ captureData: { endpointInput: { observedContentType: 'application/x-npy', encoding: 'BASE64', data: b64('xx') } }, eventMetadata: { eventId: 'e' } }, undefined, 'f.jsonl: line 3'),
      { code: 'IMP_ERR_FORMAT_UNREADABLE', message: 'f.jsonl: line 3 endpointInput: content type "application/x-npy" (BASE64) is not CSV or JSON and cannot be read as rows' },
    );
  });
});
