import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { extensionOf, formatFromKey } from '../src/formats/index.ts';
import { createLogger } from '../src/log.ts';
import { versionJobId } from '../src/queue/queues.ts';
import { PollLock } from '../src/scheduler/poll-lock.ts';
import { isSideFile } from '../src/source/index.ts';
import { startRedis, type RedisHarness } from './helpers/redis.ts';

describe('small parts', () => {
  let redis: RedisHarness;
  let client: Redis;
  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
  });
  after(async () => {
    client?.disconnect();
    await redis?.stop();
  });

  it('lets one poller hold the lock until it lapses', async () => {
    const a = new PollLock(client, 'lock', 400);
    const b = new PollLock(client, 'lock', 400);
    assert.equal(await a.acquireOrRenew(), true);
    assert.equal(await b.acquireOrRenew(), false);
    assert.equal(await a.acquireOrRenew(), true); // renewal by the holder
    await sleep(600); // holder crashed: no renewal
    assert.equal(await b.acquireOrRenew(), true);
    assert.equal(await a.acquireOrRenew(), false);
    await a.release(); // not the holder: no effect
    assert.equal(await b.acquireOrRenew(), true);
    await b.release();
    assert.equal(await client.exists('lock'), 0);
  });

  it('tells side files and formats by name', () => {
    const p = 'models/ctr/';
    assert.deepEqual(
      ['models/ctr/a.parquet', 'models/ctr/_SUCCESS', 'models/ctr/x/.a.parquet.crc', 'models/ctr/_temporary/0/a.parquet', 'models/ctr/t/_delta_log/0.json', 'models/ctr/dir/'].map((k) => isSideFile(p, k, 10)),
      [false, true, true, true, true, true],
    );
    assert.equal(isSideFile(p, 'models/ctr/a.parquet', 0), true);
    assert.equal(isSideFile('_staging/', '_staging/a.parquet', 5), false); // only parts under the prefix count
    assert.deepEqual(
      ['a.parquet', 'a.snappy.parquet', 'a.pq', 'b.csv', 'b.CSV.gz', 'c.json', 'c.jsonl.gz', 'c.ndjson', 'd.txt', 'e.csv.zip'].map(formatFromKey),
      ['parquet', 'parquet', 'parquet', 'csv', 'csv', 'json', 'json', 'json', undefined, undefined],
    );
    assert.deepEqual(['x/part-0.snappy.parquet', 'x/b.csv.gz', 'x/noext'].map(extensionOf), ['.parquet', '.csv.gz', '']);
    assert.equal(versionJobId('j', 'b', 'k', 'e1'), versionJobId('j', 'b', 'k', 'e1'));
    assert.notEqual(versionJobId('j', 'b', 'k', 'e1'), versionJobId('j', 'b', 'k', 'e2'));
  });

  it('never logs secrets', () => {
    let out = '';
    const sink = new Writable({ write: (chunk, _enc, done) => ((out += chunk), done()) });
    const log = createLogger('info', sink);
    log.info({ config: { http: { token: 'tok-123' }, redis: { url: 'redis://:pw@host' } }, headers: { authorization: 'Bearer tok-123' }, secretAccessKey: 'AKIAXX' }, 'starting');
    assert.doesNotMatch(out, /tok-123|pw@host|AKIAXX/);
    assert.match(out, /\[redacted\]/);
  });
});
