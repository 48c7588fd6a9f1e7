/** Part 3: time from PutObject to rows visible in the store, at a given poll interval (the default 10 s unless told). */
import { join } from 'node:path';
import { waitFor, writeFixture } from '../test/helpers/stack.ts';
import { median, predictionsSql } from './lib/data.ts';
import { Writable } from 'node:stream';
import { startDaemon } from '../src/daemon.ts';
import { createLogger } from '../src/log.ts';
import { benchConfig, job, PREDICTION_SCHEMA } from './lib/daemon.ts';
import type { BenchEnv } from './lib/endpoint.ts';
import { sql } from '../test/helpers/sql.ts';
import { metric } from '../test/reliability/scenarios.ts';
import { rng } from '../test/reliability/sigkill.ts';

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};

/**
 * One run's figures, in seconds (`listPerMinute`: LIST requests per minute while the files arrived;
 * `idlePerMinute`: after the last, once the poll interval is back at pollInterval, over 30 s; not
 * measured by `--quick`, which would take a minute longer for it).
 */
interface LatencyRun {
  p50: number; p99: number; max: number; waitP50: number; waitP99: number; afterP50: number; afterP99: number; listPerMinute: number; idlePerMinute: number;
  /** From the import log lines: before the worker took the file (queue), the download, the wait for sibling downloads, the import with its wait for the store's turn. */
  queue: number[]; download: number[]; siblings: number[]; load: number[];
}

/** `runs` runs of `files` files each (arrival times drawn anew), one table row per run and their medians. */
export async function latency(env: BenchEnv, files: number, rowsPerFile: number, windowSeconds: number, runs = 1, pollInterval = '10s', concurrency?: number, idle = true): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < files; i++) paths.push(await writeFixture(join(env.tmp.path, `lat-${i}.parquet`), predictionsSql(i * rowsPerFile, (i + 1) * rowsPerFile), 'FORMAT parquet'));
  const results: LatencyRun[] = [];
  // Each run watches a prefix of its own, so a run's daemon never finds the files of the one before.
  // Run r draws its arrival times from seed r + 1: the same draws in every build, so two builds are compared on the same arrivals.
  for (let r = 0; r < runs; r++) results.push(await latencyRun(env, `lat-${pollInterval}-${r}/`, paths, windowSeconds, pollInterval, r + 1, concurrency, idle && r === 0));
  const row = (label: string, x: LatencyRun) =>
    `| ${label} | ${pollInterval} | ${files} × ${rowsPerFile.toLocaleString('en')} rows | uniform over ${windowSeconds} s | ${x.p50.toFixed(1)} s | ${x.p99.toFixed(1)} s | ${x.max.toFixed(1)} s | ${x.waitP50.toFixed(1)} s / ${x.waitP99.toFixed(1)} s | ${x.afterP50.toFixed(1)} s / ${x.afterP99.toFixed(1)} s | ${x.listPerMinute.toFixed(1)} | ${Number.isNaN(x.idlePerMinute) ? '–' : x.idlePerMinute.toFixed(1)} |`;
  const keys = ['p50', 'p99', 'max', 'waitP50', 'waitP99', 'afterP50', 'afterP99', 'listPerMinute', 'idlePerMinute'] as const;
  const mid = (k: (typeof keys)[number]) => median(results.map((x) => x[k]));
  const all = (k: 'queue' | 'download' | 'siblings' | 'load') => results.flatMap((x) => x[k]);
  const split = (k: 'queue' | 'download' | 'siblings' | 'load') => `${quantile(all(k), 0.5).toFixed(2)} / ${quantile(all(k), 0.99).toFixed(2)} s`;
  console.error(`  ${pollInterval}: after discovery, p50 / p99 over all runs: queue ${split('queue')}, download ${split('download')}, sibling wait ${split('siblings')}, import (turn included) ${split('load')}`);
  return [
    '| run | pollInterval | files | arrivals | PutObject → visible p50 | p99 | max | of which PutObject → discovered p50 / p99 | discovered → committed p50 / p99 | LIST requests per minute while files arrive | idle |', '|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((x, i) => row(String(i + 1), x)),
    ...(runs > 1 ? [row('**median**', { ...(Object.fromEntries(keys.map((k) => [k, mid(k)])) as Record<(typeof keys)[number], number>), queue: [], download: [], siblings: [], load: [] })] : []),
    `| after discovery, all runs | ${pollInterval} | p50 / p99: queue ${split('queue')}, download ${split('download')}, sibling wait ${split('siblings')}, import (store turn included) ${split('load')} | | | | | | | | |`,
  ];
}

