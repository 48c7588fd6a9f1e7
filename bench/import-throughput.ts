/**
 * Import throughput per format (part 1 of the benchmark issue; the rest is not built yet): one file of N rows
 * with ~36-char IDs, 20 numeric + 5 string features and 2 tags, imported through the daemon's real
 * path (poll → queue → GetObject from a local S3 endpoint → DuckDB read/map/validate → one
 * transaction) vs DuckDB's own `CREATE TABLE AS SELECT * FROM read_parquet(...)` of the same local
 * file into a fresh database file, in the same run.
 *
 *   npm run bench -- [rows=1000000] [runs=3] [formats=parquet,csv,ndjson]      (--quick: 100000 rows, 1 run)
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { BUCKET, ledger, runDaemon, startStack, waitFor, writeFixture } from '../test/helpers/stack.ts';

const args = process.argv.slice(2).filter((a) => a !== '--quick');
const quick = process.argv.includes('--quick');
const rows = Number(args[0] ?? (quick ? 100_000 : 1_000_000));
const runs = Number(args[1] ?? (quick ? 1 : 3));
const formats = (args[2] ?? 'parquet,csv,ndjson').split(',') as Array<'parquet' | 'csv' | 'ndjson'>;
const FORMAT = {
  parquet: { ext: 'parquet', copy: 'FORMAT parquet', read: (f: string) => `read_parquet('${f}')` },
  csv: { ext: 'csv', copy: 'FORMAT csv, HEADER true', read: (f: string) => `read_csv('${f}')` },
  ndjson: { ext: 'ndjson', copy: 'FORMAT json', read: (f: string) => `read_json('${f}')` },
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const features = [
  ...Array.from({ length: 20 }, (_, i) => `(hash(i * ${i + 7}) % 100000) / 100.0 AS "feature/n${i}"`),
  ...Array.from({ length: 5 }, (_, i) => `'cat' || (hash(i + ${i}) % 50) AS "feature/s${i}"`),
].join(', ');
const sql = `SELECT uuid()::VARCHAR AS prediction_id, TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i % 86400) AS prediction_ts,
  'v1' AS model_version, CASE WHEN i % 2 = 0 THEN 'yes' ELSE 'no' END AS predicted_label, (i % 1000) / 1000.0 AS score,
  ${features}, 'eu' AS "tag/region", 'web' AS "tag/channel" FROM range(${rows}) t(i)`;

const stack = await startStack();
const table: string[] = [];
try {
  for (const format of formats) {
    const f = FORMAT[format];
    const file = await writeFixture(join(stack.tmp.path, `bench.${f.ext}`), sql, f.copy);
    const bytes = await readFile(file);

    const raw: number[] = [];
    for (let r = 0; r < runs; r++) {
      const path = join(stack.tmp.path, `raw-${format}-${r}.duckdb`);
      const db = await DuckDBInstance.create(path, { memory_limit: '1GB' });
      const conn = await db.connect();
      const t0 = performance.now();
      await conn.run(`CREATE TABLE t AS SELECT * FROM ${f.read(file)}`);
      await conn.run('CHECKPOINT');
      raw.push((performance.now() - t0) / 1000);
      conn.closeSync();
      db.closeSync();
      await rm(path, { force: true });
    }

    const daemonTimes: number[] = [];
    for (let r = 0; r < runs; r++) {
      const id = `${format}${r}`;
      const config = stack.config([{
        id, source: `s3://${BUCKET}/${id}/`, model: { id, version: 'v1' },
        schema: { predictionId: 'prediction_id', timestamp: 'prediction_ts', predictionLabel: 'predicted_label', predictionScore: 'score', features: 'feature/', tags: 'tag/' },
      }], { store: { kind: 'duckdb', path: join(stack.tmp.path, `daemon-${id}.duckdb`), memoryLimit: '1GB' } });
      // Uploaded before the daemon starts: s3rver lists objects while it is still writing them.
      await stack.s3.put(BUCKET, `${id}/f.${f.ext}`, bytes);
      const daemon = await runDaemon(config);
      await waitFor('import', async () => (await ledger(daemon, id)).some((l) => l.status === 'succeeded'), 600_000);
      const [t] = await daemon.store.query<{ s: number }>(`SELECT epoch(finished_at) - epoch(discovered_at) AS s FROM import_files WHERE job_id = $1`, [id]);
      daemonTimes.push(Number(t.s));
      await daemon.stop();
      await rm(config.store.kind === 'duckdb' ? config.store.path : '', { force: true });
    }
    const rawMedian = median(raw);
    const daemonMedian = median(daemonTimes);
    table.push(`| ${format} | ${rows.toLocaleString('en')} | ${(bytes.length / 1e6).toFixed(1)} MB | ${rawMedian.toFixed(2)} s (${(rows / rawMedian / 1e6).toFixed(2)} M/s) | ${daemonMedian.toFixed(2)} s (${(rows / daemonMedian / 1e6).toFixed(2)} M/s) | ${(rawMedian / daemonMedian).toFixed(2)} |`);
    console.log(`${format}: raw ${raw.map((x) => x.toFixed(2)).join(', ')} s; daemon ${daemonTimes.map((x) => x.toFixed(2)).join(', ')} s`);
  }
  console.log(`\nmedians of ${runs} run(s); daemon = discovered → committed, including the download from the local S3 endpoint`);
  console.log('| format | rows | file | raw DuckDB CREATE TABLE AS | daemon import | ratio |\n|---|---|---|---|---|---|');
  console.log(table.join('\n'));
} finally {
  await stack.stop();
}
