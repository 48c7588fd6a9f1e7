import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { startDaemon } from '../src/daemon.ts';
import { createLogger } from '../src/log.ts';
import { BUCKET, counts, ledger, runDaemon, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

const rowsSql = (start: number, n: number) => `SELECT 'r' || i AS pid, (i % 10) / 10.0 AS score, i % 5 AS f FROM range(${start}, ${start + n}) t(i)`;
const job = (id: string, prefix: string, extra: Record<string, unknown> = {}) => ({
  id, source: `s3://${BUCKET}/${prefix}`, model: { id }, schema: { predictionId: 'pid', predictionScore: 'score' }, ...extra,
});

describe('resilience', () => {
  let stack: Stack;
  before(async () => (stack = await startStack()));
  after(async () => stack?.stop());

  const putRows = async (key: string, start: number, n: number) => {
    const p = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), rowsSql(start, n), 'FORMAT parquet');
    return stack.s3.put(BUCKET, key, await readFile(p));
  };

  it('imports every file exactly once when Redis is flushed mid-run', async () => {
    const daemon = await runDaemon(stack.config([job('flush', 'flush/')]));
    try {
      for (let i = 0; i < 20; i++) await putRows(`flush/d${i % 4}/f${String(i).padStart(2, '0')}.parquet`, i * 20_000, 20_000);
      await waitFor('some files imported', async () => (await ledger(daemon, 'flush')).filter((r) => r.status === 'succeeded').length >= 3);
      await stack.redis.flushAll();
      const atFlush = (await ledger(daemon, 'flush')).filter((r) => r.status === 'succeeded').length;
      assert.ok(atFlush < 20, `the flush must land mid-run (${atFlush} of 20 were done)`);
      const rows = await waitFor('all 20 imported', async () => {
        const l = await ledger(daemon, 'flush');
        return l.length === 20 && l.every((r) => r.status === 'succeeded') && l;
      }, 60_000);
      assert.equal(new Set(rows.map((r) => r.key)).size, 20);
      assert.ok(rows.every((r) => r.predictions_loaded === 20_000));
      const [{ n, d }] = await sql(daemon.store)<{ n: number; d: number }>(`SELECT count(*)::INT AS n, count(DISTINCT prediction_id)::INT AS d FROM model_predictions.flush`);
      assert.deepEqual({ n, d }, { n: 400_000, d: 400_000 });
    } finally {
      await daemon.stop();
    }
  });

  it('marks a version rewritten between LIST and GET superseded and imports the new one', async () => {
    const daemon = await runDaemon(stack.config([job('race', 'race/')]));
    try {
      // Hold the first GET long enough to rewrite the object under it; the proxy then answers 412 on the stale If-Match.
      stack.s3.faults.add({ method: 'GET', keyIncludes: 'race/x.parquet', times: 1, delayMs: 2500 });
      await putRows('race/x.parquet', 0, 10);
      await waitFor('the GET to start', async () => stack.s3.requestLog.some((r) => r.method === 'GET' && r.path.endsWith('race/x.parquet')));
      await putRows('race/x.parquet', 100, 4);
      const rows = await waitFor('v2 imported', async () => {
        const l = await ledger(daemon, 'race');
        return l.length === 2 && l[1].status === 'succeeded' && l[0].status !== 'pending' && l;
      });
      assert.deepEqual(rows.map((r) => [r.status, r.predictions_loaded]), [['superseded', null], ['succeeded', 4]]);
      assert.equal((await counts(daemon, 'race')).p, 4);
    } finally {
      await daemon.stop();
    }
  });

  it('refuses a file above maxFileBytes without downloading it, and retries transient S3 errors', async () => {
    const daemon = await runDaemon(stack.config([job('limits', 'limits/', { maxFileBytes: '2KiB' })]));
    try {
      await putRows('limits/big.parquet', 0, 5000);
      stack.s3.faults.add({ method: 'GET', keyIncludes: 'limits/small.parquet', status: 500, times: 3 });
      await putRows('limits/small.parquet', 0, 3);
      stack.s3.clearLog();
      const rows = await waitFor('both ended', async () => {
        const l = await ledger(daemon, 'limits');
        return l.length === 2 && l.every((r) => r.status !== 'pending') && l;
      });
      const [big, small] = rows;
      assert.equal(big.status, 'failed');
      assert.equal(big.error_code, 'IMP_ERR_SOURCE_TOO_LARGE');
      assert.match(big.error_message!, /^s3:\/\/inference\/limits\/big\.parquet is \d+ bytes, above maxFileBytes 2048; raise maxFileBytes/);
      assert.equal(stack.s3.requestLog.filter((r) => r.method === 'GET' && r.path.endsWith('big.parquet')).length, 0);
      // 3 injected 500s: the SDK's 2 attempts fail once (attempt 1 of the file), then one more 500 and a success.
      assert.equal(small.status, 'succeeded');
      assert.equal(small.attempts, 2);
      assert.equal(small.predictions_loaded, 3);
    } finally {
      await daemon.stop();
    }
  });

  it("keeps importing other jobs while one job's bucket cannot be listed, and says why", async () => {
    const lines: string[] = [];
    const config = stack.config([job('gone', 'x/'), job('alive', 'alive/')]);
    const broken = { ...config, jobs: [{ ...config.jobs[0], source: 's3://no-such-bucket/x/' }, config.jobs[1]] };
    const sink = new Writable({ write: (c, _e, done) => (lines.push(String(c)), done()) });
    const daemon = await startDaemon(broken, { log: createLogger('error', sink) });
    try {
      await putRows('alive/a.parquet', 0, 6);
      await waitFor('alive imported', async () => (await ledger(daemon, 'alive')).some((r) => r.status === 'succeeded'));
      const text = await daemon.metrics.registry.getSingleMetricAsString('importer_poll_errors_total');
      assert.match(text, /importer_poll_errors_total\{job="gone"\} [1-9]/);
      const logged = lines.map((l) => JSON.parse(l)).find((l) => l.job === 'gone');
      assert.equal(logged.code, 'IMP_ERR_SOURCE_ACCESS');
      assert.match(logged.msg, /^poll failed: cannot list s3:\/\/no-such-bucket\/x\/: NoSuchBucket \(HTTP 404\): .*check the bucket name and region$/);
    } finally {
      await daemon.stop();
    }
  });
});
