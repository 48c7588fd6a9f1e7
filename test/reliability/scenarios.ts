import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Daemon } from '../../src/daemon.ts';
import { jobQueueStates } from '../../src/queue/control.ts';
import { spawnCli } from '../helpers/child.ts';
import { freePort } from '../helpers/ports.ts';
import { BUCKET, ledger, runDaemon, waitFor as waitForShort, writeFixture, type Stack, type StoreKind } from '../helpers/stack.ts';
import { startTcpProxy } from '../helpers/tcp-proxy.ts';
import { sql } from '../helpers/sql.ts';

/**
 * The fault-suite scenarios of issue 15 that run in-process against one store: each ends with
 * exact rows, no duplicate ID and every ledger row in its final state. `test/reliability.test.ts`
 * runs them once per store.
 */

/** waitFor with a longer default: the shared machine can be loaded many times over (the limit only matters when a test fails). */
const waitFor = <T>(what: string, fn: () => Promise<T | false | null | undefined | 0 | ''>, timeoutMs = 120_000) => waitForShort(what, fn, timeoutMs);

/**
 * The count of a job's `succeeded` imports once it reaches `expected` (or after 10 s without): a
 * file's ledger row commits a moment before its worker counts the outcome, so a test that saw the
 * last row committed could read the counter one short (499 of 500, seen once under load).
 */
async function countedSucceeded(daemon: Daemon, job: string, expected: number): Promise<number> {
  const name = `importer_files_imported_total{job="${job}",outcome="succeeded"}`;
  await waitForShort(`${expected} succeeded counted`, async () => (await metric(daemon, name)) >= expected, 10_000).catch(() => undefined);
  return metric(daemon, name);
}

/** A hold for proxy rules (`until`) that the test opens. */
function gate(): { until: Promise<void>; open: () => void } {
  let open!: () => void;
  return { until: new Promise<void>((resolve) => (open = resolve)), open: () => open() };
}

/** A job importing `prefix`: prediction ID and score, nothing else. */
export const scenarioJob = (id: string, extra: Record<string, unknown> = {}) => ({
  id, source: `s3://${BUCKET}/${id}/`, model: { id }, schema: { predictionId: 'pid', predictionScore: 'score' }, ...extra,
});

/** `n` CSV rows with IDs `<tag>-0..`. */
export const csvRows = (tag: string, n: number) => `pid,score\n${Array.from({ length: n }, (_, i) => `${tag}-${i},0.${i % 10}\n`).join('')}`;

/** The value of one series of the daemon's metrics (0 when absent). */
export async function metric(daemon: Daemon, series: string): Promise<number> {
  const text = await daemon.metrics.registry.metrics();
  return Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
}

/** Rows and distinct IDs of a model's predictions: equal when nothing is doubled. */
export async function predictionCount(daemon: Daemon, model: string): Promise<{ rows: number; ids: number }> {
  const [r] = await sql(daemon.store)<{ rows: number; ids: number }>(
    `SELECT count(*)::INT AS rows, count(DISTINCT prediction_id)::INT AS ids FROM predictions WHERE model_id = $1`, [model]);
  return { rows: Number(r.rows), ids: Number(r.ids) };
}

/** The ledger of a job as `key → status/attempts/rows`, once every row of `keys` is there and none is pending. */
export async function settledLedger(daemon: Daemon, jobId: string, keys: number, timeoutMs = 30_000) {
  return waitFor(`${keys} settled ledger rows of ${jobId}`, async () => {
    const l = await ledger(daemon, jobId);
    return l.length >= keys && l.every((r) => r.status !== 'pending') && l;
  }, timeoutMs);
}

/** Writes `n` parquet rows with IDs `<tag>-0..` (and an unmapped column that does not compress) and returns the bytes. */
export async function parquetRows(stack: Stack, tag: string, n: number): Promise<Buffer> {
  const path = await writeFixture(join(stack.tmp.path, `${tag}.parquet`), `SELECT '${tag}-' || i AS pid, (i % 10) / 10.0 AS score, md5(i::VARCHAR) AS pad FROM range(${n}) t(i)`, 'FORMAT parquet');
  return readFile(path);
}

