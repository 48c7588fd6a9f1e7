import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Daemon } from '../src/daemon.ts';
import { BUCKET, ledger, runDaemon, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

const TOKEN = 'test-token-0123456789';

describe('HTTP: health, readiness, metrics, token', () => {
  let stack: Stack;
  let daemon: Daemon;
  let base: string;

  before(async () => {
    stack = await startStack();
    const jobs = [{ id: 'web', source: `s3://${BUCKET}/web/`, model: { id: 'web' }, schema: { predictionId: 'pid', predictionScore: 'score' } }];
    daemon = await runDaemon(stack.config(jobs, { http: { port: 0, host: '127.0.0.1', token: TOKEN } }));
    base = `http://127.0.0.1:${(daemon.http!.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await daemon?.stop();
    await stack?.stop();
  });

  it('answers health and readiness without the token', async () => {
    const h = await fetch(`${base}/healthz`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { ok: true });
    const r = await fetch(`${base}/readyz`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { ok: true, checks: { redis: 'ok', store: 'ok' } });
  });

  it('moves the counters by the exact amounts after importing known files', async () => {
    const p = await writeFixture(join(stack.tmp.path, 'w.parquet'), `SELECT 'w' || i AS pid, CASE WHEN i = 3 THEN NULL ELSE 0.5 END AS score FROM range(0, 12) t(i) UNION ALL SELECT NULL, 0.1`, 'FORMAT parquet');
    const bytes = await readFile(p);
    await stack.s3.put(BUCKET, 'web/a/w.parquet', bytes);
    await waitFor('imported', async () => (await ledger(daemon, 'web')).some((r) => r.status === 'partially_succeeded'));
    // The ledger row is committed inside the import; the worker counts the outcome just after it returns.
    const text = await waitFor('the import counted', async () => {
      const t = await (await fetch(`${base}/metrics`)).text();
      return /^importer_import_duration_seconds_count\{job="web"\} 1$/m.test(t) && t;
    });
    const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(value('importer_files_discovered_total{job="web",kind="new"}'), 1);
    assert.equal(value('importer_files_imported_total{job="web",outcome="partially_succeeded"}'), 1);
    assert.equal(value('importer_rows_loaded_total{job="web",kind="prediction"}'), 11);
    assert.equal(value('importer_rows_rejected_total{job="web",reason="IMP_ERR_ROW_PREDICTION_ID_MISSING"}'), 1);
    assert.equal(value('importer_rows_rejected_total{job="web",reason="IMP_ERR_ROW_PREDICTION_MISSING"}'), 1);
    assert.equal(value('importer_bytes_read_total{job="web"}'), bytes.length);
    assert.equal(value('importer_import_duration_seconds_count{job="web"}'), 1);
    assert.ok(value('importer_last_successful_poll_timestamp_seconds{job="web"}') > Date.now() / 1000 - 60);
    assert.match(text, /^importer_process_resident_memory_bytes \d+/m);
    // Every line is a comment or a sample of an importer_ metric: nothing else, nothing keyed by file.
    for (const line of text.split('\n').filter(Boolean)) assert.match(line, /^(# (HELP|TYPE) importer_\w+ |importer_\w+(\{[^}]*\})? \S+$)/);
    assert.doesNotMatch(text, /w\.parquet/);
    const rejected = await sql(daemon.store)(`SELECT row_number::INT AS row_number, column_name, code, message, raw::VARCHAR AS raw FROM rejected_rows ORDER BY row_number`);
    assert.deepEqual(rejected, [
      { row_number: 4, column_name: 'score', code: 'IMP_ERR_ROW_PREDICTION_MISSING', message: 'row 4, column "score": the row has no prediction (label, score, named prediction, bounding boxes or response)', raw: '{"pid":"w3","score":null}' },
      { row_number: 13, column_name: 'pid', code: 'IMP_ERR_ROW_PREDICTION_ID_MISSING', message: 'row 13, column "pid": the prediction ID is null or empty', raw: '{"pid":null,"score":0.1}' },
    ]);
  });
});
