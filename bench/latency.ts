/** Part 3: time from PutObject to rows visible in the store, with the default 10 s poll. */
import { join } from 'node:path';
import { waitFor, writeFixture } from '../test/helpers/stack.ts';
import { median, predictionsSql } from './lib/data.ts';
import { benchConfig, job, PREDICTION_SCHEMA, startBenchDaemon } from './lib/daemon.ts';
import type { BenchEnv } from './lib/endpoint.ts';
import { sql } from '../test/helpers/sql.ts';

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};

/** One run's figures, in seconds. */
interface LatencyRun { p50: number; p99: number; max: number; afterP50: number; afterP99: number }

/** `runs` runs of `files` files each (arrival times drawn anew), one table row per run and their medians. */
export async function latency(env: BenchEnv, files: number, rowsPerFile: number, windowSeconds: number, runs = 1): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < files; i++) paths.push(await writeFixture(join(env.tmp.path, `lat-${i}.parquet`), predictionsSql(i * rowsPerFile, (i + 1) * rowsPerFile), 'FORMAT parquet'));
  const results: LatencyRun[] = [];
  // Each run watches a prefix of its own, so a run's daemon never finds the files of the one before.
  for (let r = 0; r < runs; r++) results.push(await latencyRun(env, `lat${r}/`, paths, windowSeconds));
  const row = (label: string, x: LatencyRun) =>
    `| ${label} | ${files} | ${rowsPerFile.toLocaleString('en')} | uniform over ${windowSeconds} s | ${x.p50.toFixed(1)} s | ${x.p99.toFixed(1)} s | ${x.max.toFixed(1)} s | ${x.afterP50.toFixed(1)} s / ${x.afterP99.toFixed(1)} s |`;
  const mid = (k: keyof LatencyRun) => median(results.map((x) => x[k]));
  return [
    '| run | files | rows per file | arrivals | PutObject → visible p50 | p99 | max | of which discovery → committed p50 / p99 |', '|---|---|---|---|---|---|---|---|',
    ...results.map((x, i) => row(String(i + 1), x)),
    ...(runs > 1 ? [row('**median**', { p50: mid('p50'), p99: mid('p99'), max: mid('max'), afterP50: mid('afterP50'), afterP99: mid('afterP99') })] : []),
  ];
}

async function latencyRun(env: BenchEnv, prefix: string, paths: string[], windowSeconds: number): Promise<LatencyRun> {
  const files = paths.length;
  const config = benchConfig(env, [job('lat', prefix, PREDICTION_SCHEMA)]); // default poll interval: 10 s
  const d = await startBenchDaemon(config);
  const putAt = new Map<string, number>();
  const seenAt = new Map<string, number>();
  const afterDiscovery: number[] = [];
  try {
    // Rows are visible once the import's transaction commits; look every 50 ms.
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const rows = await sql(d.store)<{ key: string; status: string }>(`SELECT key, status FROM import_files WHERE job_id = 'lat' AND status <> 'pending'`);
        const now = performance.now();
        for (const r of rows) {
          if (r.status !== 'succeeded') throw new Error(`lat: ${r.key} ended ${r.status}`);
          if (!seenAt.has(r.key)) seenAt.set(r.key, now);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const offsets = paths.map(() => Math.random() * windowSeconds * 1000).sort((a, b) => a - b);
    const start = performance.now();
    await Promise.all(paths.map(async (path, i) => {
      await new Promise((r) => setTimeout(r, offsets[i]));
      const key = `${prefix}dt=2026-11-21/f-${String(i).padStart(3, '0')}.parquet`;
      await env.put(key, path);
      putAt.set(key, performance.now());
    }));
    await waitFor('every file visible', async () => seenAt.size >= files, (windowSeconds + 120) * 1000, 100);
    // The share after discovery: queue wait behind the other files of the same poll, download, load.
    const ledger = await sql(d.store)<{ s: number }>(`SELECT epoch(finished_at) - epoch(discovered_at) AS s FROM import_files WHERE job_id = 'lat'`);
    afterDiscovery.push(...ledger.map((r) => Number(r.s)));
    watching = false;
    await watcher;
    console.error(`  latency: ${files} files over ${((performance.now() - start) / 1000).toFixed(0)} s`);
  } finally {
    await d.stop();
  }
  const lat = [...putAt].map(([key, t]) => (seenAt.get(key)! - t) / 1000);
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), max: Math.max(...lat), afterP50: quantile(afterDiscovery, 0.5), afterP99: quantile(afterDiscovery, 0.99) };
}