/**
 * S3 faults from the proxy: connection resets (a GET and a LIST, retried by the SDK; a GET reset on
 * both SDK attempts, retried by the queue), a truncated body of a single GET and of one byte range,
 * and the second page of a listing failing: the poll that could not list everything records
 * nothing, neither at the start (nothing imported yet) nor later (nothing imported again, nothing
 * lost). Every file ends imported once; the retries show in the metrics.
 */
export async function s3Faults(stack: Stack): Promise<void> {
  const id = 's3faults';
  const { s3 } = stack;
  let started: Daemon | undefined;
  try {
    s3.listPageSize = 3;
    // The first poll: its second page fails on both SDK attempts; the next poll waits until the ledger is checked.
    const checked = gate();
    s3.faults.add({ list: true, keyIncludes: `${id}/`, queryIncludes: 'continuation-token', status: 500, times: 2 });
    s3.faults.add({ list: true, keyIncludes: `${id}/`, after: 1, until: checked.until, times: 1 });
    s3.faults.add({ method: 'GET', keyIncludes: `${id}/reset-once.csv`, reset: true, times: 1 });
    s3.faults.add({ method: 'GET', keyIncludes: `${id}/reset-twice.csv`, reset: true, times: 2 });
    s3.faults.add({ method: 'GET', keyIncludes: `${id}/truncated.csv`, truncate: true, times: 1 });
    s3.faults.add({ method: 'GET', keyIncludes: `${id}/ranged.parquet`, truncate: true, times: 1 });
    const files: Record<string, Buffer | string> = {
      'plain-1.csv': csvRows('p1', 10),
      'plain-2.csv': csvRows('p2', 10),
      'reset-once.csv': csvRows('r1', 10),
      'reset-twice.csv': csvRows('r2', 10),
      'truncated.csv': csvRows('t', 40),
      'ranged.parquet': await parquetRows(stack, 'rg', 3000),
      'plain-3.csv': csvRows('p3', 10),
    };
    assert.ok(Buffer.byteLength(files['ranged.parquet']) > 4 * 4096, 'the parquet file spans several ranges');
    for (const [name, body] of Object.entries(files)) await s3.put(BUCKET, `${id}/${name}`, body);
    // Started after the files and the faults are in place: its first poll is the one whose second page fails.
    // Ranges of 4 KiB: the 30 KB parquet file goes in 8 ranges, the CSV files in one GET each.
    const daemon = (started = await runDaemon(stack.config([scenarioJob(id, { pollInterval: '2s' })], { s3: { endpoint: stack.s3.endpoint, forcePathStyle: true, maxAttempts: 2, downloadPartSize: '4KiB', downloadConcurrency: 2 } })));

    await waitFor('the poll with the failed page', async () => (await metric(daemon, `importer_poll_errors_total{job="${id}"}`)) === 1);
    assert.deepEqual(await ledger(daemon, id), [], 'the incomplete listing recorded nothing');
    assert.equal(await metric(daemon, `importer_files_discovered_total{job="${id}",kind="new"}`), 0);
    checked.open();

    const first = await settledLedger(daemon, id, 7);
    assert.deepEqual(first.map((r) => [r.key.slice(id.length + 1), r.status, r.attempts, r.predictions_loaded]), [
      ['plain-1.csv', 'succeeded', 1, 10],
      ['plain-2.csv', 'succeeded', 1, 10],
      ['plain-3.csv', 'succeeded', 1, 10],
      ['ranged.parquet', 'succeeded', 2, 3000],
      ['reset-once.csv', 'succeeded', 1, 10],
      ['reset-twice.csv', 'succeeded', 2, 10],
      ['truncated.csv', 'succeeded', 2, 40],
    ]);
    assert.deepEqual(await predictionCount(daemon, id), { rows: 3090, ids: 3090 });

    // A listing failing mid-way after everything is imported: nothing is marked, re-imported or lost; a file added next arrives once.
    s3.faults.add({ list: true, keyIncludes: `${id}/`, queryIncludes: 'continuation-token', status: 503, times: 2 });
    s3.faults.add({ list: true, keyIncludes: `${id}/`, reset: true, times: 1 });
    await waitFor('the second failed poll', async () => (await metric(daemon, `importer_poll_errors_total{job="${id}"}`)) === 2);
    assert.deepEqual((await ledger(daemon, id)).map((r) => r.status), first.map(() => 'succeeded'));
    await s3.put(BUCKET, `${id}/late.csv`, csvRows('late', 5));
    const all = await waitFor('late.csv imported', async () => {
      const l = await ledger(daemon, id);
      return l.length === 8 && l.every((r) => r.status === 'succeeded') && l;
    });
    assert.deepEqual(all.find((r) => r.key.endsWith('late.csv'))!.predictions_loaded, 5);
    // The next poll finds nothing new.
    const polls = await metric(daemon, `importer_poll_duration_seconds_count{job="${id}"}`);
    await waitFor('one more poll', async () => (await metric(daemon, `importer_poll_duration_seconds_count{job="${id}"}`)) > polls);
    assert.deepEqual(await predictionCount(daemon, id), { rows: 3095, ids: 3095 });
    assert.equal((await ledger(daemon, id)).length, 8);

    // Queue retries: reset-twice, truncated.csv, ranged.parquet (a broken body is the import's error, not the SDK's). SDK
    // retries: GETs: reset-once's and reset-twice's 2nd attempts; LISTs: each failed page's 2nd attempt, the reset first page's 2nd.
    assert.deepEqual({
      discovered: await metric(daemon, `importer_files_discovered_total{job="${id}",kind="new"}`),
      pollErrors: await metric(daemon, `importer_poll_errors_total{job="${id}"}`),
      importRetries: await metric(daemon, `importer_files_imported_total{job="${id}",outcome="retried"}`),
      getRetries: await metric(daemon, 'importer_s3_retries_total{operation="GetObject"}'),
      listRetries: await metric(daemon, 'importer_s3_retries_total{operation="ListObjectsV2"}'),
    }, {
      discovered: 8,
      pollErrors: 2,
      importRetries: 3,
      getRetries: 2,
      listRetries: 3,
    });
  } finally {
    stack.s3.listPageSize = undefined;
    stack.s3.faults.clear();
    await started?.stop();
  }
}

