import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import {
  decodeDeletionVector,
  decodeZ85,
  deltaRelation,
  deltaTableRoots,
  deletionVectorRelativePath,
  latestDeltaVersion,
  parseRoaringBitmapArray,
  replayDeltaLog,
  type DeltaFileAccess,
  type DeltaSnapshot,
  type RunQuery,
} from '../src/formats/delta/index.ts';
import { sqlIdent, sqlString } from '../src/formats/types.ts';

// The shared corpus sits beside the repository (../shared), here and in CI.
const CORPUS = process.env.DELTA_CORPUS ?? new URL('../../shared/corpus/delta', import.meta.url).pathname;

interface Expectation {
  case: string;
  tableRoot: string;
  expectedContent: string | null;
  latestVersion: number;
  snapshotStartsFromCheckpoint: { version: number; kind: string; parts: number; sidecars: number } | null;
  protocol: { minReaderVersion: number; readerFeatures?: string[] | null };
  partitionColumns: string[];
  columnMappingMode: string;
  configuration: Record<string, string>;
  columns: string[];
  activeFiles: number;
  rowCount: number;
  deletionVectors: string[];
  activeFileList: Array<{ path: string; rows: number; dvDeleted: number; partitionValues: Record<string, string | null> }>;
  rowsSorted: Array<Record<string, unknown>> | null;
  aggregates: Record<string, Record<string, unknown>> | null;
  crossCheck: { excludedColumns: string[] } | null;
}

// A missing corpus fails the run: a skipped conformance suite would prove nothing.
const expectations: Expectation[] = (JSON.parse(readFileSync(join(CORPUS, 'expectations.json'), 'utf8')) as { cases: Expectation[] }).cases;

/** A table on local disk, recording every file the reader asks for. */
function localTable(root: string, filterLog: (name: string) => boolean = () => true): DeltaFileAccess & { fetched: string[] } {
  const fetched: string[] = [];
  return {
    fetched,
    logFiles: readdirSync(join(root, '_delta_log')).filter(filterLog),
    fetch: async (p: string) => {
      fetched.push(p);
      if (p.startsWith('file:')) return fileURLToPath(p);
      return isAbsolute(p) ? p : join(root, p);
    },
  };
}

/** Timestamps print with `+00` as TIMESTAMPTZ and without as TIMESTAMP; the corpus has both. Also sorts keys. */
function canonical(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(/^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?)\+00$/, '$1');
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
  }
  return value;
}

const sortedRows = (rows: unknown[]) => rows.map((r) => JSON.stringify(canonical(r))).sort();

