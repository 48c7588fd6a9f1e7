import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import type { Daemon } from '../src/daemon.ts';
import { openMemoryEngine } from '../src/engine/index.ts';
import { readJson } from '../src/formats/json.ts';
import { nestingDepth } from '../src/formats/parquet.ts';
import { DuckDBInstance } from '@duckdb/node-api';
import { tmpDir } from './helpers/tmp.ts';
import { BUCKET, counts, ledger, runDaemon, startStack, STORE_KINDS, waitFor, writeFixture, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

/**
 * Hostile files next to good ones in one prefix: each hostile file fails alone, at its first
 * attempt, with an error naming the file and what is wrong where; the good files import exactly;
 * the daemon stays ready. (The 1,000-deep struct of issue 15 is a 300-deep one here, past the 255
 * levels DuckDB can read all the same; the 50 MB line is a 3 MB one, past DuckDB's 2 MB line limit.) The
 * peak RSS of this process (daemon and test together) is printed as a diagnostic at the end.
 */

const header = 'prediction_id,prediction_ts,predicted_label,proba\n';
const csvRows = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i},2026-11-01T00:00:0${i % 10}Z,click,0.${i % 10}\n`).join('');
/** 16 rows, the 8th opening a quote that never closes (line 9 of the file). */
const unterminated = header + csvRows('u', 7) + 'u7,2026-11-01T00:00:08Z,"click,0.8\n' + csvRows('uu', 8);
const ragged = header + csvRows('r', 5) + 'r5,2026-11-01T00:00:06Z,click,0.6,extra,more\n' + csvRows('rr', 3);
const invalidUtf8 = Buffer.concat([Buffer.from(header + csvRows('v', 1)), Buffer.from('v1,2026-11-01T00:00:01Z,'), Buffer.from([0xff, 0xfe]), Buffer.from(',0.5\n'), Buffer.from(csvRows('vv', 2))]);
const longLine = header + csvRows('l', 2) + `l2,2026-11-01T00:00:01Z,${'x'.repeat(3_000_000)},0.1\n` + csvRows('ll', 2);
/** Epochs no one meant: a row error on its column, not a failed file. */
const outOfRange = 'prediction_id,prediction_ts,predicted_label,proba\no0,1762000000,click,0.1\no1,99999999999999999999,click,0.2\no2,9000000000000000000,click,0.3\no3,1762000001,click,0.4\n';

const job = {
  id: 'hostile', source: `s3://${BUCKET}/hostile/`, maxFileBytes: '4MiB',
  model: { id: 'hostile', version: 'v1', type: 'binary' },
  schema: { predictionId: 'prediction_id', timestamp: 'prediction_ts', predictionLabel: 'predicted_label', predictionScore: 'proba', features: 'feature/' },
  timestamps: { maxAge: '100y', maxAhead: '100y' },
};
/** A parquet file of 3 predictions with a struct column nested `depth` levels deep (x.a.a…). */
async function deepStructParquet(path: string, depth: number): Promise<Buffer> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    await conn.run('SET max_expression_depth = 10000');
    await conn.run(`COPY (SELECT 'deep' || i AS prediction_id, TIMESTAMPTZ '2026-11-01 00:00:00+00' AS prediction_ts, 'click' AS predicted_label, 0.5 AS proba,
      ${"{'a': ".repeat(depth)}1${'}'.repeat(depth)} AS "feature/x" FROM range(3) t(i)) TO '${path}' (FORMAT parquet)`);
  } finally {
    conn.closeSync();
    db.closeSync();
  }
  return readFile(path);
}

/** A 60 KB JSON document nested 10,000 levels deep under an unmapped key. */
const deepJson = (id: string) => `[{"prediction_id": "${id}", "prediction_ts": "2026-11-01T00:00:00Z", "predicted_label": "click", "proba": 0.5, "x": ${'{"a": '.repeat(10_000)}1${'}'.repeat(10_000)}}]`;

