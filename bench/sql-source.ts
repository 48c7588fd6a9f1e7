/**
 * Part 7: a query source. Rows/s of one query of `rows` prediction rows pulled by the daemon from
 * the machine's PostgreSQL (as the warehouse) into the embedded store — COPY (query) TO STDOUT into
 * a CSV file, DuckDB reading it with the result description's types, mapping, validation, the load
 * and the window's ledger row — against PostgreSQL's own `COPY (query) TO STDOUT` of the same
 * query into a file, in the same run.
 */
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { createTestDatabase } from '../test/helpers/postgres.ts';
import { sql } from '../test/helpers/sql.ts';
import { median } from './lib/data.ts';
import { benchConfig, importsDone, PREDICTION_SCHEMA, startBenchDaemon } from './lib/daemon.ts';
import type { BenchEnv } from './lib/endpoint.ts';

/** The same 32 columns as the file benchmarks' predictions (bench/lib/data.ts), generated in PostgreSQL. */
const tableSql = (rows: number) => `CREATE TABLE preds AS SELECT
    md5(i::text || 'bench') AS prediction_id, timestamptz '2026-11-01 00:00:00+00' + (i % 864000) * interval '1 second' AS prediction_ts,
    'v1' AS model_version, CASE WHEN i % 2 = 0 THEN 'yes' ELSE 'no' END AS predicted_label, (i % 1000) / 1000.0::float8 AS score,
    ${Array.from({ length: 20 }, (_, k) => `((i * ${k + 7}) % 100000) / 100.0::float8 AS "feature/n${k}"`).join(', ')},
    ${Array.from({ length: 5 }, (_, k) => `'cat' || ((i + ${k}) % 50) AS "feature/s${k}"`).join(', ')}, 'eu' AS "tag/region", 'web' AS "tag/channel"
  FROM generate_series(0, ${rows - 1}) i`;

export async function sqlSource(env: BenchEnv, rows: number, runs: number): Promise<string[]> {
  const wh = await createTestDatabase('importer_bench_wh');
  const admin = new pg.Client({ connectionString: wh.url });
  await admin.connect();
  try {
    await admin.query(tableSql(rows));
    await admin.query('VACUUM ANALYZE preds');
    const raw: number[] = [];
    const daemon: number[] = [];
    for (let r = 0; r < runs; r++) {
      const file = join(env.tmp.path, 'wh-copy.csv');
      const t0 = performance.now();
      await pipeline(admin.query(copyTo('COPY (SELECT * FROM preds) TO STDOUT (FORMAT csv, HEADER true)')), createWriteStream(file));
      raw.push((performance.now() - t0) / 1000);
      await rm(file);

      const id = `wh${r}`;
      const d = await startBenchDaemon(benchConfig(env, [{
        id, source: { sql: { url: wh.url, query: 'SELECT * FROM preds', refreshInterval: '1h' } }, model: { id: 'bench' }, schema: PREDICTION_SCHEMA,
      }]));
      try {
        await importsDone(d, id, 1);
        const [w] = await sql(d.store)<{ s: number; n: number }>(`SELECT epoch(finished_at) - epoch(discovered_at) AS s, predictions_loaded AS n FROM import_files WHERE job_id = $1`, [id]);
        if (Number(w.n) !== rows) throw new Error(`${id}: loaded ${w.n} of ${rows} rows`);
        daemon.push(Number(w.s));
      } finally {
        await d.stop();
      }
    }
    const [rawS, daemonS] = [median(raw), median(daemon)];
    const rate = (s: number) => `${(rows / s / 1e6).toFixed(2)} M rows/s`;
    return [
      '| rows | PostgreSQL `COPY (query) TO STDOUT` into a file | daemon: query → store (one window, ledger row committed) | ratio |',
      '|---|---|---|---|',
      `| ${rows.toLocaleString('en-US')} | ${rawS.toFixed(2)} s (${rate(rawS)}) | ${daemonS.toFixed(2)} s (${rate(daemonS)}) | **${(rawS / daemonS).toFixed(2)}** |`,
      '',
      `${runs === 1 ? 'One run' : `Medians of ${runs} runs`}; raw ${raw.map((s) => s.toFixed(2)).join(' / ')} s, daemon ${daemon.map((s) => s.toFixed(2)).join(' / ')} s. The daemon's time is the window's ledger discovered_at → finished_at on the embedded DuckDB store.`,
    ];
  } finally {
    await admin.end();
    await wh.drop();
  }
}