/** The DuckDB type the reader must give each Delta type of `expectations.json` `columns`. */
function expectedDuckType(deltaType: string): RegExp {
  const simple: Record<string, string> = {
    string: 'VARCHAR', long: 'BIGINT', integer: 'INTEGER', short: 'SMALLINT', byte: 'TINYINT', float: 'FLOAT', double: 'DOUBLE',
    boolean: 'BOOLEAN', binary: 'BLOB', date: 'DATE', timestamp: 'TIMESTAMP WITH TIME ZONE', timestamp_ntz: 'TIMESTAMP',
  };
  if (simple[deltaType]) return new RegExp(`^${simple[deltaType]}$`);
  const decimal = /^decimal\((\d+),(\d+)\)$/.exec(deltaType);
  if (decimal) return new RegExp(`^DECIMAL\\(${decimal[1]},${decimal[2]}\\)$`);
  if (deltaType === 'struct') return /^STRUCT\(/;
  if (deltaType === 'array') return /\[\]$/;
  if (deltaType === 'map') return /^MAP\(/;
  throw new Error(`unknown type ${deltaType} in expectations`);
}

/** `"<path>: u deletes 2/10 rows [0,9]"` from `deletionVectors`. */
function parseDvExpectation(text: string): { path: string; storageType: string; rows: number[] } {
  const m = /^(.*): (\w) deletes (\d+)\/(\d+) rows \[([\d,]*)\]$/.exec(text);
  assert.ok(m, `cannot parse deletion vector expectation ${text}`);
  const rows = m[5] ? m[5].split(',').map(Number) : [];
  assert.equal(rows.length, Number(m[3]));
  return { path: m[1], storageType: m[2], rows };
}

describe('Delta Lake reader', () => {
  let instance: DuckDBInstance;
  let conn: DuckDBConnection;
  let run: RunQuery;
  const scratch: string[] = [];

  before(async () => {
    instance = await DuckDBInstance.create(':memory:');
    conn = await instance.connect();
    await conn.run("SET TimeZone = 'UTC'");
    run = async (sql) => (await conn.runAndReadAll(sql)).getRowObjectsJS() as Array<Record<string, unknown>>;
  });
  after(async () => {
    conn?.closeSync();
    instance?.closeSync();
    for (const dir of scratch) await rm(dir, { recursive: true, force: true });
  });

  const json = async (sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJson() as Array<Record<string, unknown>>;
  const count = async (sql: string) => Number((await run(`SELECT count(*) AS n FROM ${sql}`))[0].n);

  /** Compares the relation with shipped expected parquet files, both ways, cast to the expected types. */
  async function assertSameContent(relationSql: string, expectedGlob: string, excluded: string[], ourColumns: string[]) {
    const expectedColumns = await run(`DESCRIBE SELECT * FROM read_parquet(${sqlString(expectedGlob)})`);
    assert.deepEqual([...ourColumns].sort(), expectedColumns.map((c) => String(c.column_name)).sort(), 'same columns as the expected content');
    const compared = expectedColumns.filter((c) => !excluded.includes(String(c.column_name)));
    const ours = `SELECT ${compared.map((c) => `CAST(${sqlIdent(String(c.column_name))} AS ${c.column_type})`).join(', ')} FROM ${relationSql}`;
    const theirs = `SELECT ${compared.map((c) => sqlIdent(String(c.column_name))).join(', ')} FROM read_parquet(${sqlString(expectedGlob)})`;
    assert.equal(await count(`(${ours} EXCEPT ALL ${theirs})`), 0, 'rows only in the Delta relation');
    assert.equal(await count(`(${theirs} EXCEPT ALL ${ours})`), 0, 'rows only in the expected content');
  }

  for (const exp of expectations) {
    it(`reads ${exp.case} like the corpus says`, async () => {
      const root = join(CORPUS, exp.tableRoot);
      const access = localTable(root);
      const snapshot = await replayDeltaLog(access, run);

      // Log replay.
      assert.equal(snapshot.version, exp.latestVersion, 'latest version');
      assert.equal(snapshot.files.length, exp.activeFiles, 'active file count');
      assert.equal(snapshot.checkpointVersion, exp.snapshotStartsFromCheckpoint?.version, 'checkpoint the replay starts from');
      assert.equal(snapshot.protocol.minReaderVersion, exp.protocol.minReaderVersion);
      assert.deepEqual(snapshot.protocol.readerFeatures, exp.protocol.readerFeatures ?? undefined);
      assert.deepEqual(snapshot.partitionColumns, exp.partitionColumns);
      assert.equal(snapshot.columnMappingMode, exp.columnMappingMode);
      assert.deepEqual(snapshot.configuration, exp.configuration);
      const byPath = new Map(snapshot.files.map((f) => [f.path, f]));
      for (const expected of exp.activeFileList) {
        // The corpus lists `add.path` as written (URL-encoded); the snapshot holds the real file name.
        const file = byPath.get(decodeURIComponent(expected.path));
        assert.ok(file, `active file ${expected.path}`);
        assert.deepEqual(file.partitionValues, expected.partitionValues, `partition values of ${expected.path}`);
        assert.equal(file.deletionVector?.cardinality ?? 0, expected.dvDeleted, `DV cardinality of ${expected.path}`);
        if (file.numRecords !== undefined) assert.equal(file.numRecords, expected.rows, `numRecords of ${expected.path}`);
      }

      // Only the checkpoint the replay starts from and the commits after it are fetched, never `_last_checkpoint`.
      const start = exp.snapshotStartsFromCheckpoint?.version ?? -1;
      for (const p of access.fetched) {
        const name = p.slice('_delta_log/'.length);
        const version = Number(/^(\d{20})\./.exec(name)?.[1] ?? NaN);
        if (name.startsWith('_sidecars/')) assert.ok(exp.snapshotStartsFromCheckpoint?.sidecars, `sidecar ${name} fetched`);
        else if (/^\d{20}\.json$/.test(name)) assert.ok(version > start && version <= exp.latestVersion, `commit ${name} fetched`);
        else assert.equal(version, start, `log file ${p} fetched`);
      }

      // Deletion vectors decode to the corpus's row indexes.
      for (const text of exp.deletionVectors) {
        const dv = parseDvExpectation(text);
        const file = byPath.get(decodeURIComponent(dv.path)) ?? byPath.get(dv.path);
        assert.ok(file?.deletionVector, `file with DV ${dv.path}`);
        assert.equal(file.deletionVector.storageType, dv.storageType);
        assert.deepEqual(await decodeDeletionVector(file.deletionVector, access.fetch), dv.rows);
      }

      // The logical table.
      access.fetched.length = 0;
      const relation = await deltaRelation(snapshot, access.fetch, run);
      const dataFetches = new Set(access.fetched.filter((p) => !p.startsWith('deletion_vector_') && !/\/deletion_vector_[0-9a-f-]+\.bin$/.test(p)));
      assert.deepEqual([...dataFetches].sort(), snapshot.files.map((f) => f.path).sort(), 'only active data files (and DV files) are fetched');

      assert.equal(await count(relation.sql), exp.rowCount, 'rowCount');
      const described = await run(`DESCRIBE SELECT * FROM ${relation.sql}`);
      assert.equal(described[0].column_name, '__source_row');
      const columns = described.slice(1).map((c) => String(c.column_name));
      assert.deepEqual(columns, exp.columns.map((c) => c.slice(0, c.lastIndexOf(':'))), 'logical column names in schema order');
      exp.columns.forEach((c, i) => {
        assert.match(String(described[i + 1].column_type), expectedDuckType(c.slice(c.lastIndexOf(':') + 1)), `type of ${c}`);
      });
      const numbers = await run(`SELECT min(__source_row) AS lo, max(__source_row) AS hi, count(DISTINCT __source_row) AS n FROM ${relation.sql}`);
      if (exp.rowCount > 0) assert.deepEqual(numbers.map((r) => [Number(r.lo), Number(r.hi), Number(r.n)])[0], [1, exp.rowCount, exp.rowCount]);

      if (exp.rowsSorted) {
        const rows = await json(`SELECT * EXCLUDE (__source_row) FROM ${relation.sql}`);
        assert.deepEqual(sortedRows(rows), sortedRows(exp.rowsSorted), 'rows');
      }
      for (const [column, expected] of Object.entries(exp.aggregates ?? {})) {
        const c = sqlIdent(column);
        const numeric = 'sum' in expected;
        const [actual] = await json(
          numeric
            ? `SELECT min(${c}) AS min, max(${c}) AS max, sum(${c}) AS sum, count(${c}) AS nonNull FROM ${relation.sql}`
            : `SELECT CAST(min(${c}) AS VARCHAR) AS min, CAST(max(${c}) AS VARCHAR) AS max, count(DISTINCT ${c}) AS distinct, count(${c}) AS nonNull FROM ${relation.sql}`,
        );
        if (typeof expected.sum === 'number' && !Number.isInteger(expected.sum)) {
          // A sum of doubles depends on the order of addition.
          assert.ok(Math.abs((actual.sum as number) - expected.sum) <= Math.abs(expected.sum) * 1e-12, `sum of ${column}: ${actual.sum} vs ${expected.sum}`);
          actual.sum = expected.sum;
        }
        assert.deepEqual(canonical(actual), canonical(expected), `aggregates of ${column}`);
      }

      if (exp.expectedContent) {
        const excluded = exp.crossCheck?.excludedColumns ?? [];
        const dir = join(CORPUS, exp.expectedContent);
        await assertSameContent(relation.sql, join(dir, '*.parquet'), excluded, columns);
        if (excluded.length) {
          // The README's one exception: the writer's session ran in America/Los_Angeles, so the expected
          // parquet holds the partition timestamp 7 hours later than the UTC reading the protocol gives.
          assert.equal(exp.case, 'golden-data-reader-partition-values');
          assert.deepEqual(excluded, ['as_timestamp']);
          const ours = `SELECT value, as_timestamp FROM ${relation.sql}`;
          const theirs = `SELECT value, as_timestamp - INTERVAL 7 HOUR FROM read_parquet(${sqlString(join(dir, '*.parquet'))})`;
          assert.equal(await count(`(${ours} EXCEPT ALL ${theirs})`), 0);
          assert.equal(await count(`(${theirs} EXCEPT ALL ${ours})`), 0);
          assert.deepEqual(await json(`SELECT DISTINCT CAST(as_timestamp AS VARCHAR) AS t FROM ${relation.sql} WHERE as_timestamp IS NOT NULL`), [{ t: '2021-09-08 11:11:11+00' }]);
        }
      }

      // DAT ships expected content for earlier versions too: time travel with maxVersion.
      if (exp.case.startsWith('dat-')) {
        const expectedDir = join(root, '..', 'expected');
        for (const dir of readdirSync(expectedDir).filter((d) => /^v\d+$/.test(d))) {
          const meta = JSON.parse(readFileSync(join(expectedDir, dir, 'table_version_metadata.json'), 'utf8')) as { version: number; min_reader_version: number };
          const old = await replayDeltaLog(localTable(root), run, { maxVersion: meta.version });
          assert.equal(old.version, meta.version);
          assert.equal(old.protocol.minReaderVersion, meta.min_reader_version);
          const oldRelation = await deltaRelation(old, access.fetch, run);
          const oldColumns = (await run(`DESCRIBE SELECT * EXCLUDE (__source_row) FROM ${oldRelation.sql}`)).map((c) => String(c.column_name));
          await assertSameContent(oldRelation.sql, join(expectedDir, dir, 'table_content.parquet', '*.parquet'), [], oldColumns);
        }
      }
    });
  }

  it('time-travels dat-basic-append to v0 (3 rows)', async () => {
    const access = localTable(join(CORPUS, 'dat-basic-append/delta'));
    const snapshot = await replayDeltaLog(access, run, { maxVersion: 0 });
    assert.equal(snapshot.version, 0);
    assert.equal(snapshot.files.length, 1);
    assert.deepEqual(access.fetched, ['_delta_log/00000000000000000000.json']);
    const relation = await deltaRelation(snapshot, access.fetch, run);
    assert.equal(await count(relation.sql), 3);
    assert.deepEqual(await json(`SELECT letter FROM ${relation.sql} ORDER BY __source_row`), [{ letter: 'a' }, { letter: 'b' }, { letter: 'c' }]);
  });

  it('replays kernel-inline-dv-history at every version', async () => {
    const root = join(CORPUS, 'kernel-inline-dv-history/delta');
    // v5's inline DV names row 28168, outside the 10-row file: applying it removes nothing.
    const expected = [
      { rows: 10, deleted: [] },
      { rows: 8, deleted: [0, 9] },
      { rows: 10, deleted: [] },
      { rows: 6, deleted: [0, 1, 4, 5] },
      { rows: 8, deleted: [0, 5] },
      { rows: 10, deleted: [28168] },
      { rows: 10, deleted: [] },
    ];
    for (const [version, { rows, deleted }] of expected.entries()) {
      const access = localTable(root);
      const snapshot = await replayDeltaLog(access, run, { maxVersion: version });
      assert.equal(snapshot.version, version);
      assert.equal(snapshot.files.length, 1, `one active file at v${version}`);
      const dv = snapshot.files[0].deletionVector;
      assert.deepEqual(dv ? await decodeDeletionVector(dv, access.fetch) : [], deleted, `deleted rows at v${version}`);
      if (version >= 3 && version <= 5) assert.equal(dv?.storageType, 'i');
      const relation = await deltaRelation(snapshot, access.fetch, run);
      assert.equal(await count(relation.sql), rows, `rows at v${version}`);
      const values = (await json(`SELECT value FROM ${relation.sql} ORDER BY __source_row`)).map((r) => r.value);
      assert.deepEqual(values, [...Array(10).keys()].filter((v) => !deleted.includes(v)), `surviving rows at v${version}, in file order`);
    }
  });

  it('numbers rows 1..n by file, then position in the file, skipping deleted rows', async () => {
    const access = localTable(join(CORPUS, 'deltars-table-with-dv-small/delta'));
    const relation = await deltaRelation(await replayDeltaLog(access, run), access.fetch, run);
    assert.deepEqual(await json(`SELECT __source_row, value FROM ${relation.sql} ORDER BY __source_row`), [1, 2, 3, 4, 5, 6, 7, 8].map((v) => ({ __source_row: String(v), value: v })));
  });

  it('reads timestamps the same whatever the session time zone', async () => {
    const other = await instance.connect();
    try {
      await other.run("SET TimeZone = 'America/Los_Angeles'");
      for (const [table, column] of [
        ['dat-multi-partitioned-2', 'time'],
        ['kernel-with-short-dv', 'timestamp'],
        ['golden-data-reader-partition-values', 'as_timestamp'],
        ['kernel-type-widening', 'date_timestamp_ntz'],
      ]) {
        const access = localTable(join(CORPUS, table, 'delta'));
        const relation = await deltaRelation(await replayDeltaLog(access, run), access.fetch, run);
        const sql = `SELECT list(epoch_us(${sqlIdent(column)}) ORDER BY __source_row) AS v FROM ${relation.sql}`;
        const inUtc = (await conn.runAndReadAll(sql)).getRowObjectsJson();
        const inLa = (await other.runAndReadAll(sql)).getRowObjectsJson();
        assert.deepEqual(inLa, inUtc, `${table}.${column}`);
      }
    } finally {
      other.closeSync();
    }
  });

  it('never trusts _last_checkpoint and finds complete checkpoints by listing', async () => {
    for (const table of ['dat-with-checkpoint', 'golden-multi-part-checkpoint', 'deltars-failed-last-checkpoint-update']) {
      const root = join(CORPUS, table, 'delta');
      const withLc = await replayDeltaLog(localTable(root), run);
      const access = localTable(root, (n) => n !== '_last_checkpoint');
      const withoutLc = await replayDeltaLog(access, run);
      assert.deepEqual(withoutLc, withLc, table);
      assert.ok(!access.fetched.includes('_delta_log/_last_checkpoint'));
    }
    // A multi-part checkpoint with a part missing from the listing is incomplete: replay all commits instead.
    const root = join(CORPUS, 'golden-multi-part-checkpoint/delta');
    const complete = await replayDeltaLog(localTable(root), run);
    const access = localTable(root, (n) => !n.includes('checkpoint.0000000002.'));
    const partial = await replayDeltaLog(access, run);
    assert.equal(partial.checkpointVersion, undefined);
    assert.deepEqual(access.fetched, ['_delta_log/00000000000000000000.json', '_delta_log/00000000000000000001.json']);
    assert.deepEqual(partial.files.map((f) => f.path).sort(), complete.files.map((f) => f.path).sort());
    // The stale `.tmp/` commit of deltars-simple-table is not a commit.
    assert.equal(latestDeltaVersion([...readdirSync(join(CORPUS, 'deltars-simple-table/delta/_delta_log')), '.tmp/00000000000000000005.json']), 4);
  });

  it('refuses versions the log can no longer rebuild', async () => {
    // dat-no-replay: commits 0-1 were cleaned up, the checkpoint is at v2.
    await assert.rejects(replayDeltaLog(localTable(join(CORPUS, 'dat-no-replay/delta')), run, { maxVersion: 1 }), {
      name: 'ImporterError',
      code: 'IMP_ERR_FORMAT_UNREADABLE',
      message: 'the Delta log has no commit or checkpoint at or below version 1',
    });
    // A commit missing after the checkpoint: older checkpoints cannot help, and commit 0 is gone too.
    const access = localTable(join(CORPUS, 'golden-basic-with-inserts-deletes-checkpoint/delta'), (n) => n !== '00000000000000000012.json' && n !== '00000000000000000000.json');
    await assert.rejects(replayDeltaLog(access, run), {
      code: 'IMP_ERR_FORMAT_UNREADABLE',
      message: 'the Delta log cannot be replayed to version 13: no readable checkpoint and not every commit since version 0 is present',
    });
    assert.deepEqual(access.fetched, [], 'nothing fetched for a log that cannot be replayed');
  });

  /** Writes a table whose log is the given commits (arrays of actions); no data files. */
  async function syntheticTable(commits: Array<Array<Record<string, unknown>>>): Promise<string> {
    const root = await mkdtemp(join(tmpdir(), 'delta-test-'));
    scratch.push(root);
    await mkdir(join(root, '_delta_log'));
    for (const [v, actions] of commits.entries()) {
      await writeFile(join(root, '_delta_log', `${String(v).padStart(20, '0')}.json`), actions.map((a) => JSON.stringify(a)).join('\n') + '\n');
    }
    return root;
  }
  const metaData = {
    metaData: {
      id: 'test',
      format: { provider: 'parquet', options: {} },
      schemaString: JSON.stringify({
        type: 'struct',
        fields: [
          { name: 'id', type: 'long', nullable: true, metadata: {} },
          { name: 'ts', type: 'timestamp', nullable: true, metadata: {} },
          { name: 'tags', type: { type: 'map', keyType: 'string', valueType: 'string', valueContainsNull: true }, nullable: true, metadata: {} },
          { name: 'day', type: 'date', nullable: true, metadata: {} },
        ],
      }),
      partitionColumns: ['day'],
      configuration: {},
    },
  };

  it('refuses reader features it does not implement, with the exact error', async () => {
    const root = await syntheticTable([
      [{ protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['deletionVectors'], writerFeatures: ['deletionVectors'] } }, metaData],
      [{ protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['deletionVectors', 'variantType'], writerFeatures: ['deletionVectors', 'variantType'] } }],
      [{ protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['catalogManaged', 'variantType'], writerFeatures: [] } }],
      [{ protocol: { minReaderVersion: 4, minWriterVersion: 7 } }],
    ]);
    const unreadable = (message: string) => ({ name: 'ImporterError', code: 'IMP_ERR_FORMAT_UNREADABLE', permanent: true, message });
    assert.equal((await replayDeltaLog(localTable(root), run, { maxVersion: 0 })).version, 0);
    await assert.rejects(replayDeltaLog(localTable(root), run, { maxVersion: 1 }), unreadable('the Delta table requires reader feature "variantType", which is not supported'));
    await assert.rejects(
      replayDeltaLog(localTable(root), run, { maxVersion: 2 }),
      unreadable('the Delta table requires reader features "catalogManaged", "variantType", which are not supported'),
    );
    await assert.rejects(replayDeltaLog(localTable(root), run), unreadable('the Delta table requires reader version 4, which is not supported (at most 3)'));
  });

  it('resolves column mapping id mode by parquet field id, nested fields too', async () => {
    // The corpus's id-mode files also carry the physical names, so this table makes the names disagree:
    // file names are not the physical names, and a decoy column has the physical name but another id.
    const field = (name: string, type: unknown, id: number) => ({ name, type, nullable: true, metadata: { 'delta.columnMapping.id': id, 'delta.columnMapping.physicalName': `col-${name}` } });
    const schema = {
      type: 'struct',
      fields: [field('a', 'long', 1), field('s', { type: 'struct', fields: [field('p', 'long', 3), field('r', 'string', 9)] }, 2)],
    };
    const root = await syntheticTable([
      [
        { protocol: { minReaderVersion: 2, minWriterVersion: 5 } },
        { metaData: { id: 'ids', format: { provider: 'parquet', options: {} }, schemaString: JSON.stringify(schema), partitionColumns: [], configuration: { 'delta.columnMapping.mode': 'id' } } },
        { add: { path: 'old.parquet', partitionValues: {}, size: 1, modificationTime: 1, dataChange: true } },
        { add: { path: 'new.parquet', partitionValues: {}, size: 1, modificationTime: 2, dataChange: true } },
      ],
    ]);
    // The old file: `p` still an INT (type widening), no `r` yet, and a field `q` since dropped.
    await conn.run(`COPY (SELECT 10::BIGINT AS x, 99::BIGINT AS "col-a", {'p': 1::INT, 'q': 'z'} AS y UNION ALL SELECT 20, 98, NULL)
      TO ${sqlString(join(root, 'old.parquet'))} (FORMAT parquet, FIELD_IDS {x: 1, "col-a": 5, y: {__duckdb_field_id: 2, p: 3, q: 4}})`);
    await conn.run(`COPY (SELECT 30::BIGINT AS other, {'r': 'new', 'p': 5000000000::BIGINT} AS y2)
      TO ${sqlString(join(root, 'new.parquet'))} (FORMAT parquet, FIELD_IDS {other: 1, y2: {__duckdb_field_id: 2, r: 9, p: 3}})`);
    const access = localTable(root);
    const relation = await deltaRelation(await replayDeltaLog(access, run), access.fetch, run);
    assert.deepEqual(await json(`SELECT * FROM ${relation.sql} ORDER BY __source_row`), [
      { __source_row: '1', a: '10', s: { p: '1', r: null } },
      { __source_row: '2', a: '20', s: null },
      { __source_row: '3', a: '30', s: { p: '5000000000', r: 'new' } },
    ]);
  });

  it('refuses a data file nested deeper than DuckDB reads, from its footer, naming the file', async () => {
    // Reading such a column makes DuckDB 1.5.6 invalidate its whole database (the store): see MAX_PARQUET_DEPTH.
    const schema = { type: 'struct', fields: [{ name: 'id', type: 'long', nullable: true, metadata: {} }, { name: 'x', type: { type: 'struct', fields: [{ name: 'a', type: 'long', nullable: true, metadata: {} }] }, nullable: true, metadata: {} }] };
    const root = await syntheticTable([[
      { protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
      { metaData: { id: 'deep', format: { provider: 'parquet', options: {} }, schemaString: JSON.stringify(schema), partitionColumns: [], configuration: {} } },
      { add: { path: 'deep.parquet', partitionValues: {}, size: 1, modificationTime: 1, dataChange: true } },
    ]]);
    await conn.run('SET max_expression_depth = 10000');
    await conn.run(`COPY (SELECT 1::BIGINT AS id, ${"{'a': ".repeat(300)}1${'}'.repeat(300)} AS x) TO ${sqlString(join(root, 'deep.parquet'))} (FORMAT parquet)`);
    await conn.run('RESET max_expression_depth');
    const access = localTable(root);
    await assert.rejects(deltaRelation(await replayDeltaLog(access, run), access.fetch, run), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'IMP_ERR_FORMAT_UNREADABLE');
      assert.match(err.message, /^a data file of the table \(.*deep\.parquet\) has columns nested 301 levels deep; DuckDB reads at most 255$/);
      return true;
    });
  });

  it('gives an empty table its columns and no rows', async () => {
    const root = await syntheticTable([[{ protocol: { minReaderVersion: 1, minWriterVersion: 2 } }, metaData]]);
    const access = localTable(root);
    const snapshot = await replayDeltaLog(access, run);
    assert.deepEqual(snapshot.files, []);
    const relation = await deltaRelation(snapshot, access.fetch, run);
    assert.equal(await count(relation.sql), 0);
    assert.deepEqual(
      (await run(`DESCRIBE SELECT * FROM ${relation.sql}`)).map((c) => `${c.column_name} ${c.column_type}`),
      ['__source_row BIGINT', 'id BIGINT', 'ts TIMESTAMP WITH TIME ZONE', 'tags MAP(VARCHAR, VARCHAR)', 'day DATE'],
    );
  });

  it('decodes deletion vectors: Z85, UUID paths, and every roaring container kind', () => {
    assert.equal(deletionVectorRelativePath('vBn[lx{q8@P<9BNH/isA'), 'deletion_vector_61d16c75-6994-46b7-a15b-8b538852e50e.bin');
    assert.equal(deletionVectorRelativePath('ab' + 'vBn[lx{q8@P<9BNH/isA'), 'ab/deletion_vector_61d16c75-6994-46b7-a15b-8b538852e50e.bin');
    assert.deepEqual([...decodeZ85('HelloWorld')], [0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]); // the Z85 spec's example
    assert.deepEqual(parseRoaringBitmapArray(decodeZ85('^Bg9^0rr910000000000iXQKl0rr91000935c8Xg000311onP9', 40)), [0, 1, 4, 5]);

    // Hand-built portable RoaringBitmapArray: bitmap 0 has a run, an array and a bitmap container;
    // bitmap 1 (high bits = 1) has no run containers, hence an offset header.
    const bytes: number[] = [];
    const u16 = (v: number) => bytes.push(v & 0xff, (v >>> 8) & 0xff);
    const u32 = (v: number) => (u16(v & 0xffff), u16(v >>> 16));
    u32(1681511377);
    u32(2), u32(0); // two bitmaps (int64)
    u32(0); // bitmap 0: high bits 0
    u32(12347 | ((3 - 1) << 16)); // cookie with run containers, 3 containers
    bytes.push(0b001); // container 0 is a run container
    u16(0), u16(11 - 1); // container key 0, cardinality 11
    u16(1), u16(2 - 1); // key 1, cardinality 2
    u16(2), u16(5008 - 1); // key 2, cardinality 5008 (> 4096: bitmap)
    u16(2), u16(0), u16(9), u16(100), u16(0); // runs [0..9], [100]
    u16(5), u16(7); // array container
    for (let word = 0; word < 2048; word++) u32(word < 313 ? 0x55555555 : 0); // bits 0,2,4,… below 10016
    u32(1); // bitmap 1: high bits 1
    u32(12346), u32(1); // cookie without runs, 1 container
    u16(0), u16(0); // key 0, cardinality 1
    u32(0); // offset header
    u16(3);
    const bitmapValues = [...Array(5008).keys()].map((i) => 2 * 65536 + 2 * i);
    assert.deepEqual(parseRoaringBitmapArray(new Uint8Array(bytes)), [...Array(10).keys(), 100, 65536 + 5, 65536 + 7, ...bitmapValues, 2 ** 32 + 3]);
    assert.throws(() => parseRoaringBitmapArray(new Uint8Array(bytes.slice(0, 40))), { code: 'IMP_ERR_FORMAT_UNREADABLE', message: /truncated/ });
    const wrongHeader = [...bytes];
    wrongHeader[31] = (5000 - 1) & 0xff; // the bitmap container's header cardinality, low byte
    wrongHeader[32] = (5000 - 1) >>> 8;
    assert.throws(() => parseRoaringBitmapArray(new Uint8Array(wrongHeader)), { message: 'deletion vector container 2 holds 5008 values, its header says 5000' });
  });

  it('checks a deletion vector against its cardinality', async () => {
    await assert.rejects(
      decodeDeletionVector({ storageType: 'i', pathOrInlineDv: '^Bg9^0rr910000000000iXQKl0rr91000935c8Xg000311onP9', sizeInBytes: 40, cardinality: 3 }, async (p) => p),
      { code: 'IMP_ERR_FORMAT_UNREADABLE', message: 'deletion vector i:^Bg9^0rr910000000000iXQKl0rr91000935c8Xg000311onP9 holds 4 row indexes, its cardinality says 3' },
    );
  });

  it('finds table roots and the latest version by name', () => {
    assert.deepEqual(
      deltaTableRoots([
        'models/a/_delta_log/00000000000000000000.json',
        'models/a/_delta_log/_sidecars/x.parquet',
        'models/a/part-0.parquet',
        's3://bucket/t/_delta_log/00000000000000000003.checkpoint.parquet',
        '_delta_log/00000000000000000000.json',
        'models/not_delta_log/x.json',
        'models/b/_delta_log/_last_checkpoint',
      ]),
      ['', 'models/a/', 'models/b/', 's3://bucket/t/'],
    );
    assert.equal(latestDeltaVersion([]), undefined);
    assert.equal(latestDeltaVersion(['_last_checkpoint', '00000000000000000000.crc']), undefined);
    assert.equal(latestDeltaVersion(['00000000000000000000.json', '00000000000000000001.json', '00000000000000000001.crc']), 1);
    assert.equal(latestDeltaVersion(['00000000000000000009.json', '00000000000000000012.checkpoint.parquet']), 12);
    assert.equal(latestDeltaVersion(['00000000000000000009.json', '00000000000000000012.checkpoint.0000000001.0000000002.parquet']), 9); // incomplete
    assert.equal(latestDeltaVersion(['00000000000000000002.checkpoint.e8fa2696-9728-4e9c-b285-634743fdd4fb.parquet']), 2);
    assert.equal(latestDeltaVersion(['t/_delta_log/00000000000000000007.json', 't/_delta_log/.tmp/00000000000000000008.json']), 7);
  });
});
