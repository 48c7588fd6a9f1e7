/**
 * Part 6: the PostgreSQL store. Rows/s through the daemon's import path (download, DuckDB read,
 * map, validate, CSV out of DuckDB, COPY, merge, ledger) against PostgreSQL's own COPY of the same
 * rows from a local CSV into a table of the same shape and indexes, in the same run; JSONB against
 * typed feature columns for that COPY; and 1 against 2 worker processes on the same files.
 */
import { createReadStream } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { stringify } from 'yaml';
import { validateConfig } from '../src/config/index.ts';
import { PostgresStore } from '../src/store/index.ts';
import { spawnCli } from '../test/helpers/child.ts';
import { createTestDatabase } from '../test/helpers/postgres.ts';
import { waitFor, writeFixture } from '../test/helpers/stack.ts';
import { median, predictionsSql } from './lib/data.ts';
import { BUCKET, type BenchEnv } from './lib/endpoint.ts';
import { PREDICTION_SCHEMA } from './lib/daemon.ts';

const FEATURES = [...Array.from({ length: 20 }, (_, k) => `n${k}`), ...Array.from({ length: 5 }, (_, k) => `s${k}`)];

/** The mapped rows as the daemon stores them (features and tags as JSON), written as CSV by DuckDB. */
const mappedCsvSql = (parquet: string) => `
  SELECT 'v1' AS model_version, NULL AS batch_id, prediction_id, prediction_ts, predicted_label AS prediction_label, score AS prediction_score,
         NULL AS prediction_scores, NULL AS prediction_group_id, NULL AS rank,
         to_json({${FEATURES.map((f) => `'${f}': "feature/${f}"`).join(', ')}}) AS features,
         to_json({'region': "tag/region", 'channel': "tag/channel"}) AS tags, NULL AS shap, NULL AS embeddings,
         1 AS source_file_id, row_number() OVER () AS source_row
  FROM read_parquet('${parquet}')`;
const typedCsvSql = (parquet: string) => `
  SELECT prediction_id, prediction_ts, predicted_label, score, ${FEATURES.map((f) => `"feature/${f}"`).join(', ')}, "tag/region", "tag/channel"
  FROM read_parquet('${parquet}')`;

async function copyFile(client: pg.Client, table: string, csv: string): Promise<number> {
  const t0 = performance.now();
  await pipeline(createReadStream(csv), client.query(copyFrom(`COPY ${table} FROM STDIN (FORMAT csv)`)));
  return (performance.now() - t0) / 1000;
}

/** Seconds from discovery to commit of every file of a job, and whether all succeeded. */
async function ledgerSeconds(store: PostgresStore, jobId: string): Promise<number> {
  const [r] = await store.query<{ s: number; n: number; ok: number }>(
    `SELECT extract(epoch FROM max(finished_at) - min(discovered_at))::float AS s, count(*)::int AS n, count(*) FILTER (WHERE status = 'succeeded')::int AS ok FROM import_files WHERE job_id = $1`, [jobId]);
  if (r.ok !== r.n) {
    const failed = await store.query<{ key: string; status: string; error_message: string }>(`SELECT key, status, error_message FROM import_files WHERE job_id = $1 AND status <> 'succeeded'`, [jobId]);
    throw new Error(`${jobId}: ${r.n - r.ok} file(s) did not succeed: ${JSON.stringify(failed)}`);
  }
  return r.s;
}

