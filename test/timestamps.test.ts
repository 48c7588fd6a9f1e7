import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateConfig } from '../src/config/index.ts';
import { openMemoryEngine } from '../src/engine/index.ts';
import { planMapping } from '../src/schema/mapping.ts';
import { DuckDbStore } from '../src/store/index.ts';
import { tmpDir, type TmpDir } from './helpers/tmp.ts';

/**
 * Text timestamps as the mapping reads them, in both engines that run it: the embedded store's
 * DuckDB and the private one of other stores. The UTC zone (the default) takes the one-cast path,
 * other zones the one that looks for an offset in the text; both must agree wherever the zone does
 * not matter.
 */

const INVALID = 'IMP_ERR_ROW_TIMESTAMP_INVALID';
/** Text in, the stored instant in UTC (or the row's reject code) out, per job time zone. */
const CASES: Array<[text: string, utc: string, oslo: string]> = [
  ['2026-07-01T12:00:00Z', '2026-07-01T12:00:00.000', '2026-07-01T12:00:00.000'],
  ['2026-07-01T12:00:00+05:00', '2026-07-01T07:00:00.000', '2026-07-01T07:00:00.000'],
  ['2026-07-01 12:00:00.25-03:30', '2026-07-01T15:30:00.250', '2026-07-01T15:30:00.250'],
  ['2026-07-01 12:00:00+0530', '2026-07-01T06:30:00.000', '2026-07-01T06:30:00.000'],
  ['2026-07-01 12:00:00+00', '2026-07-01T12:00:00.000', '2026-07-01T12:00:00.000'],
  ['2026-07-01 12:00:00', '2026-07-01T12:00:00.000', '2026-07-01T10:00:00.000'],
  ['2026-07-01T12:00:00.5', '2026-07-01T12:00:00.500', '2026-07-01T10:00:00.500'],
  ['2026-07-21', '2026-07-21T00:00:00.000', '2026-07-20T22:00:00.000'],
  ['  2026-07-01T12:00:00Z ', '2026-07-01T12:00:00.000', '2026-07-01T12:00:00.000'],
  [' 2026-07-21 ', '2026-07-21T00:00:00.000', '2026-07-20T22:00:00.000'],
  ['2026-07-01 12:00:00 Europe/Oslo', '2026-07-01T10:00:00.000', '2026-07-01T10:00:00.000'],
  ['1795000000', '2026-11-18T11:06:40.000', '2026-11-18T11:06:40.000'],
  [' 1795000000.5 ', '2026-11-18T11:06:40.500', '2026-11-18T11:06:40.500'],
  ['-86400', '1969-12-31T00:00:00.000', '1969-12-31T00:00:00.000'],
  ['99999999999999', INVALID, INVALID],
  ['1e9', INVALID, INVALID],
  ['yesterday', INVALID, INVALID],
  ['2026-07-01 12:00:00 +05:00', INVALID, INVALID],
  ['2026-13-01', INVALID, INVALID],
  ['', INVALID, INVALID],
];

const jobIn = (timeZone: string) =>
  validateConfig({
    jobs: [{
      id: 'ts', source: 's3://bkt/ts/', model: { id: 'm' },
      schema: { predictionId: 'pid', timestamp: 'ts', predictionLabel: 'label' },
      timestamps: { timeZone, maxAge: '100y', maxAhead: '100y' },
    }],
  }).jobs[0];

const source = {
  sql: `(SELECT * FROM (VALUES ${CASES.map(([text], i) => `(${i + 1}, 'p${i + 1}', '${text}', 'y')`).join(', ')}) v(__row, pid, ts, label))`,
  rowNumberColumn: '__row',
};
const columns = [{ name: '__row', type: 'INTEGER' }, { name: 'pid', type: 'VARCHAR' }, { name: 'ts', type: 'VARCHAR' }, { name: 'label', type: 'VARCHAR' }];

/** The mapped rows of the cases under one job time zone: each row's instant in UTC, or its reject code. */
function readSql(timeZone: string): string {
  const plan = planMapping(jobIn(timeZone), source, columns, 'ts/a.csv', new Date('2026-12-01T00:00:00Z'));
  return `SELECT coalesce(reject_code, strftime(prediction_ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%g')) AS v FROM (${plan.rowsSql}) ORDER BY source_row`;
}

describe('text timestamps', () => {
  let tmp: TmpDir;
  let store: DuckDbStore;
  let memory: Awaited<ReturnType<typeof openMemoryEngine>>;
  before(async () => {
    tmp = await tmpDir('importer-ts-');
    store = new DuckDbStore({ path: join(tmp.path, 's.duckdb') });
    await store.init();
    memory = await openMemoryEngine({ readableDirectory: tmp.path, memoryLimit: '256MB' });
  });
  after(async () => {
    memory?.close();
    await store?.close();
    await tmp?.cleanup();
  });

  const engines = {
    'embedded store': (sql: string) => store.query<{ v: string }>(sql),
    'private engine': (sql: string) => memory.run(sql) as Promise<Array<{ v: string }>>,
  };
  for (const [name, run] of Object.entries(engines)) {
    for (const [zone, column] of [['UTC', 1], ['Etc/UTC', 1], ['Europe/Oslo', 2]] as const) {
      it(`reads offsets, naive text, dates and epoch digits in ${zone} (${name})`, async () => {
        const got = (await run(readSql(zone))).map((r) => r.v);
        assert.deepEqual(got.map((v, i) => [CASES[i][0], v]), CASES.map((c) => [c[0], c[column]]));
      });
    }
  }
});