/**
 * Versions that come and go: a file rewritten three times inside one poll interval while its first
 * version is being fetched (v1 superseded, v2 never seen, v3 imported), and a file deleted before
 * its download (vanished once: no retry, no second GET over later polls).
 */
export async function rewritesAndDeletes(stack: Stack): Promise<void> {
  const id = 'versions';
  const daemon = await runDaemon(stack.config([scenarioJob(id)]));
  const { s3 } = stack;
  const gets = (key: string) => s3.requestLog.filter((r) => r.method === 'GET' && r.path.endsWith(`/${key}`)).length;
  const versions = async (key: string) => (await ledger(daemon, id)).filter((r) => r.key === key);
  try {
    const key = `${id}/x.csv`;
    const gone = `${id}/gone.csv`;
    // v1's download and gone.csv's are held until the rewrites and the delete are done.
    const writes = gate();
    s3.faults.add({ method: 'GET', keyIncludes: key, until: writes.until, times: 1 });
    s3.faults.add({ method: 'GET', keyIncludes: gone, until: writes.until, times: 1 });
    await s3.put(BUCKET, `${id}/stays.csv`, csvRows('stays', 3));
    const e1 = await s3.put(BUCKET, key, csvRows('v1', 10));
    await s3.put(BUCKET, gone, csvRows('gone', 4));
    await waitFor('the GETs of x.csv v1 and gone.csv', async () => gets(key) === 1 && gets(gone) === 1, 90_000);
    // No listing may fall between the writes: LISTs sent meanwhile reach S3 after the last one.
    s3.faults.add({ list: true, keyIncludes: `${id}/`, until: writes.until, times: 1000 });
    const e2 = await s3.put(BUCKET, key, csvRows('v2', 12));
    const e3 = await s3.put(BUCKET, key, csvRows('v3', 7));
    await s3.del(BUCKET, gone);
    writes.open();
    s3.faults.clear();
    assert.equal(new Set([e1, e2, e3]).size, 3);
    const x = await waitFor('v3 imported', async () => {
      const v = await versions(key);
      return v.at(-1)?.status === 'succeeded' && v.every((r) => r.status !== 'pending') && v;
    });
    const etags = await sql(daemon.store)<{ etag: string }>(`SELECT etag FROM import_files WHERE key = $1 ORDER BY file_id`, [key]);
    assert.deepEqual(x.map((r, i) => [etags[i].etag, r.status, r.predictions_loaded]), [[e1, 'superseded', null], [e3, 'succeeded', 7]]);
    const [v] = await waitFor('gone.csv vanished', async () => (await versions(gone))[0]?.status === 'vanished' && versions(gone));
    assert.deepEqual([v.status, v.attempts, v.predictions_loaded], ['vanished', 0, null]);

    // Two more polls: no retry of the vanished version, no new GET, no row of v1 or v2.
    const polls = await metric(daemon, `importer_poll_duration_seconds_count{job="${id}"}`);
    await waitFor('two more polls', async () => (await metric(daemon, `importer_poll_duration_seconds_count{job="${id}"}`)) >= polls + 2);
    assert.deepEqual([gets(gone), gets(key)], [1, 2]);
    assert.deepEqual((await ledger(daemon, id)).map((r) => [r.key.slice(id.length + 1), r.status]), [['gone.csv', 'vanished'], ['stays.csv', 'succeeded'], ['x.csv', 'superseded'], ['x.csv', 'succeeded']]);
    const ids = await sql(daemon.store)<{ tag: string; n: number }>(`SELECT split_part(prediction_id, '-', 1) AS tag, count(*)::INT AS n FROM predictions WHERE model_id = $1 GROUP BY 1 ORDER BY 1`, [id]);
    assert.deepEqual(ids.map((r) => [r.tag, Number(r.n)]), [['stays', 3], ['v3', 7]]);
    assert.deepEqual({
      vanished: await metric(daemon, `importer_files_imported_total{job="${id}",outcome="vanished"}`),
      superseded: await metric(daemon, `importer_files_imported_total{job="${id}",outcome="superseded"}`),
      retried: await metric(daemon, `importer_files_imported_total{job="${id}",outcome="retried"}`),
    }, { vanished: 1, superseded: 1, retried: 0 });
  } finally {
    s3.faults.clear();
    await daemon.stop();
  }
}

