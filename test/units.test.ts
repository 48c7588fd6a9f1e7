import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { extensionOf, formatFromKey } from '../src/formats/index.ts';
import type { Logger } from 'pino';
import { validateConfig } from '../src/config/index.ts';
import { createLogger, secretValues } from '../src/log.ts';
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

  it('never logs a secret: secret keys at any depth, errors, config dumps, child bindings, URLs, headers and known values in text', () => {
    const nest = (depth: number, leaf: Record<string, unknown>): Record<string, unknown> => (depth === 0 ? leaf : { [`level${depth}`]: nest(depth - 1, leaf) });
    const config = validateConfig({
      redis: { url: 'redis://:redis-pass-4711@127.0.0.1:6379' },
      store: { kind: 'postgres', url: 'postgres://importer:pg-pass-4711@db:5432/inferences' },
      http: { token: 'http-token-4711-4711' },
      jobs: [{ id: 'a', source: 's3://bucket/a/', model: { id: 'm' }, schema: { predictionId: 'id', predictionScore: 's' } }],
    });
    const rows: Array<[string, (log: Logger) => void, string[], string]> = [
      ...Array.from({ length: 8 }, (_, d): [string, (log: Logger) => void, string[], string] =>
        [`token, password, sessionToken, secretAccessKey and url at depth ${d + 1}`, (log) => log.info(nest(d, {
          token: `tok-${d}-secret`, password: `pw-${d}-secret`, sessionToken: `st-${d}-secret`, secretAccessKey: `sak-${d}-secret`, url: `postgres://u:url-${d}-secret@h/db`, keep: `kept-${d}`,
        })), [`tok-${d}-secret`, `pw-${d}-secret`, `st-${d}-secret`, `sak-${d}-secret`, `url-${d}-secret`], `kept-${d}`]),
      ['secrets inside arrays', (log) => log.info({ nodes: [{ host: 'kept-node' }, { url: 'redis://:arr-secret-1@h' }], notes: ['see postgres://u:arr-secret-2@h/db'] }), ['arr-secret-1', 'arr-secret-2'], 'kept-node'],
      ['an Authorization header', (log) => log.info({ req: { headers: { Authorization: 'Bearer hdr-secret-1', host: 'kept-host' } } }), ['hdr-secret-1'], 'kept-host'],
      ['an error with a URL in its message and secrets in its properties', (log) => {
        const err = Object.assign(new Error('cannot connect to redis://:err-pass-1@10.0.0.1:6379'), { options: nest(5, { password: 'err-prop-secret' }) });
        log.error({ err }, 'kept-message');
      }, ['err-pass-1', 'err-prop-secret'], 'kept-message'],
      ['an error logged as the object', (log) => log.error(Object.assign(new Error('Bearer err-bearer-secret refused'), { sessionToken: 'err-st-secret' })), ['err-bearer-secret', 'err-st-secret'], 'refused'],
      ['a config dump', (log) => log.info({ config }, 'kept-config'), ['redis-pass-4711', 'pg-pass-4711', 'http-token-4711-4711'], '"prefix":"importer"'],
      ['a URL, a Bearer value and a query token in the message', (log) => log.warn('Redis unreachable at redis://user:msg-pass-1@h:6379; sent Authorization: Bearer msg-bearer-1 to /x?token=msg-query-1&keep=kept-q'),
        ['msg-pass-1', 'msg-bearer-1', 'msg-query-1'], 'keep=kept-q'],
      ["a child logger's bindings", (log) => log.child({ db: nest(5, { password: 'child-secret-1' }) }).info('kept-child'), ['child-secret-1'], 'kept-child'],
      ['a known secret value in free text', (log) => log.info({ detail: 'the server echoed free-text-secret-1 back' }, 'http-token-4711-4711 in a message'), ['free-text-secret-1', 'http-token-4711-4711'], 'echoed'],
    ];
    for (const [what, write, secrets, kept] of rows) {
      let out = '';
      const sink = new Writable({ write: (chunk, _enc, done) => ((out += chunk), done()) });
      write(createLogger('info', sink, [...secretValues(config, {}), 'free-text-secret-1']));
      for (const secret of secrets) assert.ok(!out.includes(secret), `${what}: ${secret} in ${out}`);
      assert.ok(out.includes(kept), `${what}: the rest of the line is kept: ${out}`);
      assert.match(out, /\[redacted\]/, what);
    }
  });
});
