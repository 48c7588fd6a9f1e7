/** Part 5: peak RSS of the daemon process while it imports one large parquet file. */
import { spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { waitFor, writeFixture } from '../test/helpers/stack.ts';
import { predictionsSql } from './lib/data.ts';
import { PREDICTION_SCHEMA } from './lib/daemon.ts';
import { BUCKET, type BenchEnv } from './lib/endpoint.ts';

/** Bytes per row of the generated predictions in parquet (measured: 142.6 MB per million rows). */
const PARQUET_BYTES_PER_ROW = 142.6;

const statusKb = async (pid: number, field: string) => {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
};

/** Runs `inference-importer run` as its own process on the given store settings and reports its peak RSS. */
async function peakRss(env: BenchEnv, key: string, store: Record<string, unknown>, tag: string) {
  const prefix = key.split('/')[0];
  const configPath = join(env.tmp.path, `mem-${tag}.yaml`);
  await writeFile(configPath, stringify({
    redis: { url: env.redis.url, prefix: `mem-${tag}` },
    store: { kind: 'duckdb', path: join(env.tmp.path, `mem-${tag}.duckdb`), ...store },
    s3: { endpoint: env.endpoint, forcePathStyle: true },
    http: { port: 0 },
    log: { level: 'info' },
    jobs: [{ id: 'mem', source: `s3://${BUCKET}/${prefix}/`, model: { id: 'mem' }, schema: PREDICTION_SCHEMA }],
  }));
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'run', '--config', configPath], {
    cwd: new URL('..', import.meta.url).pathname, env: process.env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (c) => (out += c));
  proc.stderr.on('data', (c) => (out += c));
  const exited = new Promise((r) => proc.on('exit', r));
  try {
    await waitFor('the daemon to start', async () => out.includes('store open'), 300_000, 100);
    const idle = await statusKb(proc.pid!, 'VmRSS');
    const t0 = performance.now();
    await waitFor('the import', async () => {
      if (/"import failed"|"level":50/.test(out)) throw new Error(`import failed: ${out.slice(-2000)}`);
      return out.includes('import succeeded');
    }, 1_800_000, 200);
    const seconds = (performance.now() - t0) / 1000;
    return { idle, peak: await statusKb(proc.pid!, 'VmHWM'), seconds };
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
}

/** Runs so far in this process: each gets a prefix, store and Redis prefix of its own. */
let runs = 0;

export async function memory(env: BenchEnv, bytes: number, limits: string[]): Promise<string[]> {
  const rows = Math.floor(bytes / PARQUET_BYTES_PER_ROW);
  const file = await writeFixture(join(env.tmp.path, `mem-${rows}.parquet`), predictionsSql(0, rows), 'FORMAT parquet');
  const size = (await stat(file)).size;
  const out = ['| file | store.memoryLimit | threads | idle RSS | peak RSS | import |', '|---|---|---|---|---|---|'];
  for (const limit of limits) {
    const i = runs++;
    const key = `mem${i}/big.parquet`;
    await env.seedFile(key, file);
    const r = await peakRss(env, key, limit === 'default' ? {} : { memoryLimit: limit }, String(i));
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
    console.error(`  memory ${limit}: peak ${gib(r.peak)} in ${r.seconds.toFixed(1)} s`);
    out.push(`| ${(size / 2 ** 30).toFixed(2)} GiB parquet, ${rows.toLocaleString('en')} rows | ${limit === 'default' ? '512MB (default)' : limit} | 2 (default: cores) | ${gib(r.idle)} | ${gib(r.peak)} | ${r.seconds.toFixed(1)} s |`);
  }
  return out;
}
