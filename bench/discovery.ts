/** Part 4: polling a large unchanged prefix, and one with 10 new files, vs one plain sequential recursive listing. */
import { DuckDBInstance } from '@duckdb/node-api';
import { createStore } from '../src/store/index.ts';
import { listObjects } from '../src/source/index.ts';
import type { JobConfig } from '../src/config/index.ts';
import { median } from './lib/data.ts';
import { waitFor } from '../test/helpers/stack.ts';
import { benchConfig, startBenchDaemon } from './lib/daemon.ts';
import { BUCKET, type BenchEnv } from './lib/endpoint.ts';

const BODY = 'prediction_id,score\nx,0.5\n';

export async function discovery(env: BenchEnv, objects: number, runs: number): Promise<string[]> {
  // Date-partitioned: 1000 objects per day folder, split over 24 hour folders.
  const keys = Array.from({ length: objects }, (_, i) => {
    const day = new Date(Date.UTC(2024, 0, 1) + Math.floor(i / 1000) * 86_400_000).toISOString().slice(0, 10);
    return `disc/dt=${day}/hour=${String(i % 24).padStart(2, '0')}/part-${String(i).padStart(7, '0')}.csv`;
  }).sort();
  let etag = '';
  for (let i = 0; i < keys.length; i += 500) [etag] = await Promise.all(keys.slice(i, i + 500).map((k) => env.seedBody(k, BODY)));

  const raw = { region: 'us-east-1', endpoint: env.endpoint, forcePathStyle: true, maxAttempts: 3 };
  const config = benchConfig(env, [{ id: 'disc', source: `s3://${BUCKET}/disc/`, model: { id: 'disc' }, schema: { predictionId: 'prediction_id', predictionScore: 'score' }, pollInterval: '1h' }], { s3: raw });
  // The ledger already knows every object (imported earlier): what a long-running deployment has.
  {
    const store = createStore(config, env.tmp.path);
    await store.init();
    await store.recordDiscovered('disc', keys.map((key) => ({ bucket: BUCKET, key, etag, size: BODY.length, lastModified: new Date() })));
    await store.close();
    const db = await DuckDBInstance.create(config.store.kind === 'duckdb' ? config.store.path : '');
    const c = await db.connect();
    await c.run(`UPDATE import_files SET status = 'succeeded', finished_at = discovered_at`);
    c.closeSync();
    db.closeSync();
  }

  const sequential: number[] = [];
  let sequentialRequests = 0;
  for (let r = 0; r < runs; r++) {
    let n = 0;
    const t0 = performance.now();
    const listed = await listObjects(env.s3, BUCKET, 'disc/', { onRequest: () => n++ });
    sequential.push((performance.now() - t0) / 1000);
    sequentialRequests = n;
    if (listed.length !== objects) throw new Error(`listed ${listed.length} of ${objects}`);
  }

  // The same listing in parallel key ranges, alone, split at the keys of the sequential one.
  const parallel: number[] = [];
  let parallelRequests = 0;
  for (let r = 0; r < runs; r++) {
    let n = 0;
    const t0 = performance.now();
    await listObjects(env.s3, BUCKET, 'disc/', { previousKeys: keys, concurrency: config.s3.listConcurrency, onRequest: () => n++ });
    parallel.push((performance.now() - t0) / 1000);
    parallelRequests = n;
  }

  const d = await startBenchDaemon(config);
  const jobConfig = config.jobs[0] as JobConfig;
  const requests = async () => (await d.metrics.listRequests.get()).values.find((v) => v.labels.job === 'disc')?.value ?? 0;
  try {
    // The first poll (at start) lists sequentially: it has no earlier listing to split.
    await waitFor('the first poll', async () => (await d.metrics.objectsListed.get()).values.some((v) => v.labels.job === 'disc' && v.value === objects), 600_000, 100);
    const unchanged: number[] = [];
    let unchangedRequests = 0;
    for (let r = 0; r < runs; r++) {
      const before = await requests();
      const t0 = performance.now();
      const result = await d.poller!.pollJob(jobConfig);
      unchanged.push((performance.now() - t0) / 1000);
      unchangedRequests = (await requests()) - before;
      if (result?.discoveredNew !== 0) throw new Error(`an unchanged poll found ${result?.discoveredNew} new files`);
    }
    for (let i = 0; i < 10; i++) await env.seedBody(`disc/dt=2024-01-0${1 + (i % 9)}/hour=99/new-${i}.csv`, `prediction_id,score\nnew${i},0.5\n`);
    const before = await requests();
    const t0 = performance.now();
    const added = await d.poller!.pollJob(jobConfig);
    const addedTime = (performance.now() - t0) / 1000;
    const addedRequests = (await requests()) - before;
    if (added?.discoveredNew !== 10) throw new Error(`the poll after adding 10 files found ${added?.discoveredNew}`);
    console.error(`  discovery ${objects}: sequential ${sequential.map((x) => x.toFixed(2))} s, unchanged polls ${unchanged.map((x) => x.toFixed(2))} s, +10 ${addedTime.toFixed(2)} s`);
    const perPoll = median(unchanged);
    return [
      '| objects | what | time | LIST requests |', '|---|---|---|---|',
      `| ${objects.toLocaleString('en')} | one plain sequential recursive listing | ${median(sequential).toFixed(2)} s | ${sequentialRequests} |`,
      `| ${objects.toLocaleString('en')} | the same listing in ${config.s3.listConcurrency} parallel key ranges, alone | ${median(parallel).toFixed(2)} s | ${parallelRequests} |`,
      `| ${objects.toLocaleString('en')} | daemon poll, nothing changed (listing in ${config.s3.listConcurrency} ranges + ledger diff) | ${perPoll.toFixed(2)} s | ${unchangedRequests} |`,
      `| ${objects.toLocaleString('en')} | daemon poll, 10 files added | ${addedTime.toFixed(2)} s | ${addedRequests} |`,
      `| ≈ ${(Math.floor((objects * 10) / perPoll / 10_000) * 10_000).toLocaleString('en')} | largest prefix one 10 s poll lists and diffs (linear estimate from the unchanged poll) | 10 s | |`,
    ];
  } finally {
    await d.stop();
  }
}