export async function postgres(env: BenchEnv, rows: number, runs: number): Promise<string[]> {
  const db = await createTestDatabase('importer_bench');
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  const out: string[] = [];
  try {
    const parquet = await writeFixture(join(env.tmp.path, `pg-${rows}.parquet`), predictionsSql(0, rows), 'FORMAT parquet');
    const duck = await DuckDBInstance.create(':memory:');
    const conn = await duck.connect();
    const mappedCsv = join(env.tmp.path, 'pg-mapped.csv');
    const typedCsv = join(env.tmp.path, 'pg-typed.csv');
    // A second file of as many new IDs, loaded into a model that already holds the first one's rows.
    const parquet2 = await writeFixture(join(env.tmp.path, `pg-${rows}-2.parquet`), predictionsSql(rows, 2 * rows), 'FORMAT parquet');
    const mappedCsv2 = join(env.tmp.path, 'pg-mapped-2.csv');
    await conn.run(`COPY (${mappedCsvSql(parquet)}) TO '${mappedCsv}' (FORMAT csv, HEADER false)`);
    await conn.run(`COPY (${mappedCsvSql(parquet2)}) TO '${mappedCsv2}' (FORMAT csv, HEADER false)`);
    await conn.run(`COPY (${typedCsvSql(parquet)}) TO '${typedCsv}' (FORMAT csv, HEADER false)`);
    conn.closeSync();
    duck.closeSync();

    // The store's own tables, so the reference COPY meets the same indexes as the daemon's rows.
    const storeFor = (schema: string) => new PostgresStore({
      url: db.url, schema, poolSize: 2, statementTimeout: 600_000, memoryLimit: '512MB', readableDirectory: env.tmp.path,
    });
    const schemaStore = storeFor('ref');
    await schemaStore.init();
    await schemaStore.close();
    const copyCols = 'model_version, batch_id, prediction_id, prediction_ts, prediction_label, prediction_score, prediction_scores, prediction_group_id, rank, features, tags, shap, embeddings, source_file_id, source_row';
    const jsonb: number[] = [];
    const typed: number[] = [];
    const daemon: number[] = [];
    const jsonb2: number[] = [];
    const daemon2: number[] = [];
    for (let r = 0; r < runs; r++) {
      await admin.query(`DROP TABLE IF EXISTS ref.copy_jsonb; CREATE TABLE ref.copy_jsonb (LIKE ref.prediction_rows INCLUDING ALL)`);
      await admin.query(`ALTER TABLE ref.copy_jsonb ALTER COLUMN model_id SET DEFAULT 'bench', ALTER COLUMN environment SET DEFAULT 'production', ALTER COLUMN loaded_at SET DEFAULT now()`);
      jsonb.push(await copyFile(admin, `ref.copy_jsonb (${copyCols})`, mappedCsv));
      jsonb2.push(await copyFile(admin, `ref.copy_jsonb (${copyCols})`, mappedCsv2));
      await admin.query(`DROP TABLE IF EXISTS ref.copy_typed; CREATE TABLE ref.copy_typed (prediction_id TEXT NOT NULL, prediction_ts TIMESTAMPTZ, prediction_label TEXT, prediction_score DOUBLE PRECISION,
        ${FEATURES.map((f) => `${f} ${f.startsWith('n') ? 'DOUBLE PRECISION' : 'TEXT'}`).join(', ')}, region TEXT, channel TEXT)`);
      await admin.query(`CREATE INDEX ON ref.copy_typed (prediction_id)`);
      typed.push(await copyFile(admin, 'ref.copy_typed', typedCsv));

      const schema = `run${r}`;
      // A prefix per run: the files of the runs before stay in the bucket.
      const prefix = `pg-${rows}-run${r}`;
      const config = validateConfig({
        redis: { url: env.redis.url, prefix: `pgbench${r}` },
        store: { kind: 'postgres', url: db.url, schema },
        s3: { endpoint: env.endpoint, forcePathStyle: true },
        http: { port: 0 },
        log: { level: 'error' },
        jobs: [{ id: 'pg', source: `s3://${BUCKET}/${prefix}/`, model: { id: 'pg' }, schema: PREDICTION_SCHEMA, maxFileBytes: '16GiB' }],
      });
      await env.seedFile(`${prefix}/f.parquet`, parquet);
      const { startDaemon } = await import('../src/daemon.ts');
      const { createLogger } = await import('../src/log.ts');
      const d = await startDaemon(config, { log: createLogger('error') });
      try {
        const store = d.store as PostgresStore;
        await waitFor('the PostgreSQL import', async () => (await store.query<{ n: number }>(`SELECT count(*)::int AS n FROM import_files WHERE status <> 'pending'`))[0].n === 1, 1_800_000, 200);
        daemon.push(await ledgerSeconds(store, 'pg'));
        const [{ n }] = await store.query<{ n: number }>(`SELECT count(*)::int AS n FROM predictions`);
        if (n !== rows) throw new Error(`the daemon loaded ${n} rows of ${rows}`);
        await env.seedFile(`${prefix}/g.parquet`, parquet2);
        await waitFor('the second PostgreSQL import', async () => (await store.query<{ n: number }>(`SELECT count(*)::int AS n FROM import_files WHERE status <> 'pending'`))[0].n === 2, 1_800_000, 200);
        const [second] = await store.query<{ s: number; ok: boolean }>(
          `SELECT extract(epoch FROM finished_at - discovered_at)::float AS s, status = 'succeeded' AS ok FROM import_files WHERE key = $1`, [`${prefix}/g.parquet`]);
        if (!second.ok) throw new Error('the second file did not succeed');
        daemon2.push(second.s);
        const [{ n: n2 }] = await store.query<{ n: number }>(`SELECT count(*)::int AS n FROM predictions`);
        if (n2 !== 2 * rows) throw new Error(`the daemon holds ${n2} rows of ${2 * rows}`);
      } finally {
        await d.stop();
      }
      console.error(`  postgres ${rows}: COPY jsonb ${jsonb.at(-1)!.toFixed(2)} s, typed ${typed.at(-1)!.toFixed(2)} s, daemon ${daemon.at(-1)!.toFixed(2)} s; `
        + `into a table holding ${rows}: COPY ${jsonb2.at(-1)!.toFixed(2)} s, daemon ${daemon2.at(-1)!.toFixed(2)} s`);
    }
    const [cj, ct, dm, cj2, dm2] = [median(jsonb), median(typed), median(daemon), median(jsonb2), median(daemon2)];
    const rate = (s: number) => `${(rows / s / 1000).toFixed(0)} k rows/s`;
    out.push(
      '| rows | PostgreSQL COPY of the mapped rows from a local CSV (JSONB features, same table and indexes) | daemon import into PostgreSQL (download → DuckDB → COPY → merge → ledger) | ratio | COPY into typed feature columns |',
      '|---|---|---|---|---|',
      `| ${rows.toLocaleString('en')} into an empty model | ${cj.toFixed(2)} s (${rate(cj)}) | ${dm.toFixed(2)} s (${rate(dm)}) | **${(cj / dm).toFixed(2)}** | ${ct.toFixed(2)} s (${rate(ct)}; JSONB ÷ typed ${(cj / ct).toFixed(2)}) |`,
      `| ${rows.toLocaleString('en')} new IDs into a model holding ${rows.toLocaleString('en')} | ${cj2.toFixed(2)} s (${rate(cj2)}) | ${dm2.toFixed(2)} s (${rate(dm2)}) | **${(cj2 / dm2).toFixed(2)}** | |`,
    );

    // 1 against 2 worker processes (plus a scheduler) on the same 8 files.
    const files = 8;
    const per = Math.floor(rows / files);
    const scaling: string[] = [];
    const scaleFiles: string[] = [];
    for (let i = 0; i < files; i++) scaleFiles.push(await writeFixture(join(env.tmp.path, `pgs-${i}.parquet`), predictionsSql(i * per, (i + 1) * per), 'FORMAT parquet'));
    for (const workers of [1, 2]) {
      const prefix = `pgscale${workers}`;
      const configPath = join(env.tmp.path, `${prefix}.yaml`);
      await writeFile(configPath, stringify({
        redis: { url: env.redis.url, prefix }, store: { kind: 'postgres', url: db.url, schema: prefix },
        s3: { endpoint: env.endpoint, forcePathStyle: true }, http: { port: 0 }, log: { level: 'info' }, defaults: { pollInterval: '1s' },
        jobs: [{ id: 'pg', source: `s3://${BUCKET}/${prefix}/`, model: { id: 'pg' }, schema: PREDICTION_SCHEMA }],
      }));
      const procs = [await spawnCli(['scheduler', '--config', configPath])];
      for (let w = 0; w < workers; w++) procs.push(await spawnCli(['worker', '--config', configPath]));
      // Timed from the first discovery: every process is up before the files arrive.
      await waitFor('the processes to start', async () => procs.every((p) => p.output().includes('"msg":"inference-importer started"')), 120_000);
      for (const [i, f] of scaleFiles.entries()) await env.seedFile(`${prefix}/f${i}.parquet`, f);
      const store = storeFor(prefix);
      try {
        await waitFor(`${workers} worker(s)`, async () => {
          await store.init().catch(() => undefined);
          const [r] = await store.query<{ n: number }>(`SELECT count(*) FILTER (WHERE status = 'succeeded')::int AS n FROM import_files`).catch(() => [{ n: 0 }]);
          return r.n === files;
        }, 1_800_000, 500);
        const s = await ledgerSeconds(store, 'pg');
        scaling.push(`| ${workers} | ${files} × ${per.toLocaleString('en')} | ${s.toFixed(2)} s (${rate(s)}) |`);
        console.error(`  postgres ${workers} worker(s): ${s.toFixed(2)} s`);
      } finally {
        for (const p of procs) p.proc.kill('SIGTERM');
        await Promise.all(procs.map((p) => p.exited));
        await store.close();
      }
    }
    out.push('', '| worker processes | files × rows | first discovery → last commit |', '|---|---|---|', ...scaling);
    await rm(mappedCsv, { force: true });
    await rm(mappedCsv2, { force: true });
    await rm(typedCsv, { force: true });
  } finally {
    await admin.end();
    await db.drop();
  }
  return out;
}
