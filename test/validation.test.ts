import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createS3Client } from '../src/source/index.ts';
import { dryRun, formatDryRun } from '../src/worker/dry-run.ts';
import { spawnCli } from './helpers/child.ts';
import { BUCKET, ledger, runDaemon, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

const predictionJob = (id: string, extra: Record<string, unknown> = {}) => ({
  id, source: `s3://${BUCKET}/${id}/`, model: { id, version: 'v1' },
  schema: { predictionId: 'pid', timestamp: 'ts', predictionLabel: 'label', predictionScore: 'score' }, ...extra,
});
const good = (i: number) => `SELECT 'id${i}' AS pid, '2026-11-20T10:00:00Z' AS ts, 'yes' AS label, '0.5' AS score`;

describe('validation and dry run', () => {
  let stack: Stack;
  before(async () => (stack = await startStack()));
  after(async () => stack?.stop());

  const put = async (key: string, sql: string, options = 'FORMAT csv, HEADER true') => {
    const path = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), sql, options);
    return stack.s3.put(BUCKET, key, await readFile(path));
  };
  const check = async (job: Record<string, unknown>, key: string) => {
    const config = stack.config([job]);
    return dryRun(config, config.jobs[0], createS3Client(config.s3), { key });
  };

  const rowRules: Array<[string, string, string, number, string]> = [
    ['null ID', `SELECT NULL AS pid, '2026-11-20T10:00:00Z' AS ts, 'yes' AS label, '0.5' AS score`, 'IMP_ERR_ROW_PREDICTION_ID_MISSING', 2, 'pid'],
    ['empty ID', `SELECT '  ' AS pid, '2026-11-20T10:00:00Z' AS ts, 'yes' AS label, '0.5' AS score`, 'IMP_ERR_ROW_PREDICTION_ID_MISSING', 2, 'pid'],
    ['unparseable timestamp', `SELECT 'a' AS pid, 'yesterday' AS ts, 'yes' AS label, '0.5' AS score`, 'IMP_ERR_ROW_TIMESTAMP_INVALID', 2, 'ts'],
    ['timestamp out of window', `SELECT 'a' AS pid, '1999-01-01T00:00:00Z' AS ts, 'yes' AS label, '0.5' AS score`, 'IMP_ERR_ROW_TIMESTAMP_OUT_OF_RANGE', 2, 'ts'],
    ['score not a number', `SELECT 'a' AS pid, '2026-11-20T10:00:00Z' AS ts, 'yes' AS label, 'high' AS score`, 'IMP_ERR_ROW_VALUE_INVALID', 2, 'score'],
    ['infinite score', `SELECT 'a' AS pid, '2026-11-20T10:00:00Z' AS ts, 'yes' AS label, 'inf' AS score`, 'IMP_ERR_ROW_SCORE_NOT_FINITE', 2, 'score'],
    ['no label and no score', `SELECT 'a' AS pid, '2026-11-20T10:00:00Z' AS ts, NULL AS label, NULL AS score`, 'IMP_ERR_ROW_PREDICTION_MISSING', 2, 'label'],
    ['duplicate ID (the earlier row)', `SELECT 'id1' AS pid, '2026-11-20T10:00:00Z' AS ts, 'yes' AS label, '0.5' AS score`, 'IMP_ERR_ROW_DUPLICATE_ID', 1, 'pid'],
  ];
  for (const [name, badRow, code, row, column] of rowRules) {
    it(`reports ${name} as ${code} at row ${row}, column ${column}`, async () => {
      const key = `rules/${code}-${row}.csv`;
      await put(key, `${good(1)} UNION ALL ${badRow} UNION ALL ${good(3)}`);
      const report = await check(predictionJob('rules'), key);
      assert.equal(report.status, 'invalid');
      assert.deepEqual(report.rows, { read: 3, valid: 2, rejected: 1 });
      assert.deepEqual(report.errors.map((e) => [e.code, e.row, e.column]), [[code, row, column]]);
      if (code === 'IMP_ERR_ROW_TIMESTAMP_OUT_OF_RANGE') {
        // The value, the window and the key that moves it; the location once, also in the terminal text.
        assert.match(report.errors[0].message, /^row 2, column "ts": the timestamp "1999-01-01[ T]00:00:00(Z|\+00)" is outside the accepted window \d{4}-\d\d-\d\dT[\d:.]+Z to \d{4}-\d\d-\d\dT[\d:.]+Z \(1826 days back, 365 days ahead of the import time\); to accept it, widen timestamps.maxAge \(or timestamps.maxAhead\) of job rules$/);
        const text = formatDryRun(report);
        assert.equal(text.match(/row 2/g)?.length, 1, text);
        assert.match(text, /^ {2}IMP_ERR_ROW_TIMESTAMP_OUT_OF_RANGE: row 2, column "ts": the timestamp "1999/m);
      }
    });
  }

  it('keeps rows at the limits and rejects them one step beyond, with their code and a message naming row and column', async () => {
    // The window is measured from the import time, a little after these stamps are taken: a minute of margin on each side.
    const at = (ms: number) => new Date(Date.now() + ms).toISOString();
    const [H, M] = [3_600_000, 60_000];
    const rows: Array<[string, string, string | null]> = [
      [`repeat('i', 128)`, at(0), null],
      [`repeat('j', 129)`, at(0), 'IMP_ERR_ROW_PREDICTION_ID_TOO_LONG'],
      [`'age-in'`, at(-2 * H + M), null],
      [`'age-out'`, at(-2 * H - M), 'IMP_ERR_ROW_TIMESTAMP_OUT_OF_RANGE'],
      [`'ahead-in'`, at(30 * M - M), null],
      [`'ahead-out'`, at(30 * M + M), 'IMP_ERR_ROW_TIMESTAMP_OUT_OF_RANGE'],
    ];
    await put('limits/a.csv', rows.map(([pid, ts]) => `SELECT ${pid} AS pid, '${ts}' AS ts, 'yes' AS label, '0.5' AS score`).join(' UNION ALL '));
    // Different maxAge and maxAhead, so swapping them or taking the wrong sign is seen.
    const report = await check(predictionJob('limits', { timestamps: { maxAge: '2h', maxAhead: '30m' } }), 'limits/a.csv');
    assert.deepEqual(report.rows, { read: 6, valid: 3, rejected: 3 });
    assert.deepEqual(report.errors.map((e) => [e.code, e.row, e.column]), rows.flatMap(([, , code], i) => code ? [[code, i + 1, i === 1 ? 'pid' : 'ts']] : []));
    assert.equal(report.errors[0].message, 'row 2, column "pid": the prediction ID is longer than 128 characters');
    // The window message shows the value, the window and the keys to widen (the stamps are taken at run time, so matched by shape).
    for (const [i, e] of report.errors.slice(1).entries()) {
      assert.match(e.message, new RegExp(`^row ${[4, 6][i]}, column "ts": the timestamp "${rows[[3, 5][i]][1].slice(0, 10)}[^"]*" is outside the accepted window \\S+ to \\S+ \\(2 hours back, 30 minutes ahead of the import time\\); to accept it, widen timestamps\\.maxAge \\(or timestamps\\.maxAhead\\) of job limits$`));
    }
  });

  it('reports NaN scores in parquet and a missing actual in an actuals file', async () => {
    await put('rules/nan.parquet', `SELECT 'a' AS pid, TIMESTAMPTZ '2026-11-20 10:00:00+00' AS ts, 'yes' AS label, 'NaN'::DOUBLE AS score UNION ALL SELECT 'b', TIMESTAMPTZ '2026-11-20 10:00:00+00', 'no', 0.1`, 'FORMAT parquet');
    const nan = await check(predictionJob('rules'), 'rules/nan.parquet');
    assert.deepEqual(nan.errors.map((e) => [e.code, e.row, e.column]), [['IMP_ERR_ROW_SCORE_NOT_FINITE', 1, 'score']]);
    await put('acts/a.csv', `SELECT 'a' AS pid, 'yes' AS label UNION ALL SELECT 'b', NULL`);
    const acts = await check({ id: 'acts', source: `s3://${BUCKET}/acts/`, model: { id: 'm' }, schema: { predictionId: 'pid', actualLabel: 'label' } }, 'acts/a.csv');
    assert.deepEqual(acts.errors.map((e) => [e.code, e.row, e.column, e.message]), [['IMP_ERR_ROW_ACTUAL_MISSING', 2, 'label', 'row 2, column "label": the row has no actual (label, score, relevance or bounding boxes)']]);
  });

  it('lists every file-level problem at once and checks no row', async () => {
    await put('rules/shape.parquet', `SELECT 'a' AS pid, [0.1, 0.2] AS score, 1 AS other`, 'FORMAT parquet');
    const report = await check(predictionJob('rules'), 'rules/shape.parquet');
    assert.equal(report.status, 'failed');
    assert.deepEqual(report.checks, { access: 'ok', schema: 'failed', records: 'skipped' });
    assert.deepEqual(report.errors, [
      { code: 'IMP_ERR_SCHEMA_MISSING_COLUMN', column: 'ts', message: 'mapped column "ts" not found; the file has "pid", "score", "other"' },
      { code: 'IMP_ERR_SCHEMA_MISSING_COLUMN', column: 'label', message: 'mapped column "label" not found; the file has "pid", "score", "other"' },
      { code: 'IMP_ERR_SCHEMA_BAD_TYPE', column: 'score', message: 'column "score" (predictionScore) is DECIMAL(2,1)[]; it must be a number' },
    ]);
  });

  it('reads epoch milliseconds and naive times in the job time zone', async () => {
    const config = stack.config([predictionJob('zones', { schema: { predictionId: 'pid', timestamp: 'ts', predictionLabel: 'label' }, timestamps: { unit: 'ms', timeZone: 'Europe/Oslo' } })]);
    const daemon = await runDaemon(config);
    try {
      await put('zones/a.csv', `SELECT 'ms' AS pid, '1795000000000' AS ts, 'y' AS label UNION ALL SELECT 'naive', '2026-07-01 12:00:00', 'y' UNION ALL SELECT 'offset', '2026-07-01T12:00:00+05:00', 'y' UNION ALL SELECT 'date', '2026-07-21', 'y' UNION ALL SELECT 'missing', NULL, 'y'`);
      await waitFor('imported', async () => (await ledger(daemon, 'zones')).some((r) => r.status === 'succeeded'));
      const rows = await sql(daemon.store)(`SELECT prediction_id, strftime(prediction_ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S') AS utc FROM predictions WHERE model_id = 'zones' AND prediction_id <> 'missing' ORDER BY 1`);
      const [missing] = await sql(daemon.store)<{ age: number }>(`SELECT epoch(now()) - epoch(prediction_ts) AS age FROM predictions WHERE prediction_id = 'missing'`);
      assert.ok(missing.age >= 0 && missing.age < 60, 'a missing timestamp is the import time');
      assert.deepEqual(rows, [
        { prediction_id: 'date', utc: '2026-07-20T22:00:00' },
        { prediction_id: 'ms', utc: '2026-11-18T11:06:40' },
        { prediction_id: 'naive', utc: '2026-07-01T10:00:00' },
        { prediction_id: 'offset', utc: '2026-07-01T07:00:00' },
      ]);
    } finally {
      await daemon.stop();
    }
  });

  it('loads exactly the good rows under skip, nothing under fail, and replaces rejected rows when a file changes', async () => {
    const config = stack.config([predictionJob('skip'), predictionJob('strict', { onInvalidRows: 'fail' })]);
    const daemon = await runDaemon(config);
    const mixed = `${good(1)} UNION ALL ${good(2)} UNION ALL SELECT NULL, '2026-11-20T10:00:00Z', 'yes', '0.5' UNION ALL ${good(4)} UNION ALL SELECT 'id5', 'never', 'no', '0.1'`;
    try {
      await put('skip/m.csv', mixed);
      await put('strict/m.csv', mixed);
      const [skip, strict] = await waitFor('both imported', async () => {
        const rows = [(await ledger(daemon, 'skip'))[0], (await ledger(daemon, 'strict'))[0]];
        return rows.every((r) => r && r.status !== 'pending') && rows;
      });
      assert.deepEqual([skip.status, skip.rows_read, skip.predictions_loaded, skip.rows_rejected], ['partially_succeeded', 5, 3, 2]);
      assert.equal(skip.error_message, 'skip/m.csv: 2 row(s) rejected; first: row 3, column "pid": the prediction ID is null or empty');
      assert.deepEqual([strict.status, strict.predictions_loaded, strict.rows_rejected, strict.error_code, strict.attempts], ['failed', 0, 2, 'IMP_ERR_ROWS_INVALID', 1]);
      const loaded = await sql(daemon.store)(`SELECT model_id, list(prediction_id ORDER BY prediction_id) AS ids FROM predictions GROUP BY 1 ORDER BY 1`);
      assert.deepEqual(loaded, [{ model_id: 'skip', ids: ['id1', 'id2', 'id4'] }]);
      const rejected = async () => sql(daemon.store)(`SELECT job_id, row_number::INT AS r, code FROM rejected_rows ORDER BY job_id, r`);
      assert.deepEqual(await rejected(), [
        { job_id: 'skip', r: 3, code: 'IMP_ERR_ROW_PREDICTION_ID_MISSING' }, { job_id: 'skip', r: 5, code: 'IMP_ERR_ROW_TIMESTAMP_INVALID' },
        { job_id: 'strict', r: 3, code: 'IMP_ERR_ROW_PREDICTION_ID_MISSING' }, { job_id: 'strict', r: 5, code: 'IMP_ERR_ROW_TIMESTAMP_INVALID' },
      ]);
      await put('skip/m.csv', `${good(1)} UNION ALL SELECT 'id9', 'soon', 'no', '0.1'`);
      await waitFor('v2 imported', async () => (await ledger(daemon, 'skip')).length === 2 && (await ledger(daemon, 'skip'))[1].status !== 'pending');
      assert.deepEqual((await rejected()).filter((r) => r.job_id === 'skip'), [{ job_id: 'skip', r: 2, code: 'IMP_ERR_ROW_TIMESTAMP_INVALID' }]);
      assert.deepEqual(await sql(daemon.store)(`SELECT list(prediction_id ORDER BY prediction_id) AS ids FROM predictions WHERE model_id = 'skip'`), [{ ids: ['id1'] }]);
    } finally {
      await daemon.stop();
    }
  });

  it('warns when a binary model\'s label and score columns look swapped, and not when they look right', async () => {
    const binary = (id: string) => predictionJob(id, { model: { id, version: 'v1', type: 'binary' } });
    await put('swap/swapped.csv', `SELECT 'id' || i AS pid, '2026-11-20T10:00:00Z' AS ts, (0.05 + i / 10)::VARCHAR AS label, (i % 2)::VARCHAR AS score FROM range(6) t(i)`);
    const swapped = await check(binary('swap'), 'swap/swapped.csv');
    assert.equal(swapped.status, 'ok');
    assert.deepEqual(swapped.warnings, [{ code: 'SUSPICIOUS_LABEL', column: 'label', message: 'predictionLabel column "label" holds only numbers, 6 of them fractional: is it the score?' }]);
    await put('swap/logits.csv', `SELECT 'id' || i AS pid, '2026-11-20T10:00:00Z' AS ts, 'yes' AS label, (i - 2)::VARCHAR AS score FROM range(5) t(i)`);
    assert.deepEqual((await check(binary('swap'), 'swap/logits.csv')).warnings.map((w) => w.message), ['predictionScore column "score" holds 3 values outside [0, 1]: a binary model\'s score is a probability']);
    await put('swap/right.csv', `SELECT 'id' || i AS pid, '2026-11-20T10:00:00Z' AS ts, (i % 2)::VARCHAR AS label, (0.05 + i / 10)::VARCHAR AS score FROM range(6) t(i)`);
    assert.deepEqual((await check(binary('swap'), 'swap/right.csv')).warnings, []);
    // Only binary models: a regression's score is any number.
    assert.deepEqual((await check(predictionJob('swap'), 'swap/logits.csv')).warnings, []);
  });

  it('dry-run from the CLI writes nothing to the store or Redis and exits 0 only for a clean file', async () => {
    await put('cli/a-clean.csv', `${good(1)} UNION ALL ${good(2)}`);
    await put('cli/b-dirty.csv', `${good(1)} UNION ALL SELECT 'x', 'garbage', 'yes', '0.3'`);
    const storePath = join(stack.tmp.path, 'never.duckdb');
    // An actuals job whose prefix is still empty, as right after deploying: a note, not a failure.
    const actuals = { id: 'cli-acts', source: `s3://${BUCKET}/cli-acts/`, model: { id: 'cli' }, schema: { predictionId: 'pid', actualLabel: 'label' } };
    const body = { ...JSON.parse(JSON.stringify(stack.config([predictionJob('cli'), actuals]))), store: { kind: 'duckdb', path: storePath } };
    const configFile = { path: join(stack.tmp.path, 'dry.yaml'), body };
    const redis = new Redis(stack.redis.url);
    try {
      const clean = await spawnCli(['dry-run', '--job', 'cli'], configFile);
      assert.equal((await clean.exited).code, 0);
      assert.match(clean.output(), /dry run of job cli: s3:\/\/inference\/cli\/a-clean\.csv \(csv\)\n {2}source {3}folder s3:\/\/inference\/cli\/\n {2}access {3}ok\n {2}schema {3}ok \(4 columns\)\n {2}records {2}2 rows, 2 valid, 0 invalid\nstatus: ok\n/);
      const dirty = await spawnCli(['dry-run', '--job', 'cli', '--file', 'cli/b-dirty.csv', '--json'], configFile);
      assert.equal((await dirty.exited).code, 1);
      const report = JSON.parse(dirty.output().slice(dirty.output().indexOf('{')));
      assert.equal(report.status, 'invalid');
      assert.deepEqual(report.errors, [{ code: 'IMP_ERR_ROW_TIMESTAMP_INVALID', message: 'row 2, column "ts": the timestamp cannot be parsed', row: 2, column: 'ts' }]);
      const all = await spawnCli(['config', 'check', '--dry-run'], configFile);
      assert.equal((await all.exited).code, 0);
      assert.match(all.output(), /dry run of job cli-acts: \(no file\)\n {2}source {3}folder s3:\/\/inference\/cli-acts\/\n {2}access {3}ok\n {2}schema {3}skipped\n {2}records {2}skipped\nstatus: empty\nnote: IMP_ERR_SOURCE_EMPTY: no importable object under s3:\/\/inference\/cli-acts\/ yet \(0 objects listed\): normal until the first file arrives, else check jobs\[\]\.source\n/);
      await assert.rejects(access(storePath));
      assert.deepEqual(await redis.keys(`${body.redis.prefix}*`), []); // nothing under this config's Redis prefix
    } finally {
      redis.disconnect();
    }
  });

  it('applies read options and select expressions, refuses subqueries, and reads nothing but the download', async () => {
    const job = {
      id: 'eu', source: `s3://${BUCKET}/eu/`, model: { id: 'eu' },
      readOptions: { delim: ';', all_varchar: true },
      select: ['* EXCLUDE (score_txt, country)', "CAST(replace(score_txt, ',', '.') AS DOUBLE) AS score", 'upper(country) AS country'],
      schema: { predictionId: 'pid', predictionScore: 'score', features: ['country'] },
    };
    const config = stack.config([job]);
    const daemon = await runDaemon(config);
    try {
      await stack.s3.put(BUCKET, 'eu/a.csv', 'pid;score_txt;country\na;0,25;no\nb;1,5;se\n');
      await waitFor('imported', async () => (await ledger(daemon, 'eu')).some((r) => r.status === 'succeeded'));
      assert.deepEqual(await sql(daemon.store)(`SELECT prediction_id, prediction_score, features.country AS country FROM model_predictions.eu ORDER BY 1`), [
        { prediction_id: 'a', prediction_score: 0.25, country: 'NO' },
        { prediction_id: 'b', prediction_score: 1.5, country: 'SE' },
      ]);
      await assert.rejects(sql(daemon.store)(`SELECT * FROM read_csv('/etc/passwd')`), /Permission Error: Cannot access file "\/etc\/passwd"/);
      await assert.rejects(sql(daemon.store)(`COPY (SELECT 1) TO '${join(stack.tmp.path, 'leak.csv')}'`), /Permission Error/);
    } finally {
      await daemon.stop();
    }
    const sneaky = await check({ ...job, select: ['*', "(SELECT content FROM read_text('/etc/passwd')) AS pw", 'a, b'] }, 'eu/a.csv');
    assert.equal(sneaky.status, 'failed');
    assert.deepEqual(sneaky.errors.map((e) => e.message), [
      `jobs.eu.select[1] "(SELECT content FROM read_text('/etc/passwd')) AS pw" must not contain a subquery`,
      'jobs.eu.select[2] "a, b" must be a single expression (use one list entry per column)',
    ]);
  });
});
