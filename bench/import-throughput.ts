/**
 * First throughput check (the full benchmark suite is its own issue): one parquet file of N rows
 * with ~36-char IDs, 20 numeric + 5 string features and 2 tags, imported through the daemon's real
 * path (poll → queue → GetObject from a local S3 endpoint → DuckDB read/map/validate → one
 * transaction) vs DuckDB's own `CREATE TABLE AS SELECT * FROM read_parquet(...)` of the same local
 * file into a fresh database file, in the same run.
 *
 *   node --openssl-legacy-provider --import tsx bench/import-throughput.ts [rows=1000000] [runs=3]
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { BUCKET, ledger, runDaemon, startStack, waitFor, writeFixture } from '../test/helpers/stack.ts';

const rows = Number(process.argv[2] ?? 1_000_000);
const runs = Number(process.argv[3] ?? 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const features = [
  ...Array.from({ length: 20 }, (_, i) => `(hash(i * ${i + 7}) % 100000) / 100.0 AS "feature/n${i}"`),
  ...Array.from({ length: 5 }, (_, i) => `'cat' || (hash(i + ${i}) % 50) AS "feature/s${i}"`),
].join(', ');
const sql = `SELECT uuid()::VARCHAR AS prediction_id, TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i % 86400) AS prediction_ts,
  'v1' AS model_version, CASE WHEN i % 2 = 0 THEN 'yes' ELSE 'no' END AS predicted_label, (i % 1000) / 1000.0 AS score,
  ${features}, 'eu' AS "tag/region", 'web' AS "tag/channel" FROM range(${rows}) t(i)`;

const stack = await startStack();
try {
  const file = await writeFixture(join(stack.tmp.path, 'bench.parquet'), sql, 'FORMAT parquet');
  const bytes = await readFile(file);
  console.log(`file: ${rows} rows, ${(bytes.length / 1e6).toFixed(1)} MB parquet`);

  const raw: number[] = [];
  for (let r = 0; r < runs; r++) {
    const path = join(stack.tmp.path, `raw-${r}.duckdb`);
    const db = await DuckDBInstance.create(path, { memory_limit: '1GB' });
    const conn = await db.connect();
    const t0 = performance.now();
    await conn.run(`CREATE TABLE t AS SELECT * FROM read_parquet('${file}')`);
    await conn.run('CHECKPOINT');
    raw.push((performance.now() - t0) / 1000);
    conn.closeSync();
    db.closeSync();
    await rm(path, { force: true });
  }

  const daemonTimes: number[] = [];
  for (let r = 0; r < runs; r++) {
    const config = stack.config([{
      id: `bench${r}`, source: `s3://${BUCKET}/bench${r}/`, model: { id: `bench${r}`, version: 'v1' },
      schema: { predictionId: 'prediction_id', timestamp: 'prediction_ts', predictionLabel: 'predicted_label', predictionScore: 'score', features: 'feature/', tags: 'tag/' },
    }], { store: { kind: 'duckdb', path: join(stack.tmp.path, `daemon-${r}.duckdb`), memoryLimit: '1GB' } });
    // Uploaded before the daemon starts: s3rver lists objects while it is still writing them.
    await stack.s3.put(BUCKET, `bench${r}/f.parquet`, bytes);
    const daemon = await runDaemon(config);
    await waitFor('import', async () => (await ledger(daemon, `bench${r}`)).some((l) => l.status === 'succeeded'), 600_000);
    const [t] = await daemon.store.query<{ s: number }>(`SELECT epoch(finished_at) - epoch(discovered_at) AS s FROM import_files WHERE job_id = $1`, [`bench${r}`]);
    daemonTimes.push(Number(t.s));
    await daemon.stop();
    await rm(config.store.kind === 'duckdb' ? config.store.path : '', { force: true });
  }
  const rawMedian = median(raw);
  const daemonMedian = median(daemonTimes);
  console.log(`raw DuckDB CTAS from local parquet: median ${rawMedian.toFixed(2)} s = ${(rows / rawMedian / 1e6).toFixed(2)} M rows/s  (${raw.map((x) => x.toFixed(2)).join(', ')})`);
  console.log(`daemon (discovered → committed, incl. download): median ${daemonMedian.toFixed(2)} s = ${(rows / daemonMedian / 1e6).toFixed(2)} M rows/s  (${daemonTimes.map((x) => x.toFixed(2)).join(', ')})`);
  console.log(`ratio daemon/raw throughput: ${(rawMedian / daemonMedian).toFixed(2)}`);
} finally {
  await stack.stop();
}
