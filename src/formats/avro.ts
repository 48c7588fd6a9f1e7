import { open } from 'node:fs/promises';
import { crc32, inflateRaw } from 'node:zlib';
import avro from 'avsc';
import snappy from 'snappyjs';
import { describeError, ImporterError } from '../errors.ts';
import { ROW_NUMBER_COLUMN, sqlIdent, sqlString, type FormatReader } from './types.ts';

type AvroSchema = string | AvroSchema[] | { type: AvroSchema; logicalType?: string; fields?: Array<{ name: string; type: AvroSchema }> };

/** Snappy blocks carry the CRC-32 of the uncompressed data in their last 4 bytes (Avro spec). */
function unsnappy(block: Buffer, done: (err: Error | null, data?: Buffer) => void) {
  try {
    const data = Buffer.from(snappy.uncompress(block.subarray(0, block.length - 4)));
    if (crc32(data) !== block.readUInt32BE(block.length - 4)) return done(new Error('snappy block checksum mismatch'));
    done(null, data);
  } catch (err) {
    done(err as Error);
  }
}
const CODECS = { null: (b: Buffer, done: (err: Error | null, data?: Buffer) => void) => done(null, b), deflate: inflateRaw, snappy: unsnappy };

/** avsc's terse errors, said so an operator knows what is wrong with the file. */
const AVSC_MESSAGES: Array<[RegExp, string]> = [
  [/^truncated block$/, "a block does not decode with the schema in the file's header (a wrong schema, or a corrupt block)"],
  [/^invalid sync marker$/, "a block is corrupt (its sync marker is not the header's)"],
  [/codec decompression error$/, 'a compressed block is corrupt (it does not decompress)'],
  [/^invalid magic bytes$/, 'it does not start like an Avro object container file ("Obj\\x01")'],
];

/** The DuckDB type of an Avro field, and the SQL that turns its JSON value into that type. */
function column(schema: AvroSchema): { type: string; sql: (ref: string) => string } {
  const plain = (type: string) => ({ type, sql: (ref: string) => ref });
  if (Array.isArray(schema)) {
    const members = schema.filter((s) => s !== 'null');
    return members.length === 1 ? column(members[0]) : plain('JSON');
  }
  if (typeof schema === 'object' && typeof schema.type === 'string') {
    const base = column(schema.type);
    switch (`${schema.type}/${schema.logicalType}`) {
      case 'long/timestamp-millis': return { type: 'BIGINT', sql: (ref) => `timezone('UTC', epoch_ms(${ref}))` };
      case 'long/timestamp-micros': return { type: 'BIGINT', sql: (ref) => `timezone('UTC', make_timestamp(${ref}))` };
      case 'long/local-timestamp-millis': return { type: 'BIGINT', sql: (ref) => `epoch_ms(${ref})` };
      case 'long/local-timestamp-micros': return { type: 'BIGINT', sql: (ref) => `make_timestamp(${ref})` };
      case 'int/date': return { type: 'INTEGER', sql: (ref) => `(DATE '1970-01-01' + ${ref})` };
    }
    if (['enum', 'fixed'].includes(schema.type)) return plain('VARCHAR');
    if (['record', 'array', 'map'].includes(schema.type)) return plain('JSON');
    return base;
  }
  if (typeof schema === 'object') return column(schema.type);
  const types: Record<string, string> = { boolean: 'BOOLEAN', int: 'INTEGER', long: 'BIGINT', float: 'DOUBLE', double: 'DOUBLE', string: 'VARCHAR', bytes: 'VARCHAR', null: 'VARCHAR' };
  return plain(types[schema] ?? 'JSON');
}

/** Bytes and fixed values are written as base64 text; everything else as JSON has it. */
function replacer(this: Record<string, unknown>, key: string, value: unknown) {
  const raw = this[key];
  return Buffer.isBuffer(raw) ? raw.toString('base64') : value;
}

/**
 * Avro object container files (`.avro`; codecs null, deflate, snappy), decoded by avsc as they
 * stream in. The records are written as NDJSON next to the download and DuckDB reads that with the
 * column types the file's own schema declares (timestamps and dates by their logical types; records,
 * arrays, maps and unions of several types as JSON; bytes as base64). Avro is row-oriented: each
 * record is decoded in JavaScript, the one format here where rows pass through it.
 */
export const readAvro: FormatReader = async (file) => {
  const target = `${file.path}.rows.ndjson`;
  const out = await open(target, 'w');
  let fields: Array<{ name: string; type: AvroSchema }> = [];
  let records = 0;
  let sawHeader = false;
  try {
    const decoder = avro.createFileDecoder(file.path, { codecs: CODECS });
    decoder.on('metadata', (_type: unknown, _codec: string, header: { meta: Record<string, Buffer> }) => {
      const schema = JSON.parse(header.meta['avro.schema'].toString('utf8')) as AvroSchema;
      if (typeof schema !== 'object' || Array.isArray(schema) || schema.type !== 'record') decoder.destroy(new Error('its schema is not a record, so its values are not rows'));
      else fields = schema.fields ?? [];
      sawHeader = true;
    });
    let buffer = '';
    for await (const record of decoder) {
      buffer += `${JSON.stringify(record, replacer)}\n`;
      records++;
      if (buffer.length > 1 << 20) {
        await out.write(buffer);
        buffer = '';
      }
    }
    await out.write(buffer);
    // avsc ends quietly on a file cut inside a block or its header: what it left unread tells.
    const tap = (decoder as unknown as { _tap?: { buf: Buffer; pos: number } })._tap;
    const left = tap ? tap.buf.length - tap.pos : 0;
    if (!sawHeader || left > 0) throw new Error(`the file is truncated (it ends inside ${sawHeader ? 'a block' : 'its header'}${left > 0 ? `, ${left} bytes left over` : ''}); upload it again`);
  } catch (err) {
    const message = describeError(err).message;
    const why = AVSC_MESSAGES.find(([re]) => re.test(message))?.[1] ?? message;
    throw new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${file.key}: cannot be read as an Avro object container file: ${why} (after ${records} records)`, {
      location: { file: file.key, row: records + 1 },
      permanent: true,
      cause: err,
    });
  } finally {
    await out.close();
  }
  const columns = fields.map((f) => [f.name, column(f.type)] as const);
  return {
    sql: `(SELECT row_number() OVER () AS ${ROW_NUMBER_COLUMN}, ${columns.map(([name, c]) => `${c.sql(sqlIdent(name))} AS ${sqlIdent(name)}`).join(', ')}
            FROM read_json(${sqlString(target)}, format = 'newline_delimited', columns = {${columns.map(([name, c]) => `${sqlString(name)}: ${sqlString(c.type)}`).join(', ')}}))`,
    rowNumberColumn: ROW_NUMBER_COLUMN,
  };
};
