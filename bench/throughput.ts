/** Part 1: import throughput per format vs DuckDB's own CREATE TABLE AS of the same local file. */
import { execFileSync } from 'node:child_process';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { downloadObject, downloadParts } from '../src/source/index.ts';
import { writeFixture } from '../test/helpers/stack.ts';
import { FORMATS, median, predictionsSql, type Format } from './lib/data.ts';
import { benchConfig, importsDone, importSeconds, job, PREDICTION_SCHEMA, startBenchDaemon } from './lib/daemon.ts';
import { BUCKET, type BenchEnv } from './lib/endpoint.ts';

/**
 * Writes the dirty pages of earlier steps back before a timed step: otherwise the kernel's write-back
 * of one step's gigabyte lands in the next one's time (raw 5M-row loads here ranged 5.9–9.1 s without it).
 */
const settleDisk = () => execFileSync('sync');

/** CPU seconds (user + system) of this process: DuckDB's threads and, in the daemon's runs, the daemon. */
const cpuSeconds = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};

export async function throughput(env: BenchEnv, sizes: number[], formats: Format[], runs: number): Promise<string[]> {
  const out = [
    '| format | rows | file | raw DuckDB CREATE TABLE AS | daemon import | of which download | ratio | ratio without download | CPU seconds: raw / daemon + endpoint (cores busy) |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const rows of sizes) {
    for (const format of formats) {
      const f = FORMATS[format];
      const file = await writeFixture(join(env.tmp.path, `tp-${rows}.${f.ext}`), predictionsSql(0, rows), f.copy);
      const key = `tp-${format}-${rows}/f.${f.ext}`;
      const etag = await env.seedFile(key, file);
      const { size } = await stat(file);
      const raw: number[] = [];
      const daemon: number[] = [];
      const download: number[] = [];
      const rawCpu: number[] = [];
      const daemonCpu: number[] = [];
      const rawBusy: number[] = [];
      const daemonBusy: number[] = [];
      for (let r = 0; r < runs; r++) {
        const path = join(env.tmp.path, `raw-${format}-${rows}-${r}.duckdb`);
        const db = await DuckDBInstance.create(path);
        const conn = await db.connect();
        settleDisk();
        let cpu0 = cpuSeconds();
        let t0 = performance.now();
        await conn.run(`CREATE TABLE t AS SELECT * FROM ${f.read(file)}`);
        await conn.run('CHECKPOINT');
        raw.push((performance.now() - t0) / 1000);
        rawCpu.push(cpuSeconds() - cpu0);
        rawBusy.push(rawCpu.at(-1)! / raw.at(-1)!);
        conn.closeSync();
        db.closeSync();
        await rm(path, { force: true });

        const id = `tp-${format}-${rows}`;
        const config = benchConfig(env, [{ ...job(id, `${key.split('/')[0]}/`, PREDICTION_SCHEMA), maxFileBytes: '16GiB' }]);
        // The download alone, as the daemon does it (byte ranges in parallel above s3.downloadPartSize).
        const dl = join(env.tmp.path, `dl.${f.ext}`);
        settleDisk();
        t0 = performance.now();
        await downloadObject(env.s3, { bucket: BUCKET, key, etag, size, lastModified: new Date() }, dl, Number.MAX_SAFE_INTEGER, downloadParts(config));
        download.push((performance.now() - t0) / 1000);
        await rm(dl, { force: true });

        settleDisk();
        // The daemon's CPU (this process) and the endpoint's, from its start until the file is committed.
        cpu0 = cpuSeconds() + (await env.endpointCpuSeconds());
        t0 = performance.now();
        const d = await startBenchDaemon(config);
        try {
          await importsDone(d, id, 1);
          const wall = (performance.now() - t0) / 1000;
          daemonCpu.push(cpuSeconds() + (await env.endpointCpuSeconds()) - cpu0);
          daemonBusy.push(daemonCpu.at(-1)! / wall);
          daemon.push((await importSeconds(d, id))[0]);
        } finally {
          await d.stop();
          if (config.store.kind === 'duckdb') await rm(config.store.path, { force: true });
        }
      }
      const [rw, dm, dl] = [median(raw), median(daemon), median(download)];
      console.error(`  throughput ${format} ${rows}: raw ${raw.map((x) => x.toFixed(2))} s, daemon ${daemon.map((x) => x.toFixed(2))} s, download ${download.map((x) => x.toFixed(2))} s, CPU raw ${rawCpu.map((x) => x.toFixed(1))} daemon ${daemonCpu.map((x) => x.toFixed(1))}`);
      const cpu = `${median(rawCpu).toFixed(1)} (${median(rawBusy).toFixed(1)}) / ${median(daemonCpu).toFixed(1)} (${median(daemonBusy).toFixed(1)})`;
      out.push(`| ${format} | ${rows.toLocaleString('en')} | ${(size / 1e6).toFixed(1)} MB | ${rw.toFixed(2)} s (${(rows / rw / 1e6).toFixed(2)} M rows/s) | ${dm.toFixed(2)} s (${(rows / dm / 1e6).toFixed(2)} M rows/s) | ${dl.toFixed(2)} s | ${(rw / dm).toFixed(2)} | ${(rw / (dm - dl)).toFixed(2)} | ${cpu} |`);
    }
  }
  return out;
}