/**
 * 500 files with the same LastModified second, listed over 10 pages of 50 keys: discovery goes by
 * key and ETag, so each is recorded and queued exactly once, and later polls add nothing. Only
 * the scheduler runs (importing 500 files takes minutes on a loaded machine, and the import of a
 * file does not depend on how it was listed).
 */
export async function sameSecond(stack: Stack): Promise<void> {
  const { s3 } = stack;
  const second = new Date('2026-11-01T12:00:00Z');
  const keys = Array.from({ length: 500 }, (_, i) => `samesecond/d${i % 5}/f${String(i).padStart(3, '0')}.csv`);
  for (let i = 0; i < keys.length; i += 25) await Promise.all(keys.slice(i, i + 25).map((k, j) => s3.put(BUCKET, k, csvRows(`s${i + j}`, 2))));
  for (const k of keys) await s3.setLastModified(BUCKET, k, second);
  assert.deepEqual(await lastModifiedOf(stack, 'samesecond/'), [second.toISOString()], 'one LastModified for all 500');
  s3.listPageSize = 50;
  s3.clearLog();
  const config = stack.config([scenarioJob('samesecond')]);
  const daemon = await runDaemon(config, { roles: { scheduler: true, worker: false, http: false } });
  const polls = () => metric(daemon, 'importer_poll_duration_seconds_count{job="samesecond"}');
  try {
    await waitFor('three polls', async () => (await polls()) >= 3);
    const l = await ledger(daemon, 'samesecond');
    assert.deepEqual([l.length, new Set(l.map((r) => r.key)).size, l.filter((r) => r.status === 'pending').length], [500, 500, 500]);
    assert.deepEqual(l.map((r) => r.key), [...keys].sort());
    const [q] = await jobQueueStates(config, daemon.queues);
    assert.deepEqual([q.waiting, q.active, q.delayed, q.failed], [500, 0, 0, 0]);
    assert.equal(await metric(daemon, 'importer_files_discovered_total{job="samesecond",kind="new"}'), 500);
    const pages = s3.requestLog.filter((r) => r.query['list-type'] === '2' && r.query.prefix === 'samesecond/');
    assert.ok(pages.length >= 30, `three polls of 10 pages each (${pages.length} LIST requests)`);
    assert.equal(await metric(daemon, 'importer_objects_listed{job="samesecond"}'), 500);
  } finally {
    s3.listPageSize = undefined;
    await daemon.stop();
  }
  // Then a worker alone imports what the scheduler queued: every file once, two rows each.
  const worker = await runDaemon({ ...config, worker: { ...config.worker, concurrency: 16 } }, { roles: { scheduler: false, worker: true, http: false } });
  try {
    const l = await waitFor('500 imported', async () => {
      const rows = await ledger(worker, 'samesecond');
      return rows.every((r) => r.status !== 'pending') && rows;
    }, 180_000);
    assert.deepEqual([l.length, l.filter((r) => r.status === 'succeeded' && Number(r.predictions_loaded) === 2).length], [500, 500]);
    assert.deepEqual(await predictionCount(worker, 'samesecond'), { rows: 1000, ids: 1000 });
    assert.equal(await countedSucceeded(worker, 'samesecond', 500), 500);
  } finally {
    await worker.stop();
  }
}

