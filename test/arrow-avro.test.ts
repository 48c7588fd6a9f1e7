import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { Int32, Table, tableToIPC, TimestampMillisecond, vectorFromArray } from 'apache-arrow';
import avro from 'avsc';
import snappy from 'snappyjs';
import type { Daemon } from '../src/daemon.ts';
import { createS3Client } from '../src/source/s3.ts';
import { dryRun } from '../src/worker/dry-run.ts';
import { BUCKET, ledger, runDaemon, startStack, STORE_KINDS, waitFor, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

/** Arrow IPC (file and stream) and Avro (null, deflate, snappy) files through the daemon, and hostile ones. */

const T0 = Date.parse('2026-11-20T10:00:00Z');
const arrowTable = (ids: string[]) => new Table({
  prediction_id: vectorFromArray(ids),
  ts: vectorFromArray(ids.map((_, i) => new Date(T0 + i * 1000)), new TimestampMillisecond()),
  label: vectorFromArray(ids.map((_, i) => (i % 2 ? 'no' : 'yes'))),
  score: vectorFromArray(ids.map((_, i) => i / 4)),
  age: vectorFromArray(ids.map((_, i) => 30 + i), new Int32()),
});

const SCHEMA = {
  type: 'record', name: 'Prediction', fields: [
    { name: 'prediction_id', type: 'string' },
    { name: 'ts', type: { type: 'long', logicalType: 'timestamp-millis' } },
    { name: 'label', type: ['null', 'string'] },
    { name: 'score', type: 'double' },
    { name: 'age', type: 'int' },
  ],
};
const avroRecords = (ids: string[]) => ids.map((id, i) => ({ prediction_id: id, ts: T0 + i * 1000, label: i % 2 ? null : 'yes', score: i / 4, age: 30 + i }));
const snappyCodec = (buf: Buffer, done: (err: Error | null, data: Buffer) => void) => {
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(buf));
  done(null, Buffer.concat([Buffer.from(snappy.compress(buf)), crc]));
};
/** An Avro object container file, written by avsc (the schema given as JSON is kept as it is in the header). */
function avroFile(records: object[], codec: string, schema: object = SCHEMA, options: object = {}): Promise<Buffer> {
  const encoder = new avro.streams.BlockEncoder(schema as never, { codec, codecs: { ...avro.streams.BlockEncoder.defaultCodecs(), snappy: snappyCodec }, ...options });
  const chunks: Buffer[] = [];
  encoder.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise((resolve) => encoder.on('end', resolve));
  for (const r of records) encoder.write(r);
  encoder.end();
  return ended.then(() => Buffer.concat(chunks));
}

const JOB = {
  id: 'ab', source: `s3://${BUCKET}/ab/`, model: { id: 'ab', type: 'binary' },
  schema: { predictionId: 'prediction_id', timestamp: 'ts', predictionLabel: 'label', predictionScore: 'score', features: ['age'] },
};

