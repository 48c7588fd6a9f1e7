// Self-test for the integration-test harness in test/helpers/.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { startRedis, type RedisHarness } from './helpers/redis.ts';
import { makeClient, startS3, type S3Harness } from './helpers/s3.ts';
import { tmpDir } from './helpers/tmp.ts';

const md5 = (b: Buffer | string) => crypto.createHash('md5').update(b).digest('hex');

/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

describe('redis harness', () => {
  let redis: RedisHarness;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());

  test('answers PING on a private port and flushAll empties it', async () => {
    assert.notEqual(redis.port, 6379);
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    const conn = new Redis(redis.url);
    try {
      assert.equal(await conn.ping(), 'PONG');
      await conn.set('k', 'v');
      assert.equal(await conn.dbsize(), 1);
      await redis.flushAll();
      assert.equal(await conn.dbsize(), 0);
    } finally {
      conn.disconnect();
    }
  });
});

describe('s3 harness', () => {
  let s3: S3Harness;
  const bucket = 'harness';
  before(async () => {
    s3 = await startS3();
    await s3.createBucket(bucket);
  });
  after(() => s3.stop());

  test('lists 1200 objects across pages through the proxy', async () => {
    const keys = Array.from({ length: 1200 }, (_, i) => `a/b/c/obj-${String(i).padStart(4, '0')}.txt`);
    await forEachLimit(keys, 20, (key) => s3.put(bucket, key, key));

    s3.clearLog();
    const listed: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await s3.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: 'a/b/c/', ContinuationToken: token }),
      );
      pages++;
      listed.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);

    assert.equal(pages, 2);
    assert.equal(listed.length, 1200);
    assert.deepEqual(listed, keys); // keys are zero-padded, so sorted order == creation order
    const lists = s3.requestLog.filter((r) => r.method === 'GET' && r.query['list-type'] === '2');
    assert.equal(lists.length, 2);
    assert.equal(lists[0].path, `/${bucket}/`); // the SDK adds a trailing slash
    assert.equal(lists[0].query.prefix, 'a/b/c/');

    // The helper goes direct to s3rver, so it does not show up in the log.
    assert.equal((await s3.list(bucket, 'a/b/')).length, 1200);
    assert.equal(s3.requestLog.length, 2);
  });

  test('put returns the unquoted MD5 ETag and bytes round-trip', async () => {
    const body = crypto.randomBytes(3 * 1024 * 1024); // > 1 MB: SDK sends Expect: 100-continue
    // Through the proxy with the SDK directly, to prove request bodies stream intact.
    const out = await s3.client.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'big.bin', Body: body }),
    );
    assert.equal(out.ETag, `"${md5(body)}"`);
    const got = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'big.bin' }));
    assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body));

    const dir = await tmpDir('harness-');
    try {
      const file = path.join(dir.path, 'x.csv');
      await writeFile(file, 'a,b\n1,2\n');
      assert.equal(await s3.putFile(bucket, 'f/x.csv', file), md5('a,b\n1,2\n'));
      assert.deepEqual(await s3.list(bucket, 'f/'), [
        { key: 'f/x.csv', etag: md5('a,b\n1,2\n'), size: 8 },
      ]);
      await s3.del(bucket, 'f/x.csv');
      assert.deepEqual(await s3.list(bucket, 'f/'), []);
    } finally {
      await dir.cleanup();
    }
  });

  test('GetObject honours If-Match', async () => {
    const etag = await s3.put(bucket, 'm/obj.txt', 'version-1');
    assert.equal(etag, md5('version-1'));

    const ok = await s3.client.send(
      new GetObjectCommand({ Bucket: bucket, Key: 'm/obj.txt', IfMatch: `"${etag}"` }),
    );
    assert.equal(await ok.Body!.transformToString(), 'version-1');

    await s3.put(bucket, 'm/obj.txt', 'version-2');
    await assert.rejects(
      s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'm/obj.txt', IfMatch: `"${etag}"` })),
      (err: any) => {
        assert.equal(err.name, 'PreconditionFailed');
        assert.equal(err.$metadata.httpStatusCode, 412);
        return true;
      },
    );

    await assert.rejects(
      s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'm/missing', IfMatch: `"${etag}"` })),
      (err: any) => {
        assert.equal(err.name, 'NoSuchKey');
        assert.equal(err.$metadata.httpStatusCode, 404);
        return true;
      },
    );
  });

  test('injected faults fail the next matching requests only', async () => {
    await s3.put(bucket, 'fault/obj.txt', 'payload');
    const client = makeClient(s3.endpoint, 1); // no SDK retries
    try {
      s3.faults.add({ method: 'GET', keyIncludes: 'fault/', status: 500, times: 1 });
      assert.equal(s3.faults.pending.length, 1);
      await assert.rejects(
        client.send(new GetObjectCommand({ Bucket: bucket, Key: 'fault/obj.txt' })),
        (err: any) => {
          assert.equal(err.name, 'InternalError');
          assert.equal(err.$metadata.httpStatusCode, 500);
          return true;
        },
      );
      assert.equal(s3.faults.pending.length, 0);
      const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'fault/obj.txt' }));
      assert.equal(await got.Body!.transformToString(), 'payload');

      s3.faults.add({ method: 'GET', status: 503, times: 1, delayMs: 200 });
      const started = Date.now();
      await assert.rejects(
        client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'fault/' })),
        (err: any) => {
          assert.equal(err.name, 'SlowDown');
          assert.equal(err.$metadata.httpStatusCode, 503);
          return true;
        },
      );
      assert.ok(Date.now() - started >= 190);
    } finally {
      client.destroy();
    }
  });
  test('resets, truncated bodies, list-only rules, a LIST page size, multipart uploads and LastModified', async () => {
    const body = crypto.randomBytes(64 * 1024);
    await s3.put(bucket, 'kinds/a.bin', body);
    for (let i = 0; i < 5; i++) await s3.put(bucket, `kinds/list/${i}.txt`, String(i));
    const client = makeClient(s3.endpoint, 1); // no SDK retries
    const list = async () => {
      const pages: number[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'kinds/list/', ContinuationToken: token }));
        pages.push(page.Contents?.length ?? 0);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return pages;
    };
    try {
      s3.faults.add({ method: 'GET', keyIncludes: 'kinds/a.bin', reset: true, times: 1 });
      await assert.rejects(client.send(new GetObjectCommand({ Bucket: bucket, Key: 'kinds/a.bin' })), (err: any) => /ECONNRESET|socket hang up/.test(`${err.code} ${err.message}`));
      s3.faults.add({ method: 'GET', keyIncludes: 'kinds/a.bin', truncate: true, times: 1 });
      const cut = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'kinds/a.bin' }));
      assert.equal(cut.ContentLength, body.length);
      await assert.rejects(cut.Body!.transformToByteArray());
      const whole = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'kinds/a.bin' }));
      assert.ok(Buffer.from(await whole.Body!.transformToByteArray()).equals(body));

      // A list-only rule matches the listing's prefix, and leaves a GET of a key under it alone.
      s3.listPageSize = 2;
      assert.deepEqual(await list(), [2, 2, 1]);
      s3.faults.add({ list: true, keyIncludes: 'kinds/list/', queryIncludes: 'continuation-token', status: 500, times: 1 });
      assert.equal(await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'kinds/list/1.txt' }))).Body!.transformToString(), '1');
      await assert.rejects(list(), (err: any) => err.$metadata?.httpStatusCode === 500);
      assert.equal(s3.faults.pending.length, 0);
      s3.listPageSize = undefined;
      assert.deepEqual(await list(), [5]);

      const etag = await s3.putMultipart(bucket, 'kinds/mp.txt', [Buffer.from('hello '), Buffer.from('world')]);
      const at = new Date('2026-01-02T03:04:05Z');
      await s3.setLastModified(bucket, 'kinds/mp.txt', at);
      const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'kinds/mp.txt' }));
      assert.deepEqual([await got.Body!.transformToString(), got.ETag, got.LastModified?.toISOString()], ['hello world', `"${etag}"`, at.toISOString()]);
    } finally {
      s3.listPageSize = undefined;
      s3.faults.clear();
      client.destroy();
    }
  });
});
