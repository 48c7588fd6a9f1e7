/** Part 3: time from PutObject to rows visible in the store, with the default 10 s poll. */
import { join } from 'node:path';
import { waitFor, writeFixture } from '../test/helpers/stack.ts';
import { predictionsSql } from './lib/data.ts';
import { benchConfig, job, PREDICTION_SCHEMA, startBenchDaemon } from './lib/daemon.ts';
import type { BenchEnv } from './lib/endpoint.ts';

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};

export async function latency(env: BenchEnv, files: number, rowsPerFile: number, windowSeconds: number): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < files; i++) paths.push(await writeFixture(join(env.tmp.path, `lat-${i}.parquet`), predictionsSql(i * rowsPerFile, (i + 1) * rowsPerFile), 'FORMAT parquet'));
  const config = benchConfig(env, [job('lat', 'lat/', PREDICTION_SCHEMA)]); // default poll interval: 10 s
  const d = await startBenchDaemon(config);
  const putAt = new Map<string, number>();
  const seenAt = new Map<string, number>();
  const afterDiscovery: number[] = [];
  try {
    // Rows are visible once the import's transaction commits; look every 50 ms.
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const rows = await d.store.query<{ key: string; status: string }>(`SELECT key, status FROM import_files WHERE job_id = 'lat' AND status <> 'pending'`);
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
      const key = `lat/dt=2026-11-21/f-${String(i).padStart(3, '0')}.parquet`;
      await env.put(key, path);
      putAt.set(key, performance.now());
    }));
    await waitFor('every file visible', async () => seenAt.size >= files, (windowSeconds + 120) * 1000, 100);
    // The share after discovery: queue wait behind the other files of the same poll, download, load.
    const ledger = await d.store.query<{ s: number }>(`SELECT epoch(finished_at) - epoch(discovered_at) AS s FROM import_files WHERE job_id = 'lat'`);
    afterDiscovery.push(...ledger.map((r) => Number(r.s)));
    watching = false;
    await watcher;
    console.error(`  latency: ${files} files over ${((performance.now() - start) / 1000).toFixed(0)} s`);
  } finally {
    await d.stop();
  }
  const lat = [...putAt].map(([key, t]) => (seenAt.get(key)! - t) / 1000);
  return [
    '| files | rows per file | arrivals | PutObject → visible p50 | p99 | max | of which discovery → committed p50 / p99 |', '|---|---|---|---|---|---|---|',
    `| ${files} | ${rowsPerFile.toLocaleString('en')} | uniform over ${windowSeconds} s | ${quantile(lat, 0.5).toFixed(1)} s | ${quantile(lat, 0.99).toFixed(1)} s | ${Math.max(...lat).toFixed(1)} s | ${quantile(afterDiscovery, 0.5).toFixed(1)} s / ${quantile(afterDiscovery, 0.99).toFixed(1)} s |`,
  ];
}
