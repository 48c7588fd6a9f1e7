/**
 * Part 4: polling a large unchanged date-partitioned prefix: the whole prefix listed every poll
 * (the default) against polls that leave old partitions out (`partitionHorizon`), and one plain
 * sequential recursive listing of the same prefix as the reference. The endpoint is the
 * benchmark's listing server (`lib/list-server.ts`), not s3rver, which cannot hold a million objects.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Config, JobConfig } from '../src/config/index.ts';
import { createS3Client, listObjects } from '../src/source/index.ts';
import type { PollResult } from '../src/scheduler/poller.ts';
import { createStore } from '../src/store/index.ts';
import { waitFor } from '../test/helpers/stack.ts';
import { median } from './lib/data.ts';
import { benchConfig, startBenchDaemon } from './lib/daemon.ts';
import { BUCKET, type BenchEnv } from './lib/endpoint.ts';
import { partitionedKeys, SEEDED_BODY, SEEDED_ETAG } from './lib/list-server.ts';

const HORIZON = '2d';

export async function discovery(env: BenchEnv, objects: number, runs: number): Promise<string[]> {
  const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  const server = spawn(process.execPath, ['--import', 'tsx', new URL('./lib/list-server-process.ts', import.meta.url).pathname, BUCKET, 'disc/', String(objects), String(today)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server.stdout! }).once('line', resolve);
      server.once('exit', (code) => reject(new Error(`the listing server exited with ${code}`)));
    });
    const endpoint = `http://127.0.0.1:${JSON.parse(line).port}`;
    const keys = partitionedKeys('disc/', objects, today);
    const keyFile = join(env.tmp.path, 'disc-keys.csv');
    await writeFile(keyFile, keys.join('\n'));
    const s3 = createS3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, maxAttempts: 3 });
    const add = (list: Array<{ key: string; body: string }>) => fetch(`${endpoint}/_add`, { method: 'POST', body: JSON.stringify(list) });

    // Whole listings of a million keys take minutes on these cores: one run each.
    const wholeRuns = objects >= 500_000 ? 1 : runs;
    const sequential: number[] = [];
    let sequentialRequests = 0;
    for (let r = 0; r < wholeRuns; r++) {
      let n = 0;
      const t0 = performance.now();
      const listed = await listObjects(s3, BUCKET, 'disc/', { onRequest: () => n++ });
      sequential.push((performance.now() - t0) / 1000);
      sequentialRequests = n;
      if (listed.length !== objects) throw new Error(`listed ${listed.length} of ${objects}`);
    }
    s3.destroy();

    const s3Config = { endpoint, forcePathStyle: true, maxAttempts: 3 };
    const job = (extra: Record<string, unknown>) => [{ id: 'disc', source: `s3://${BUCKET}/disc/`, model: { id: 'disc' }, schema: { predictionId: 'prediction_id', predictionScore: 'score' }, pollInterval: '1h', ...extra }];
    // Before: every poll lists the whole prefix.
    const whole = await timedPolls(benchConfig(env, job({}), { s3: s3Config }), keyFile, objects, wholeRuns);
    // After: polls leave out the partitions older than the horizon; the full listing comes every fullListInterval.
    let now = Date.now();
    const config = benchConfig(env, job({ partitionHorizon: HORIZON, fullListInterval: '1h' }), { s3: s3Config });
    const partial = await timedPolls(config, keyFile, objects, runs, () => now, async (poll) => {
      const recent = new Date(today).toISOString().slice(0, 10);
      const old = keys[Math.floor(objects / 3)].replace(/part-/, 'late-');
      await add([...Array.from({ length: 10 }, (_, i) => ({ key: `disc/dt=${recent}/hour=99/new-${i}.csv`, body: `prediction_id,score\nnew${i},0.5\n` })), { key: old, body: 'prediction_id,score\nlate,0.5\n' }]);
      const added = await poll();
      if (added.result.discoveredNew !== 10) throw new Error(`the poll after adding 10 recent files and 1 old one found ${added.result.discoveredNew}`);
      now += 3_600_000;
      const fullPass = await poll();
      if (!fullPass.result.full || fullPass.result.discoveredNew !== 1) throw new Error(`the full listing found ${fullPass.result.discoveredNew}`);
      return { added, fullPass };
    });
    console.error(`  discovery ${objects}: sequential ${sequential.map((x) => x.toFixed(2))} s, whole-prefix polls ${whole.times.map((x) => x.toFixed(2))} s, partial polls ${partial.times.map((x) => x.toFixed(2))} s`);
    const n = objects.toLocaleString('en');
    const perMinute = (perPoll: number, full?: number) => (6 * perPoll + (full ?? 0) / 60).toFixed(1);
    const { added, fullPass } = partial.extra!;
    return [
      '| objects | what | time | LIST requests | LIST requests per minute at the 10 s poll |', '|---|---|---|---|---|',
      `| ${n} | one plain sequential recursive listing (reference) | ${median(sequential).toFixed(2)} s | ${sequentialRequests} | |`,
      `| ${n} | daemon poll, nothing changed, whole prefix listed (default: 8 parallel key ranges + diff) | ${median(whole.times).toFixed(2)} s | ${whole.requests} | ${perMinute(whole.requests)} |`,
      `| ${n} | daemon poll, nothing changed, \`partitionHorizon: ${HORIZON}\` | ${median(partial.times).toFixed(2)} s | ${partial.requests} | ${perMinute(partial.requests, fullPass.requests)} (full listing hourly included) |`,
      `| ${n} | \`partitionHorizon: ${HORIZON}\`: poll after 10 files landed in today's partition and 1 in an old one (found the 10) | ${added.seconds.toFixed(2)} s | ${added.requests} | |`,
      `| ${n} | \`partitionHorizon: ${HORIZON}\`: the full listing, due after \`fullListInterval\` (found the old partition's file) | ${fullPass.seconds.toFixed(2)} s | ${fullPass.requests} | |`,
    ];
  } finally {
    server.kill('SIGTERM');
  }
}

type Poll = () => Promise<{ seconds: number; requests: number; result: PollResult }>;

/** A daemon over a ledger that already holds every key as imported (a long-running deployment); times `runs` unchanged polls, then runs `then`. */
async function timedPolls<T>(config: Readonly<Config>, keyFile: string, objects: number, runs: number, clock?: () => number, then?: (poll: Poll) => Promise<T>) {
  const store = createStore(config, dirname(keyFile));
  await store.init();
  await store.close();
  const db = await DuckDBInstance.create(config.store.kind === 'duckdb' ? config.store.path : '');
  const c = await db.connect();
  await c.run(`INSERT INTO import_files (job_id, bucket, key, etag, size, last_modified, status, discovered_at, finished_at)
    SELECT 'disc', '${BUCKET}', key, '${SEEDED_ETAG}', ${SEEDED_BODY.length}, now(), 'succeeded', now(), now()
    FROM read_csv('${keyFile}', header = false, columns = {'key': 'VARCHAR'})`);
  c.closeSync();
  db.closeSync();
  const d = await startBenchDaemon(config, { clock });
  const jobConfig = config.jobs[0] as JobConfig;
  const requests = async () => (await d.metrics.listRequests.get()).values.find((v) => v.labels.job === 'disc')?.value ?? 0;
  const poll: Poll = async () => {
    const before = await requests();
    const t0 = performance.now();
    const result = await d.poller!.pollJob(jobConfig);
    if (!result) throw new Error('the poll failed');
    return { seconds: (performance.now() - t0) / 1000, requests: (await requests()) - before, result };
  };
  try {
    // The first poll (at start) lists everything and reads the whole ledger once.
    await waitFor('the first poll', async () => (await d.metrics.objectsListed.get()).values.some((v) => v.labels.job === 'disc' && v.value === objects), 900_000, 100);
    const times: number[] = [];
    let perPoll = 0;
    for (let r = 0; r < runs; r++) {
      const p = await poll();
      if (p.result.discoveredNew !== 0) throw new Error(`an unchanged poll found ${p.result.discoveredNew} new files`);
      times.push(p.seconds);
      perPoll = p.requests;
    }
    return { times, requests: perPoll, extra: then ? await then(poll) : undefined };
  } finally {
    await d.stop();
  }
}