/** Bytes XOR-ed with 0xFF in the middle of the first data page of the first column (not the footer), found from the file's own metadata. */
async function flipInDataPage(path: string, bytes: Buffer, n: number): Promise<Buffer> {
  const engine = await openMemoryEngine({ readableDirectory: dirname(path), memoryLimit: '128MB', threads: 1 });
  try {
    const [page] = await engine.run(`SELECT data_page_offset::BIGINT AS o, total_compressed_size::BIGINT AS s FROM parquet_metadata('${path}') ORDER BY column_id LIMIT 1`);
    const middle = Number(page.o) + Math.floor(Number(page.s) / 2);
    const out = Buffer.from(bytes);
    for (let i = 0; i < n; i++) out[middle + i] ^= 0xff;
    assert.ok(middle + n < out.length - out.readUInt32LE(out.length - 8) - 8, 'the flipped bytes are before the footer');
    return out;
  } finally {
    engine.close();
  }
}

const other = { id: 'other', source: `s3://${BUCKET}/other/`, model: { id: 'other', version: 'v1' }, schema: { predictionId: 'prediction_id', predictionScore: 'proba' } };

for (const kind of STORE_KINDS) {
  describe(`hostile files next to good ones: ${kind}`, () => {
    let stack: Stack;
    let daemon: Daemon;
    let base: string;
    before(async () => {
      stack = await startStack({ store: kind });
      daemon = await runDaemon(stack.config([job, other], { worker: { concurrency: 4, attempts: 3, backoff: '200ms', lockDuration: '3s', shutdownTimeout: '10s' } }));
      base = `http://127.0.0.1:${(daemon.http!.server.address() as { port: number }).port}`;
    });
    after(async () => {
      await daemon?.stop();
      await stack?.stop();
    });
    const fixture = (name: string, query: string, options: string) => writeFixture(join(stack.tmp.path, `${kind}-${name}`), query, options).then((p) => readFile(p));
    const put = (key: string, body: Buffer | string) => stack.s3.put(BUCKET, key, body);
    const settled = (jobId: string, keys: string[]) =>
      waitFor(`${keys.length} files of ${jobId} settled`, async () => {
        const l = await ledger(daemon, jobId);
        return keys.every((k) => l.some((r) => r.key === k)) && l.every((r) => r.status !== 'pending') && l;
      }, 90_000);

    it('fails each hostile file alone with a located error, imports the good ones exactly, and stays ready', async () => {
      const preds = (from: number, n: number, extra = '') => `SELECT 'g' || i AS prediction_id, TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i) AS prediction_ts,
        'click' AS predicted_label, 0.5 AS proba, i % 7 AS "feature/n"${extra} FROM range(${from}, ${from + n}) t(i)`;
      const parquet = await fixture('good.parquet', preds(0, 100), 'FORMAT parquet');
      const good: Record<string, Buffer | string> = {
        'hostile/good/a.parquet': parquet,
        'hostile/good/b.csv': await fixture('b.csv', preds(100, 50), 'FORMAT csv, HEADER true'),
        'hostile/good/c.ndjson.gz': await fixture('c.ndjson.gz', preds(150, 20), 'FORMAT json, COMPRESSION gzip'),
        'hostile/keys/with space.csv': header + csvRows('space', 3),
        'hostile/keys/ünïcödé-😀.csv': header + csvRows('uni', 3),
        'hostile/keys/100%+x#1=y&z.csv': header + csvRows('pct', 3),
        // Columns named like SQL keywords or holding quotes are data like any other.
        'hostile/keys/keywords.parquet': await fixture('kw.parquet', `SELECT 'kw' || i AS prediction_id, TIMESTAMPTZ '2026-11-01 00:00:00+00' AS prediction_ts, 'click' AS predicted_label, 0.5 AS proba,
            i AS "feature/select", 'x' AS "feature/from", 'q' AS "feature/a""b'c", 1 AS "feature/drop table x;--" FROM range(4) t(i)`, 'FORMAT parquet'),
        // IDs are opaque: control characters are kept as they are.
        'hostile/keys/control.parquet': await fixture('ctl.parquet', `SELECT 'ctl' || chr(1) || i || chr(9) || chr(10) AS prediction_id, TIMESTAMPTZ '2026-11-01 00:00:00+00' AS prediction_ts, 'click' AS predicted_label, 0.5 AS proba FROM range(3) t(i)`, 'FORMAT parquet'),
        'hostile/good/out-of-range.csv': outOfRange,
        'hostile/good/header-only.csv': header,
        'hostile/good/empty.csv': '',
        // Valid, only deep: read in well under a second (DuckDB types nesting down to maximum_depth, the rest stays JSON).
        'hostile/good/deep.json': deepJson('deep1'),
      };
      const truncated = parquet.subarray(0, Math.floor(parquet.length / 2));
      const magic = Buffer.from(parquet);
      magic.write('XXXX', 0);
      magic.write('XXXX', magic.length - 4);
      const flipped = await flipInDataPage(join(stack.tmp.path, `${kind}-good.parquet`), parquet, 16);
      const bomb = gzipSync(Buffer.concat([Buffer.from(header), Buffer.alloc(100 * 1024 * 1024, 'b0,2026-11-01T00:00:00Z,click,0.5\n')]), { level: 9 });
      assert.ok(bomb.length < 1024 * 1024, `the bomb is ${bomb.length} bytes compressed`);
      const bad: Record<string, Buffer | string> = {
        'hostile/bad/unterminated.csv': unterminated,
        'hostile/bad/ragged.csv': ragged,
        'hostile/bad/invalid-utf8.csv': invalidUtf8,
        'hostile/bad/long-line.csv': longLine,
        'hostile/bad/truncated.parquet': truncated,
        'hostile/bad/bit-flipped.parquet': flipped,
        'hostile/bad/magic.parquet': magic,
        'hostile/bad/csv-named.parquet': header + csvRows('n', 3),
        'hostile/bad/trailing.json': '[{"prediction_id": "t1", "proba": 0.5}] garbage',
        'hostile/bad/broken-line.ndjson': '{"prediction_id": "b1", "proba": 0.5}\n{"prediction_id": "b2", "proba": \n{"prediction_id": "b3", "proba": 0.5}\n',
        'hostile/bad/bomb.csv.gz': bomb,
        'hostile/bad/too-big.parquet': Buffer.alloc(4 * 1024 * 1024 + 1, 1),
        // A column nested over 255 deep: DuckDB 1.5.6 reading it invalidates its database (the store).
        'hostile/bad/deep-struct.parquet': await deepStructParquet(join(stack.tmp.path, `${kind}-deep.parquet`), 300),
      };
      for (const [key, body] of Object.entries({ ...good, ...bad })) await put(key, body);
      await put('other/x.csv', 'prediction_id,proba\nz1,0.5\nz2,0.6\n');
      const keys = Object.keys({ ...good, ...bad }).filter((k) => !k.endsWith('empty.csv'));
      const l = await settled('hostile', keys);
      const byKey = Object.fromEntries(l.map((r) => [r.key, r]));

      // Every hostile file failed at its first attempt, naming itself and the cause.
      const expected: Record<string, [string, RegExp]> = {
        'hostile/bad/unterminated.csv': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/unterminated\.csv: cannot be read: the quote opened on line 9 never closes/],
        'hostile/bad/ragged.csv': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/ragged\.csv: cannot be read: line 7 has more fields than the header's 4: the rows are ragged/],
        'hostile/bad/invalid-utf8.csv': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/invalid-utf8\.csv: cannot be read: line 3 is not valid UTF-8/],
        'hostile/bad/long-line.csv': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/long-line\.csv: cannot be read: line 4 is longer than the maximum line size of 2000000 bytes \(readOptions\.max_line_size raises it\)/],
        'hostile/bad/truncated.parquet': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/truncated\.parquet: cannot be read: /],
        'hostile/bad/bit-flipped.parquet': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/bit-flipped\.parquet: cannot be read: .*(Snappy decompression failure|[Cc]orrupt)/],
        'hostile/bad/magic.parquet': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/magic\.parquet: cannot be read: .*magic bytes/],
        'hostile/bad/csv-named.parquet': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/csv-named\.parquet: cannot be read: /],
        'hostile/bad/trailing.json': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/trailing\.json: cannot be read: /],
        'hostile/bad/broken-line.ndjson': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/broken-line\.ndjson: cannot be read: Invalid Input Error: Malformed JSON .* in line 3/],
        'hostile/bad/bomb.csv.gz': ['IMP_ERR_SOURCE_TOO_LARGE', /^s3:\/\/inference\/hostile\/bad\/bomb\.csv\.gz expands to more than maxDecompressedBytes 41943040 bytes/],
        'hostile/bad/too-big.parquet': ['IMP_ERR_SOURCE_TOO_LARGE', /above maxFileBytes 4194304/],
        'hostile/bad/deep-struct.parquet': ['IMP_ERR_FORMAT_UNREADABLE', /^hostile\/bad\/deep-struct\.parquet: cannot be read: its columns are nested 301 levels deep; DuckDB reads at most 255$/],
      };
      for (const [key, [code, message]] of Object.entries(expected)) {
        const r = byKey[key];
        assert.deepEqual([key, r.status, r.error_code, r.attempts], [key, 'failed', code, 1], `${key}: ${r.error_message}`);
        assert.match(r.error_message!, message);
      }
      // The good ones: exact rows; the out-of-range epochs rejected on their row and column.
      const good3 = ['hostile/keys/with space.csv', 'hostile/keys/ünïcödé-😀.csv', 'hostile/keys/100%+x#1=y&z.csv'];
      assert.deepEqual(good3.map((k) => [byKey[k].status, byKey[k].predictions_loaded]), good3.map(() => ['succeeded', 3]));
      assert.deepEqual(['a.parquet', 'b.csv', 'c.ndjson.gz'].map((f) => byKey[`hostile/good/${f}`].predictions_loaded), [100, 50, 20]);
      assert.deepEqual([byKey['hostile/keys/keywords.parquet'].predictions_loaded, byKey['hostile/keys/control.parquet'].predictions_loaded], [4, 3]);
      assert.deepEqual([byKey['hostile/good/deep.json'].status, byKey['hostile/good/deep.json'].predictions_loaded], ['succeeded', 1]);
      assert.deepEqual([byKey['hostile/good/header-only.csv'].status, byKey['hostile/good/header-only.csv'].rows_read], ['succeeded', 0]);
      const oor = byKey['hostile/good/out-of-range.csv'];
      assert.deepEqual([oor.status, oor.rows_read, oor.predictions_loaded, oor.rows_rejected], ['partially_succeeded', 4, 2, 2]);
      const rejected = await sql(daemon.store)<{ r: number; code: string; c: string }>(`SELECT row_number::INT AS r, code, column_name AS c FROM rejected_rows WHERE key = 'hostile/good/out-of-range.csv' ORDER BY 1`);
      assert.deepEqual(rejected.map((x) => `${x.r}:${x.code}:${x.c}`), ['2:IMP_ERR_ROW_TIMESTAMP_INVALID:prediction_ts', '3:IMP_ERR_ROW_TIMESTAMP_INVALID:prediction_ts']);
      assert.equal(l.length, keys.length, 'the empty object is skipped, not recorded');
      const total = 100 + 50 + 20 + 9 + 4 + 3 + 2 + 1;
      assert.deepEqual(await counts(daemon, 'hostile'), { p: total, a: 0, j: 0 });
      const [ids] = await sql(daemon.store)<{ n: number }>(`SELECT count(DISTINCT prediction_id)::INT AS n FROM predictions WHERE model_id = 'hostile'`);
      assert.equal(ids.n, total);
      const ctl = await sql(daemon.store)<{ id: string }>(`SELECT prediction_id AS id FROM predictions WHERE prediction_id LIKE 'ctl%' ORDER BY 1`);
      assert.deepEqual(ctl.map((r) => r.id), ['ctl\u00010\t\n', 'ctl\u00011\t\n', 'ctl\u00012\t\n']);
      const [kw] = await sql(daemon.store)<{ f: string }>(`SELECT features AS f FROM predictions WHERE prediction_id = 'kw3'`);
      const features = (typeof kw.f === 'string' ? JSON.parse(kw.f) : kw.f) as Record<string, unknown>;
      assert.deepEqual([features.select, features.from, features['a"b\'c'], features['drop table x;--']], [3, 'x', 'q', 1]);

      // The other job imported meanwhile; the daemon is ready and no download is left behind.
      const [x] = await settled('other', ['other/x.csv']);
      assert.deepEqual([x.status, x.predictions_loaded], ['succeeded', 2]);
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
    });

    it('names the file whose feature changed type', async () => {
      const f = (name: string, n: string) => fixture(name, `SELECT 'tc' || i || ${sql_(name)} AS prediction_id, TIMESTAMPTZ '2026-11-01 00:00:00+00' AS prediction_ts, 'click' AS predicted_label, 0.5 AS proba, ${n} AS "feature/n" FROM range(2) t(i)`, 'FORMAT parquet');
      await put('hostile/types/1.parquet', await f('t1.parquet', 'i'));
      await settled('hostile', ['hostile/types/1.parquet']);
      await put('hostile/types/2.parquet', await f('t2.parquet', `'text'`));
      const l = await settled('hostile', ['hostile/types/2.parquet']);
      const r = l.find((x) => x.key === 'hostile/types/2.parquet')!;
      assert.deepEqual([r.status, r.error_code, r.attempts], ['failed', 'IMP_ERR_SCHEMA_FEATURE_CONFLICT', 1]);
      assert.match(r.error_message!, /^hostile\/types\/2\.parquet: feature "n" \(column "feature\/n"\) is VARCHAR in this file but BIGINT in model "hostile"/);
    });
  });
}

