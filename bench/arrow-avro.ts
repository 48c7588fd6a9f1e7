/**
 * Arrow IPC and Avro readers against parquet, on the same rows: each file is opened by its format's
 * reader (`src/formats/`) and loaded by DuckDB with `CREATE TABLE AS SELECT *` into an in-memory
 * database. The time includes the reader's conversion (Arrow → parquet in WASM; Avro → NDJSON via
 * avsc), which is what an import adds for these formats; S3 and the store are left out.
 *
 *   node --openssl-legacy-provider --import tsx bench/arrow-avro.ts [--rows=500000] [--runs=3]
 */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { tableFromIPC, tableToIPC } from 'apache-arrow';
import avro from 'avsc';
import { readParquet as parquetToWasm } from 'parquet-wasm';
import { readArrow } from '../src/formats/arrow.ts';
import { readAvro } from '../src/formats/avro.ts';
import { readParquet } from '../src/formats/parquet.ts';
import type { FormatReader } from '../src/formats/types.ts';
import { median, predictionsSql } from './lib/data.ts';

const arg = (name: string, fallback: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
const rows = arg('rows', 500_000);
const runs = arg('runs', 3);
const dir = await mkdtemp(join(tmpdir(), 'bench-arrow-avro-'));
const db = await DuckDBInstance.create(':memory:');
const conn = await db.connect();

// The data of the other parts, with Avro-legal names (no "/") and the timestamp as epoch milliseconds for Avro.
const rowsSql = `SELECT * RENAME (${Array.from({ length: 20 }, (_, k) => `"feature/n${k}" AS feature_n${k}`).concat(Array.from({ length: 5 }, (_, k) => `"feature/s${k}" AS feature_s${k}`), ['"tag/region" AS tag_region', '"tag/channel" AS tag_channel']).join(', ')})
  FROM (${predictionsSql(0, rows)})`;
const parquet = join(dir, 'p.parquet');
await conn.run(`COPY (${rowsSql}) TO '${parquet}' (FORMAT parquet)`);
const ipcStream = parquetToWasm(await readFile(parquet)).intoIPCStream();
await writeFile(join(dir, 'p.arrows'), ipcStream);
await writeFile(join(dir, 'p.arrow'), tableToIPC(tableFromIPC(ipcStream), 'file'));

const described = (await conn.runAndReadAll(`DESCRIBE ${rowsSql}`)).getRowObjectsJson() as Array<{ column_name: string; column_type: string }>;
const avroType = (t: string) => (t.startsWith('TIMESTAMP') ? { type: 'long', logicalType: 'timestamp-millis' } : t === 'DOUBLE' || t.startsWith('DECIMAL') ? 'double' : 'string');
const schema = { type: 'record', name: 'Prediction', fields: described.map((c) => ({ name: c.column_name, type: avroType(c.column_type) })) };
const values = (await conn.runAndReadAll(`SELECT * REPLACE (epoch_ms(prediction_ts)::DOUBLE AS prediction_ts), ${described.filter((c) => c.column_type.startsWith('DECIMAL')).map((c) => `${c.column_name}::DOUBLE AS ${c.column_name}`).join(', ') || '1 AS _'} FROM (${rowsSql})`)).getRowObjectsJS();
for (const codec of ['null', 'deflate']) {
  const encoder = avro.createFileEncoder(join(dir, `p-${codec}.avro`), schema as never, { codec });
  const done = new Promise((resolve) => encoder.on('finish', resolve));
  for (const v of values) encoder.write(v);
  encoder.end();
  await done;
}

async function time(reader: FormatReader, path: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const relation = await reader({ path, key: path }, {});
  await conn.run(`CREATE OR REPLACE TABLE t AS SELECT * FROM ${relation.sql}`);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const n = Number((await conn.runAndReadAll('SELECT count(*) FROM t')).getRows()[0][0]);
  if (n !== rows) throw new Error(`${path}: ${n} rows, expected ${rows}`);
  for (const f of await readdir(dir)) if (/\.(rows\.ndjson|arrows?\.parquet|feather\.parquet)$/.test(f)) await rm(join(dir, f));
  return seconds;
}

const cases: Array<[string, FormatReader, string]> = [
  ['parquet', readParquet, 'p.parquet'], ['arrow (file)', readArrow, 'p.arrow'], ['arrow (stream)', readArrow, 'p.arrows'],
  ['avro (null)', readAvro, 'p-null.avro'], ['avro (deflate)', readAvro, 'p-deflate.avro'],
];
const results: Array<[string, number, number]> = [];
for (const [name, reader, file] of cases) {
  await time(reader, join(dir, file)); // warm-up: WASM compilation, file cache
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await time(reader, join(dir, file)));
  const seconds = median(xs);
  results.push([name, (await stat(join(dir, file))).size, seconds]);
}
const base = results[0][2];
console.log(`| format | rows | file | read + CREATE TABLE AS (median of ${runs}) | rows/s | vs parquet |\n|---|---|---|---|---|---|`);
for (const [name, size, seconds] of results) {
  console.log(`| ${name} | ${rows.toLocaleString('en')} | ${(size / 1e6).toFixed(1)} MB | ${seconds.toFixed(2)} s | ${(rows / seconds / 1e6).toFixed(3)} M | ${(base / seconds).toFixed(2)} |`);
}
conn.closeSync();
db.closeSync();
await rm(dir, { recursive: true, force: true });
