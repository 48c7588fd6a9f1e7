import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createS3Client, downloadObject, type DownloadParts } from '../src/source/index.ts';
import type { ListedObject } from '../src/store/store.ts';
import { startS3, useS3rverCredentials, type FaultRule, type S3Harness } from './helpers/s3.ts';
import { tmpDir, type TmpDir } from './helpers/tmp.ts';

const BUCKET = 'dl';
/** 11 parts of 100,000 bytes, the last one 3 bytes; 3 in flight. */
const PARTS: DownloadParts = { partBytes: 100_000, concurrency: 3 };
const SIZE = 1_000_003;

describe('downloading an object in byte ranges', () => {
  let s3: S3Harness;
  let tmp: TmpDir;
  let client: ReturnType<typeof createS3Client>;
  let n = 0;
  before(async () => {
    useS3rverCredentials();
    [s3, tmp] = await Promise.all([startS3({ buckets: [BUCKET] }), tmpDir('download-test-')]);
    client = createS3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, maxAttempts: 3 });
  });
  after(async () => {
    client?.destroy();
    await s3?.stop();
    await tmp?.cleanup();
  });
  beforeEach(() => {
    s3.faults.clear();
    s3.clearLog();
  });

  /** Puts random bytes under a fresh key; returns the listing entry and the bytes. */
  const putObject = async (size = SIZE): Promise<{ object: ListedObject; body: Buffer }> => {
    const key = `obj-${++n}.bin`;
    const body = randomBytes(size);
    const etag = await s3.put(BUCKET, key, body);
    return { object: { bucket: BUCKET, key, etag, size, lastModified: new Date() }, body };
  };
  const gets = (key: string) => s3.requestLog.filter((r) => r.method === 'GET' && r.path === `/${BUCKET}/${key}`).length;
  const target = () => join(tmp.path, `file-${n}.bin`);
  /**
   * Downloads `object` in `parts` and, once `held` GETs were asked for (held by the caller's fault
   * rules), applies `change` to it; returns the outcome, after checking no file was left behind.
   */
  const downloadWhile = async (object: ListedObject, change: () => Promise<unknown>, parts = PARTS, held = 3) => {
    const download = downloadObject(client, object, target(), 10 * SIZE, parts);
    await waitForGets(() => gets(object.key) >= held);
    await change();
    const outcome = await download;
    assert.equal(existsSync(target()), false);
    return outcome;
  };

  it('writes every range at its offset: the file equals the object, one GET per part', async () => {
    const { object, body } = await putObject();
    const path = target();
    assert.deepEqual(await downloadObject(client, object, path, 10 * SIZE, PARTS), { kind: 'downloaded', bytes: SIZE });
    assert.ok((await readFile(path)).equals(body));
    assert.equal(gets(object.key), 11);
  });

  it('fetches an object of at most one part, or with partBytes 0, in one GET', async () => {
    const { object, body } = await putObject(100_000);
    assert.deepEqual(await downloadObject(client, object, target(), 10 * SIZE, PARTS), { kind: 'downloaded', bytes: 100_000 });
    assert.ok((await readFile(target())).equals(body));
    const big = await putObject();
    await downloadObject(client, big.object, target(), 10 * SIZE, { partBytes: 0, concurrency: 3 });
    assert.ok((await readFile(target())).equals(big.body));
    assert.deepEqual([gets(object.key), gets(big.object.key)], [1, 1]);
  });

  it('sends If-Match with the listed ETag on every GET, ranged or single', async () => {
    const { object } = await putObject();
    await downloadObject(client, object, target(), 10 * SIZE, PARTS);
    const small = await putObject(1000);
    await downloadObject(client, small.object, target(), 10 * SIZE, { partBytes: 0, concurrency: 3 });
    const asSet = (rows: unknown[][]) => rows.map((r) => JSON.stringify(r)).sort();
    const sent = s3.requestLog.filter((r) => r.method === 'GET').map((r) => [r.path, r.ifMatch, r.range ?? null]);
    assert.deepEqual(asSet(sent), asSet([
      ...Array.from({ length: 11 }, (_, i) => [`/${BUCKET}/${object.key}`, `"${object.etag}"`, `bytes=${i * 100_000}-${Math.min(SIZE, (i + 1) * 100_000) - 1}`]),
      [`/${BUCKET}/${small.object.key}`, `"${small.object.etag}"`, null],
    ]), 'ranges are fetched 3 at a time, so compared as a set');
  });

  it('handles a change between listing and a single GET (s3.downloadPartSize 0) as it does between ranges', async () => {
    const single: DownloadParts = { partBytes: 0, concurrency: 3 };
    const cases: Array<[string, Partial<FaultRule>, (key: string) => Promise<unknown>, string]> = [
      ['rewritten, same size', {}, (key) => s3.put(BUCKET, key, randomBytes(SIZE)), 'superseded'],
      ['deleted', {}, (key) => s3.del(BUCKET, key), 'vanished'],
      ['rewritten, same size, on a store that ignores If-Match', { ignoreIfMatch: true }, (key) => s3.put(BUCKET, key, randomBytes(SIZE)), 'superseded'],
    ];
    for (const [what, fault, change, kind] of cases) {
      const { object } = await putObject();
      s3.faults.add({ method: 'GET', keyIncludes: object.key, delayMs: 1000, times: 1, ...fault });
      assert.deepEqual(await downloadWhile(object, () => change(object.key), single, 1), { kind }, what);
      assert.equal(gets(object.key), 1, what);
    }
  });

  it('retries a part that failed with 503 and still writes the exact object', async () => {
    const { object, body } = await putObject();
    s3.faults.add({ method: 'GET', keyIncludes: object.key, status: 503, times: 2 });
    await downloadObject(client, object, target(), 10 * SIZE, PARTS);
    assert.ok((await readFile(target())).equals(body));
    assert.equal(gets(object.key), 13, '11 parts and 2 retries');
  });

  it('is superseded when the object is rewritten while its parts are fetched, and leaves no file behind', async () => {
    const { object } = await putObject();
    // The three parts in flight are held while the object is rewritten, then fail If-Match (412). (Holding
    // them all keeps reads away from s3rver's rewrite, which is not atomic: a read caught in it gets a 416.)
    s3.faults.add({ method: 'GET', keyIncludes: object.key, delayMs: 1500, times: 3 });
    assert.deepEqual(await downloadWhile(object, () => s3.put(BUCKET, object.key, randomBytes(SIZE))), { kind: 'superseded' });
    assert.equal(gets(object.key), 3, 'the remaining parts were not fetched');
  });

  it('is vanished when the object is deleted between its parts', async () => {
    const { object } = await putObject();
    s3.faults.add({ method: 'GET', keyIncludes: object.key, delayMs: 1500, times: 1 });
    assert.deepEqual(await downloadWhile(object, () => s3.del(BUCKET, object.key)), { kind: 'vanished' });
  });

  it('is superseded when a store that ignores If-Match serves a part of a rewrite of another size', async () => {
    const { object } = await putObject();
    // No GET is checked against the ETag; the three parts in flight are held until the object is 500 bytes longer.
    s3.faults.add({ method: 'GET', keyIncludes: object.key, delayMs: 1500, ignoreIfMatch: true, times: 3 });
    s3.faults.add({ method: 'GET', keyIncludes: object.key, ignoreIfMatch: true, times: 20 });
    assert.deepEqual(await downloadWhile(object, () => s3.put(BUCKET, object.key, randomBytes(SIZE + 500))), { kind: 'superseded' });
  });

  it('is superseded when a range is refused as not satisfiable (416) and the object has changed since the listing', async () => {
    const { object } = await putObject();
    await s3.put(BUCKET, object.key, randomBytes(SIZE - 500_000));
    s3.faults.add({ method: 'GET', keyIncludes: object.key, status: 416, times: 1 });
    // One range at a time: the first one's 416 decides, through a HEAD with If-Match (412).
    assert.deepEqual(await downloadObject(client, object, target(), 10 * SIZE, { partBytes: 100_000, concurrency: 1 }), { kind: 'superseded' });
    assert.equal(existsSync(target()), false);
    assert.deepEqual(s3.requestLog.filter((r) => r.path === `/${BUCKET}/${object.key}`).map((r) => r.method), ['GET', 'HEAD']);
  });

  it('fails for good, naming the object, when a range is refused (416) but the object still has the listed ETag', async () => {
    const { object } = await putObject();
    s3.faults.add({ method: 'GET', keyIncludes: object.key, status: 416, times: 1 });
    await assert.rejects(downloadObject(client, object, target(), 10 * SIZE, { partBytes: 100_000, concurrency: 1 }), (err: Error & { code?: string; permanent?: boolean }) => {
      assert.equal(err.code, 'IMP_ERR_SOURCE_ACCESS');
      assert.equal(err.permanent, true);
      assert.equal(err.message, `s3://${BUCKET}/${object.key} was listed with ${SIZE} bytes and still has ETag ${object.etag} (${SIZE} bytes), but a byte range inside that size was refused (HTTP 416); the endpoint's listing and its objects disagree: check the S3-compatible store, or set s3.downloadPartSize to 0 for one GET per object`);
      return true;
    });
    assert.equal(existsSync(target()), false);
  });

  it('fetches 11 ranges at once without a listener warning (s3.downloadConcurrency above 10)', async () => {
    const { object, body } = await putObject();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      await downloadObject(client, object, target(), 10 * SIZE, { partBytes: 100_000, concurrency: 16 });
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off('warning', onWarning);
    }
    assert.ok((await readFile(target())).equals(body));
    assert.deepEqual(warnings, []);
  });

  it('fails naming the object when a part is refused, and leaves no file behind', async () => {
    const { object } = await putObject();
    s3.faults.add({ method: 'GET', keyIncludes: object.key, status: 403, times: 20 });
    await assert.rejects(downloadObject(client, object, target(), 10 * SIZE, PARTS), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'IMP_ERR_SOURCE_ACCESS');
      assert.match(err.message, new RegExp(`^cannot download s3://${BUCKET}/${object.key}: AccessDenied \\(HTTP 403\\).*check the credentials`));
      return true;
    });
    assert.equal(existsSync(target()), false);
  });

  it('falls back to one GET when the endpoint answers a range with the whole object, or with another range', async () => {
    for (const fault of [{ ignoreRange: true }, { answerRange: 'bytes=0-9' }]) {
      const { object, body } = await putObject();
      s3.faults.add({ method: 'GET', keyIncludes: object.key, times: 1, ...fault });
      assert.deepEqual(await downloadObject(client, object, target(), 10 * SIZE, PARTS), { kind: 'downloaded', bytes: SIZE });
      assert.ok((await readFile(target())).equals(body));
    }
  });
});

async function waitForGets(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(done(), 'the parts were requested');
}