const sql_ = (s: string) => `'${s.replaceAll("'", "''")}'`;

describe('parquet nesting depth, from the footer', () => {
  it('counts the levels of a depth-first schema (each element\'s number of children, the root first)', () => {
    assert.equal(nestingDepth([3, 0, 0, 0]), 1); // three plain columns
    assert.equal(nestingDepth([2, 0, 2, 0, 0]), 2); // a column and a struct of two fields
    assert.equal(nestingDepth([2, 2, 1, 0, 0, 0]), 3); // the deep branch first, then a shallow one
    assert.equal(nestingDepth([1, 1, 1, 0]), 3); // a list (its repeated group, its element)
    assert.equal(nestingDepth([1, ...Array(300).fill(1), 0]), 301); // the hostile file's x.a.a…
  });
});

describe('JSON nested 10,000 levels deep', () => {
  it('is typed down to maximum_depth 64 and kept as JSON below (unbounded, typing it took DuckDB half a minute)', async () => {
    const dir = await tmpDir('deep-json-');
    const engine = await openMemoryEngine({ readableDirectory: dir.path, memoryLimit: '256MB', threads: 1 });
    try {
      const path = join(dir.path, 'deep.json');
      await writeFile(path, deepJson('d1'));
      const relation = await readJson({ path, key: 'deep.json' }, {});
      const columns = await engine.run(`DESCRIBE SELECT * FROM ${relation.sql}`);
      const x = String(columns.find((c) => c.column_name === 'x')!.column_type);
      assert.deepEqual([x.split('STRUCT(').length - 1, x.replace(/[()]+$/, '').endsWith(' JSON')], [63, true]);
      const [row] = await engine.run(`SELECT prediction_id, length(x::VARCHAR)::INT AS n FROM ${relation.sql}`);
      assert.deepEqual([row.prediction_id, Number(row.n) > 60_000], ['d1', true]);
    } finally {
      engine.close();
      await dir.cleanup();
    }
  });
});

describe('peak RSS', () => {
  it('of this process after the hostile runs (daemons in-process), recorded in bench/README.md', (t) => {
    const mib = Math.round(process.resourceUsage().maxRSS / 1024);
    t.diagnostic(`peak RSS of the hostile run: ${mib} MiB`);
    // The stores' DuckDB memory limits are 512 MB each; the process stays well within a pod's usual 2 GiB.
    assert.ok(mib < 2048, `peak RSS ${mib} MiB`);
  });
});