/**
 * A multipart upload whose LastModified (the upload's start, as on S3) is an hour older than files
 * already imported: discovery goes by key and ETag, so it is imported once like any other.
 */
export async function olderMultipart(stack: Stack): Promise<void> {
  const { s3 } = stack;
  const daemon = await runDaemon(stack.config([scenarioJob('multipart')]));
  try {
    await s3.put(BUCKET, 'multipart/a.csv', csvRows('a', 5));
    await s3.put(BUCKET, 'multipart/b.csv', csvRows('b', 5));
    const ab = await settledLedger(daemon, 'multipart', 2);
    assert.deepEqual(ab.map((r) => r.status), ['succeeded', 'succeeded']);
    const [{ imported }] = await sql(daemon.store)<{ imported: string }>(`SELECT min(last_modified)::VARCHAR AS imported FROM import_files WHERE job_id = 'multipart'`);
    const csv = csvRows('mp', 300);
    const cut = csv.indexOf('\n', csv.length / 2) + 1;
    const etag = await s3.putMultipart(BUCKET, 'multipart/c.csv', [Buffer.from(csv.slice(0, cut)), Buffer.from(csv.slice(cut))]);
    await s3.setLastModified(BUCKET, 'multipart/c.csv', new Date(Date.now() - 3600_000));
    const all = await waitFor('c.csv imported', async () => {
      const m = await ledger(daemon, 'multipart');
      return m.length === 3 && m.every((r) => r.status === 'succeeded') && m;
    });
    assert.deepEqual(all.map((r) => [r.key, r.predictions_loaded]), [['multipart/a.csv', 5], ['multipart/b.csv', 5], ['multipart/c.csv', 300]]);
    const [c] = await sql(daemon.store)<{ etag: string; lm: string }>(`SELECT etag, last_modified::VARCHAR AS lm FROM import_files WHERE key = 'multipart/c.csv'`);
    assert.equal(c.etag, etag);
    assert.ok(new Date(c.lm) < new Date(imported), `c.csv's LastModified ${c.lm} is before the others' ${imported}`);
    assert.deepEqual(await predictionCount(daemon, 'multipart'), { rows: 310, ids: 310 });
    const polls = await metric(daemon, 'importer_poll_duration_seconds_count{job="multipart"}');
    await waitFor('one more poll', async () => (await metric(daemon, 'importer_poll_duration_seconds_count{job="multipart"}')) > polls);
    assert.equal(await metric(daemon, 'importer_files_discovered_total{job="multipart",kind="new"}'), 3);
    assert.equal((await ledger(daemon, 'multipart')).length, 3);
  } finally {
    await daemon.stop();
  }
}

