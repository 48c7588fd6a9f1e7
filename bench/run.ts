/**
 * The benchmarks (not part of `npm test`). Every figure is printed beside its reference, measured
 * in the same run on the same data.
 *
 *   npm run bench                      all parts at full size (30–45 minutes on 2 cores)
 *   npm run bench -- --quick           all parts at a small size (a smoke run, under 2 minutes)
 *   npm run bench -- --parts=1,4       some parts only
 *   npm run bench -- --parts=1 --rows=5000000   part 1 at some sizes only
 *   npm run bench -- --parts=1 --formats=parquet  part 1 for some formats only
 *   npm run bench -- --parts=1,2 --runs=1          one run per figure instead of 3 (parts 1, 2, 6, 7)
 *   npm run bench -- --parts=6         the PostgreSQL store (needs the PostgreSQL of the machine)
 *   npm run bench -- --parts=7         a query source (the machine's PostgreSQL as the warehouse)
 *   npm run bench -- --parts=3 --intervals=10s --concurrency=8   part 3 at some poll intervals, another worker.concurrency
 */
import { actualsJoin } from './actuals-join.ts';
import { discovery } from './discovery.ts';
import { latency } from './latency.ts';
import { memory } from './memory.ts';
import { postgres } from './postgres.ts';
import { sqlSource } from './sql-source.ts';
import { throughput } from './throughput.ts';
import type { Format } from './lib/data.ts';
import { startBenchEnv } from './lib/endpoint.ts';

const quick = process.argv.includes('--quick');
const partsArg = process.argv.find((a) => a.startsWith('--parts='));
const rowsArg = process.argv.find((a) => a.startsWith('--rows='));
const formatsArg = process.argv.find((a) => a.startsWith('--formats='));
const formats = (formatsArg?.slice('--formats='.length).split(',') ?? ['parquet', 'csv', 'ndjson']) as Format[];
const sizes = rowsArg ? rowsArg.slice('--rows='.length).split(',').map(Number) : [1_000_000, 5_000_000];
const runsArg = process.argv.find((a) => a.startsWith('--runs='));
const runs = runsArg ? Number(runsArg.slice('--runs='.length)) : 3;
const intervals = process.argv.find((a) => a.startsWith('--intervals='))?.slice('--intervals='.length).split(',') ?? ['2s', '10s'];
const concurrencyArg = process.argv.find((a) => a.startsWith('--concurrency='));
const concurrency = concurrencyArg ? Number(concurrencyArg.slice('--concurrency='.length)) : undefined;
const parts = new Set((partsArg?.slice('--parts='.length) ?? '1,2,3,4,5,6,7').split(',').map(Number));

const env = await startBenchEnv();
// Stopped from outside (SIGTERM, Ctrl-C): stop s3rver and Redis and remove the temp folder, as the end of a run does.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    console.error(`${signal}: stopping the bench's s3rver and Redis`);
    void env.stop().finally(() => process.exit(signal === 'SIGTERM' ? 143 : 130));
  });
}
const report: string[] = [];
const section = async (n: number, title: string, fn: () => Promise<string[]>) => {
  if (!parts.has(n)) return;
  console.error(`part ${n}: ${title}`);
  const t0 = performance.now();
  const lines = await fn();
  report.push(`\n### ${n}. ${title}\n`, ...lines);
  console.error(`  (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
};
try {
  await section(1, 'Import throughput', () =>
    quick ? throughput(env, [100_000], formats, 1) : throughput(env, sizes, formats, runs));
  await section(2, 'Actuals join', () => (quick ? actualsJoin(env, 200_000, 1) : actualsJoin(env, 5_000_000, runs)));
  await section(3, 'End-to-end latency', async () => {
    const lines: string[] = [];
    for (const interval of intervals) {
      const table = await (quick ? latency(env, 5, 10_000, 15, 1, interval, concurrency, false) : latency(env, 50, 100_000, 150, runs, interval, concurrency));
      lines.push(...(lines.length ? table.slice(2) : table));
    }
    return lines;
  });
  await section(4, 'Discovery at scale', () => (quick ? discovery(env, 5_000, 1) : discovery(env, 1_000_000, 3)));
  await section(5, 'Memory', () => (quick ? memory(env, 50 * 2 ** 20, ['default']) : memory(env, 0.97 * 2 ** 30, ['default', '768MB'])));
  await section(6, 'PostgreSQL store', () => (quick ? postgres(env, 50_000, 1) : postgres(env, 1_000_000, runs)));
  await section(7, 'Query source', () => (quick ? sqlSource(env, 50_000, 1) : sqlSource(env, 1_000_000, runs)));
  console.log(`# inference-importer benchmarks${quick ? ' (--quick: smoke sizes, not figures to report)' : ''}`);
  console.log(report.join('\n'));
} finally {
  await env.stop();
}