async function latencyRun(env: BenchEnv, prefix: string, paths: string[], windowSeconds: number, pollInterval: string, seed: number, concurrency?: number, measureIdle = false): Promise<LatencyRun> {
  const files = paths.length;
  const config = benchConfig(env, [{ ...job('lat', prefix, PREDICTION_SCHEMA), pollInterval }], concurrency ? { worker: { concurrency } } : {});
  // The import log lines say where each file's time went after the worker took it.
  const split = { queue: [] as number[], download: [] as number[], siblings: [] as number[], load: [] as number[] };
  const took = new Map<string, number>();
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) {
        if (!line.includes('"ms":')) continue;
        const l = JSON.parse(line) as { key: string; ms: { download: number; wait: number; import: number } };
        took.set(l.key, (l.ms.download + l.ms.wait + l.ms.import) / 1000);
        split.download.push(l.ms.download / 1000);
        split.siblings.push(l.ms.wait / 1000);
        split.load.push(l.ms.import / 1000);
      }
      done();
    },
  });
  const d = await startDaemon(config, { log: createLogger('info', sink) });
  const listRequests = async () => (await d.metrics.listRequests.get()).values.find((v) => v.labels.job === 'lat')?.value ?? 0;
  const putWall = new Map<string, number>();
  const waits: number[] = [];
  let listPerMinute = 0;
  let idlePerMinute = Number.NaN;
  const putAt = new Map<string, number>();
  const seenAt = new Map<string, number>();
  const afterDiscovery: number[] = [];
  let watching = true;
  let watcher: Promise<void> = Promise.resolve();
  try {
    // Rows are visible once the import's transaction commits; look every 50 ms.
    watcher = (async () => {
      while (watching) {
        const rows = await sql(d.store)<{ key: string; status: string }>(`SELECT key, status FROM import_files WHERE job_id = 'lat' AND status <> 'pending'`);
        const now = performance.now();
        for (const r of rows) {
          // Once (2026-12-04, 1 s polls) this read returned a row still pending despite its filter; not reproduced in
          // scratch. Such a row is not visible yet: the next look sees it committed.
          if (r.status === 'pending') continue;
          if (r.status !== 'succeeded') throw new Error(`lat: ${r.key} ended ${r.status}`);
          if (!seenAt.has(r.key)) seenAt.set(r.key, now);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const random = rng(seed);
    const offsets = paths.map(() => random() * windowSeconds * 1000).sort((a, b) => a - b);
    const start = performance.now();
    const requestsBefore = await listRequests();
    await Promise.all(paths.map(async (path, i) => {
      await new Promise((r) => setTimeout(r, offsets[i]));
      const key = `${prefix}dt=2026-11-21/f-${String(i).padStart(3, '0')}.parquet`;
      await env.put(key, path);
      putAt.set(key, performance.now());
      putWall.set(key, Date.now());
    }));
    let failure: unknown;
    watcher = watcher.catch((err) => void (failure = err));
    await waitFor('every file visible', async () => {
      if (failure) throw failure;
      return seenAt.size >= files;
    }, (windowSeconds + 120) * 1000, 100);
    // The share after discovery: queue wait behind the other files of the same poll, download, load.
    listPerMinute = ((await listRequests()) - requestsBefore) / ((performance.now() - start) / 60_000);
    const ledger = await sql(d.store)<{ key: string; s: number; discovered: number }>(
      `SELECT key, epoch(finished_at) - epoch(discovered_at) AS s, epoch(discovered_at) * 1000 AS discovered FROM import_files WHERE job_id = 'lat'`);
    afterDiscovery.push(...ledger.map((r) => Number(r.s)));
    split.queue.push(...ledger.map((r) => Math.max(0, Number(r.s) - (took.get(r.key) ?? 0))));
    waits.push(...ledger.map((r) => (Number(r.discovered) - putWall.get(r.key)!) / 1000));
    console.error(`  latency: ${files} files over ${((performance.now() - start) / 1000).toFixed(0)} s`);
    // The idle cost, once the polls are back at pollInterval (activePollInterval sped them up while
    // files arrived). First run only: it follows from the settings, not from the arrivals.
    if (measureIdle) {
      const back = config.jobs[0].pollInterval / 1000;
      await waitFor('polls back at pollInterval', async () => (await metric(d, 'importer_poll_interval_seconds{job="lat"}')) === back, 120_000, 200);
      const idleFrom = await listRequests();
      await new Promise((r) => setTimeout(r, 30_000));
      idlePerMinute = ((await listRequests()) - idleFrom) * 2;
    }
  } finally {
    watching = false;
    await watcher.catch(() => undefined);
    await d.stop();
  }
  const lat = [...putAt].map(([key, t]) => (seenAt.get(key)! - t) / 1000);
  return {
    p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), max: Math.max(...lat), waitP50: quantile(waits, 0.5), waitP99: quantile(waits, 0.99),
    afterP50: quantile(afterDiscovery, 0.5), afterP99: quantile(afterDiscovery, 0.99), listPerMinute, idlePerMinute, ...split,
  };
}