/** The LastModified values (ISO, distinct, sorted) of the objects under a prefix, as S3 lists them. */
async function lastModifiedOf(stack: Stack, prefix: string): Promise<string[]> {
  const out = new Set<string>();
  let token: string | undefined;
  do {
    const page = await stack.s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out.add(o.LastModified!.toISOString());
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return [...out].sort();
}

/**
 * Redis unreachable (connections refused, its data kept) while files are being imported, for 6 s:
 * three times longer than every timer the outage touches (the 2 s BullMQ lock, its 1 s stall check, the 1 s
 * poll interval, ioredis's reconnect backoff, capped at 2 s), so a minute would end in the same
 * state. Imports under way commit or are stalled and re-run, polls wait; once Redis answers, every
 * file (those uploaded during the outage too) is imported exactly once.
 */
export async function redisCut(stack: Stack): Promise<void> {
  const proxy = await startTcpProxy({ host: '127.0.0.1', port: stack.redis.port });
  const config = stack.config([scenarioJob('rcut')], {
    redis: { url: `redis://127.0.0.1:${proxy.port}`, prefix: 'rcut' },
    worker: { concurrency: 2, attempts: 10, backoff: '200ms', lockDuration: '2s', shutdownTimeout: '10s' },
  });
  const daemon = await runDaemon(config);
  try {
    for (let i = 0; i < 8; i++) await stack.s3.put(BUCKET, `rcut/a${i}.parquet`, await parquetRows(stack, `a${i}`, 10_000));
    await waitFor('imports under way', async () => (await ledger(daemon, 'rcut')).some((r) => r.status === 'succeeded'));
    await proxy.cut();
    const atCut = (await ledger(daemon, 'rcut')).filter((r) => r.status === 'succeeded').length;
    for (let i = 0; i < 4; i++) await stack.s3.put(BUCKET, `rcut/b${i}.parquet`, await parquetRows(stack, `b${i}`, 1000));
    await sleep(6000);
    await proxy.restore();
    const l = await waitFor('all 12 imported', async () => {
      const rows = await ledger(daemon, 'rcut');
      return rows.length === 12 && rows.every((r) => r.status === 'succeeded') && rows;
    }, 90_000);
    assert.ok(atCut < 8, `the cut must land mid-run (${atCut} of 8 were done)`);
    assert.deepEqual(l.map((r) => r.predictions_loaded), [...Array(8).fill(10_000), ...Array(4).fill(1000)]);
    assert.deepEqual(await predictionCount(daemon, 'rcut'), { rows: 84_000, ids: 84_000 });
    // Each file committed once. A queue entry re-run after the outage (its lock expired) either found its
    // version committed, or ran while the first run still did and waited for it (test/rerun.test.ts):
    // 13 here once meant both runs were imported in one transaction.
    const succeeded = await countedSucceeded(daemon, 'rcut', 12);
    assert.equal(succeeded, 12, `succeeded counted ${succeeded} times for 12 files`);
  } finally {
    await proxy.restore().catch(() => undefined);
    await daemon.stop();
    await proxy.close();
  }
}

/**
 * SIGTERM to the daemon process while it imports: imports that can finish within
 * worker.shutdownTimeout commit, one whose download is held past it is abandoned (nothing of it
 * committed); the process exits 0 within the deadline. After a restart every file is imported
 * exactly once: no file committed by the first process is imported again (a stalled queue entry
 * finds its version committed and skips it).
 */
export async function sigtermDuringImports(stack: Stack, kind: StoreKind): Promise<void> {
  const prefix = `term-${kind}`;
  const port = await freePort();
  const shutdownMs = 4000;
  const body = {
    redis: { url: stack.redis.url, prefix },
    store: kind === 'postgres'
      ? { kind: 'postgres', url: stack.db!.url, schema: 'term', memoryLimit: '256MB', threads: 1 }
      : { kind: 'duckdb', path: join(stack.tmp.path, `${prefix}.duckdb`), memoryLimit: '256MB', threads: 1 },
    s3: { endpoint: stack.s3.endpoint, forcePathStyle: true, maxAttempts: 2 },
    http: { port, host: '127.0.0.1' },
    defaults: { pollInterval: '1s' },
    worker: { concurrency: 2, attempts: 5, backoff: '200ms', lockDuration: '2s', shutdownTimeout: `${shutdownMs}ms`, tmpDir: stack.tmp.path },
    log: { level: 'info' },
    jobs: [{ id: 'term', source: `s3://${BUCKET}/${prefix}/`, model: { id: prefix }, schema: { predictionId: 'pid', predictionScore: 'score' } }],
  };
  const files = 6;
  for (let i = 0; i < files; i++) await stack.s3.put(BUCKET, `${prefix}/f${i}.parquet`, await parquetRows(stack, `${prefix}-${i}`, 10_000));
  // One download is held far past the deadline: that import cannot finish and must leave nothing behind.
  stack.s3.faults.add({ method: 'GET', keyIncludes: `${prefix}/f5.parquet`, delayMs: 30_000, times: 1 });
  const configPath = join(stack.tmp.path, `${prefix}.yaml`);
  const imported = (out: string) => out.split('\n').filter((l) => l.includes('"msg":"import succeeded"')).map((l) => (JSON.parse(l) as { key: string }).key);
  const first = await spawnCli(['run'], { path: configPath, body });
  let second: Awaited<ReturnType<typeof spawnCli>> | undefined;
  try {
    await waitFor('two imports committed and f5 downloading', async () => imported(first.output()).length >= 2 && stack.s3.requestLog.some((r) => r.method === 'GET' && r.path.endsWith('f5.parquet')), 60_000);
    first.proc.kill('SIGTERM');
    const exit = await Promise.race([first.exited, sleep(shutdownMs + 3000).then(() => 'still running 3 s after the deadline')]);
    assert.deepEqual(exit, { code: 0, signal: null }, first.output().slice(-3000));
    const before = imported(first.output());
    assert.ok(before.length < files && !before.includes(`${prefix}/f5.parquet`), `the first process imported ${before.join(', ')}`);
    assert.match(first.output(), /imports still running at the deadline were abandoned/);

    second = await spawnCli(['run', '--config', configPath]);
    const query = async <T>(q: string): Promise<T[]> => {
      const r = await fetch(`http://127.0.0.1:${port}/api/sql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: q }) });
      if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
      return ((await r.json()) as { rows: T[] }).rows;
    };
    const l = await waitFor('every file imported after the restart', async () => {
      const rows = await query<{ key: string; status: string; n: number }>(`SELECT key, status, predictions_loaded::INT AS n FROM import_files ORDER BY key`).catch(() => []);
      return rows.length === files && rows.every((r) => r.status === 'succeeded') && rows;
    }, 90_000);
    assert.deepEqual(l.map((r) => Number(r.n)), Array(files).fill(10_000));
    const [c] = await query<{ rows: number; ids: number }>(`SELECT count(*)::INT AS rows, count(DISTINCT prediction_id)::INT AS ids FROM predictions`);
    assert.deepEqual([Number(c.rows), Number(c.ids)], [files * 10_000, files * 10_000]);
    // Each file committed by exactly one of the two processes.
    const after = imported(second.output());
    assert.deepEqual([...before, ...after].sort(), l.map((r) => r.key));
    second.proc.kill('SIGTERM');
    assert.deepEqual(await second.exited, { code: 0, signal: null });
  } finally {
    stack.s3.faults.clear();
    first.proc.kill('SIGKILL');
    second?.proc.kill('SIGKILL');
  }
}
