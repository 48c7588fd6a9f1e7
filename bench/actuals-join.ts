/** Part 2: importing actuals against stored predictions vs DuckDB's own bulk upsert; a one-day query over `inferences`. */
import { copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { writeFixture } from '../test/helpers/stack.ts';
import { actualsSql, median, predictionsSql } from './lib/data.ts';
import { ACTUAL_SCHEMA, benchConfig, importsDone, importSeconds, job, PREDICTION_SCHEMA, startBenchDaemon } from './lib/daemon.ts';
import type { BenchEnv } from './lib/endpoint.ts';
import { sql } from '../test/helpers/sql.ts';

const DAY_QUERY = (from: string, where = 'true') => `SELECT count(*) AS n, count(actual_label) AS joined, avg(CASE WHEN actual_label = prediction_label THEN 1.0 ELSE 0.0 END) FILTER (WHERE actual_label IS NOT NULL) AS accuracy
  FROM ${from} WHERE ${where} AND prediction_ts >= TIMESTAMPTZ '2026-11-04 00:00:00+00' AND prediction_ts < TIMESTAMPTZ '2026-11-05 00:00:00+00'`;

export async function actualsJoin(env: BenchEnv, predictions: number, runs: number): Promise<string[]> {
  const predFile = await writeFixture(join(env.tmp.path, `aj-pred-${predictions}.parquet`), predictionsSql(0, predictions), 'FORMAT parquet');
  const actFile = await writeFixture(join(env.tmp.path, `aj-act-${predictions}.parquet`), actualsSql(predictions), 'FORMAT parquet');

  // The predictions, once, through the daemon; each timed run starts from a copy of that store.
  await env.seedFile('aj/predictions/p.parquet', predFile);
  const jobs = [job('aj-pred', 'aj/predictions/', PREDICTION_SCHEMA, 'churn'), job('aj-act', 'aj/actuals/', ACTUAL_SCHEMA, 'churn')];
  const base = benchConfig(env, jobs);
  const basePath = base.store.kind === 'duckdb' ? base.store.path : '';
  let d = await startBenchDaemon(base);
  await importsDone(d, 'aj-pred', 1);
  await d.stop();
  await env.seedFile('aj/actuals/a.parquet', actFile);

  // Raw: a table of the same predictions with a primary key and actual columns, upserted with ON CONFLICT.
  const rawBase = join(env.tmp.path, 'aj-raw.duckdb');
  {
    const db = await DuckDBInstance.create(rawBase);
    const c = await db.connect();
    await c.run(`CREATE TABLE p (prediction_id VARCHAR PRIMARY KEY, prediction_ts TIMESTAMPTZ, prediction_label VARCHAR, score DOUBLE, actual_label VARCHAR, actual_ts TIMESTAMPTZ)`);
    await c.run(`INSERT INTO p SELECT prediction_id, prediction_ts, predicted_label, score, NULL, NULL FROM read_parquet('${predFile}')`);
    await c.run('CHECKPOINT');
    c.closeSync();
    db.closeSync();
  }

  const raw: number[] = [];
  const rawQuery: number[] = [];
  const daemon: number[] = [];
  const query: number[] = [];
  let actuals = 0;
  let joined = 0;
  for (let r = 0; r < runs; r++) {
    const rawPath = join(env.tmp.path, `aj-raw-${r}.duckdb`);
    await copyFile(rawBase, rawPath);
    const db = await DuckDBInstance.create(rawPath);
    const c = await db.connect();
    let t0 = performance.now();
    await c.run(`INSERT INTO p (prediction_id, actual_label, actual_ts) SELECT prediction_id, actual_label, actual_ts FROM read_parquet('${actFile}')
                 ON CONFLICT (prediction_id) DO UPDATE SET actual_label = EXCLUDED.actual_label, actual_ts = EXCLUDED.actual_ts`);
    await c.run('CHECKPOINT');
    raw.push((performance.now() - t0) / 1000);
    t0 = performance.now();
    await c.runAndReadAll(DAY_QUERY('p'));
    rawQuery.push((performance.now() - t0) / 1000);
    c.closeSync();
    db.closeSync();
    await rm(rawPath, { force: true });

    const config = benchConfig(env, jobs);
    const path = config.store.kind === 'duckdb' ? config.store.path : '';
    await copyFile(basePath, path);
    d = await startBenchDaemon(config);
    try {
      await importsDone(d, 'aj-act', 1);
      daemon.push((await importSeconds(d, 'aj-act'))[0]);
      const [s] = await sql(d.store)<{ a: number; j: number }>(`SELECT (SELECT count(*) FROM actuals)::INT AS a, (SELECT count(*) FROM inferences WHERE actual_label IS NOT NULL)::INT AS j`);
      [actuals, joined] = [s.a, s.j];
      t0 = performance.now();
      await sql(d.store)(DAY_QUERY('inferences', `model_id = 'churn'`));
      query.push((performance.now() - t0) / 1000);
    } finally {
      await d.stop();
      await rm(path, { force: true });
    }
  }
  console.error(`  actuals join: raw ${raw.map((x) => x.toFixed(2))} s, daemon ${daemon.map((x) => x.toFixed(2))} s, query ${query.map((x) => x.toFixed(3))} s`);
  const [rw, dm] = [median(raw), median(daemon)];
  return [
    '| measure | rows | raw DuckDB | daemon | ratio |', '|---|---|---|---|---|',
    `| actuals import against ${predictions.toLocaleString('en')} stored predictions | ${actuals.toLocaleString('en')} actuals, ${joined.toLocaleString('en')} joined | ${rw.toFixed(2)} s (INSERT … ON CONFLICT DO UPDATE on a primary key) | ${dm.toFixed(2)} s | ${(rw / dm).toFixed(2)} |`,
    `| one day of one model over \`inferences\` (count, joined, accuracy) | ${Math.round(predictions / 10).toLocaleString('en')} | ${(median(rawQuery) * 1000).toFixed(0)} ms (same query on the upserted table) | ${(median(query) * 1000).toFixed(0)} ms | ${(median(rawQuery) / median(query)).toFixed(2)} |`,
  ];
}