for (const kind of STORE_KINDS) describe(`Arrow IPC and Avro files: ${kind}`, () => {
  let stack: Stack;
  let daemon: Daemon;
  const hostile: Record<string, Buffer> = {};
  before(async () => {
    stack = await startStack({ store: kind });
    daemon = await runDaemon(stack.config([JOB]));
    const arrowFile = Buffer.from(tableToIPC(arrowTable(['f1', 'f2', 'f3']), 'file'));
    const snappyAvro = await avroFile(avroRecords(['s1', 's2', 's3']), 'snappy');
    // The header declares another record than the blocks hold (same sync marker): a wrong schema.
    const sync = Buffer.alloc(16, 7);
    const otherSchema = { type: 'record', name: 'Prediction', fields: [{ name: 'prediction_id', type: 'string' }, { name: 'n', type: 'long' }, { name: 'x', type: 'double' }, { name: 'y', type: 'double' }] };
    hostile['ab/bad/truncated.arrow'] = arrowFile.subarray(0, arrowFile.length - 100);
    hostile['ab/bad/wrong-schema.avro'] = Buffer.concat([
      await avroFile([], 'null', otherSchema, { writeHeader: 'always', syncMarker: sync }),
      await avroFile(avroRecords(['w1', 'w2']), 'null', SCHEMA, { writeHeader: 'never', syncMarker: sync }),
    ]);
    hostile['ab/bad/corrupt-block.avro'] = Buffer.from(snappyAvro).fill(0x41, snappyAvro.length - 40, snappyAvro.length - 30);
    const files: Record<string, Buffer> = {
      'ab/a-file.arrow': arrowFile,
      'ab/b-stream.arrows': Buffer.from(tableToIPC(arrowTable(['t1', 't2']), 'stream')),
      'ab/c.feather': Buffer.from(tableToIPC(arrowTable(['v1']), 'file')),
      'ab/d-null.avro': await avroFile(avroRecords(['n1', 'n2']), 'null'),
      'ab/e-deflate.avro': await avroFile(avroRecords(['d1', 'd2']), 'deflate'),
      'ab/f-snappy.avro': snappyAvro,
      ...hostile,
    };
    for (const [key, body] of Object.entries(files)) await stack.s3.put(BUCKET, key, body);
    await waitFor('every file settled', async () => {
      const l = await ledger(daemon, 'ab');
      return l.length === Object.keys(files).length && l.every((r) => r.status !== 'pending');
    }, 60_000);
  });
  after(async () => {
    await daemon?.stop();
    await stack?.stop();
  });

  it('imports Arrow files and streams and Avro files of every codec, with exact rows and the default version', async () => {
    const l = await ledger(daemon, 'ab');
    assert.deepEqual(l.filter((r) => !r.key.startsWith('ab/bad/')).map((r) => [r.key, r.status, r.rows_read, r.predictions_loaded, r.rows_rejected]), [
      ['ab/a-file.arrow', 'succeeded', 3, 3, 0], ['ab/b-stream.arrows', 'succeeded', 2, 2, 0], ['ab/c.feather', 'succeeded', 1, 1, 0],
      ['ab/d-null.avro', 'succeeded', 2, 2, 0], ['ab/e-deflate.avro', 'succeeded', 2, 2, 0], ['ab/f-snappy.avro', 'succeeded', 3, 3, 0],
    ]);
    const [ts, f] = kind === 'duckdb'
      ? [`strftime(prediction_ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')`, 'to_json(features)::VARCHAR']
      : [`to_char(prediction_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`, 'features::TEXT'];
    const rows = (await sql(daemon.store)(`SELECT prediction_id, model_version, ${ts} AS ts, prediction_label, prediction_score, ${f} AS f
        FROM predictions WHERE model_id = 'ab' ORDER BY prediction_id`)).map((r) => ({ ...r, f: JSON.parse(String(r.f)) }));
    const row = (id: string, i: number, label: string | null) =>
      ({ prediction_id: id, model_version: 'no_version', ts: `2026-11-20T10:00:0${i}Z`, prediction_label: label, prediction_score: i / 4, f: { age: 30 + i } });
    assert.deepEqual(rows, [
      row('d1', 0, 'yes'), row('d2', 1, null), row('f1', 0, 'yes'), row('f2', 1, 'no'), row('f3', 2, 'yes'), row('n1', 0, 'yes'), row('n2', 1, null),
      row('s1', 0, 'yes'), row('s2', 1, null), row('s3', 2, 'yes'), row('t1', 0, 'yes'), row('t2', 1, 'no'), row('v1', 0, 'yes'),
    ]);
  });

  const MESSAGES: Record<string, string> = {
    'ab/bad/corrupt-block.avro': 'ab/bad/corrupt-block.avro: cannot be read as an Avro object container file: a compressed block is corrupt (it does not decompress) (after 0 records)',
    'ab/bad/truncated.arrow': 'ab/bad/truncated.arrow: cannot be read as Arrow IPC: the file is truncated (an Arrow IPC file ends with "ARROW1", this one does not); upload it again',
    'ab/bad/wrong-schema.avro': "ab/bad/wrong-schema.avro: cannot be read as an Avro object container file: a block does not decode with the schema in the file's header (a wrong schema, or a corrupt block) (after 1 records)",
  };

  it('fails a truncated Arrow file, an Avro file with a wrong schema and one with a corrupt block alone, each once, naming the key', async () => {
    const l = await ledger(daemon, 'ab');
    assert.deepEqual(l.filter((r) => r.key.startsWith('ab/bad/')).map((r) => [r.key, r.status, r.attempts, r.error_code, r.error_message]),
      Object.entries(MESSAGES).map(([key, message]) => [key, 'failed', 1, 'IMP_ERR_FORMAT_UNREADABLE', message]));
  });

  // The dry run opens no store: once is enough.
  it('reports them in the dry run like the other formats', { skip: kind !== STORE_KINDS[0] }, async () => {
    const config = stack.config([JOB]);
    const s3 = createS3Client(config.s3);
    const good = await dryRun(config, config.jobs[0], s3, { key: 'ab/f-snappy.avro' });
    assert.deepEqual([good.status, good.format, good.rows, good.errors], ['ok', 'avro', { read: 3, valid: 3, rejected: 0 }, []]);
    const stream = await dryRun(config, config.jobs[0], s3, { key: 'ab/b-stream.arrows' });
    assert.deepEqual([stream.status, stream.format, stream.rows], ['ok', 'arrow', { read: 2, valid: 2, rejected: 0 }]);
    for (const [key, message] of Object.entries(MESSAGES)) {
      const r = await dryRun(config, config.jobs[0], s3, { key });
      assert.deepEqual([r.status, r.format, r.checks, r.errors.map((e) => [e.code, e.message])],
        ['failed', key.endsWith('.avro') ? 'avro' : 'arrow', { access: 'ok', schema: 'failed', records: 'skipped' }, [['IMP_ERR_FORMAT_UNREADABLE', message]]]);
    }
  });
});
