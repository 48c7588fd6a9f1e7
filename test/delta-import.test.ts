import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Daemon } from '../src/daemon.ts';
import { BUCKET, ledger, runDaemon, startStack, waitFor, type Stack } from './helpers/stack.ts';
import { sql } from './helpers/sql.ts';

const CORPUS = new URL('../../shared/corpus/delta/', import.meta.url).pathname;
const { cases } = JSON.parse(await readFile(join(CORPUS, 'expectations.json'), 'utf8')) as { cases: Array<{ case: string; rowCount: number; latestVersion: number }> };

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else out.push(path);
  }
  return out;
}

/** A job per table: the row number as the prediction ID, a constant score, every column a feature. */
const jobId = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, '_');
const tableJob = (name: string, prefix: string) => ({
  id: jobId(name), source: `s3://${BUCKET}/${prefix}`, format: 'delta', model: { id: name },
  select: ['*', 'CAST(__source_row AS VARCHAR) AS pid', '0.5 AS score'],
  schema: { predictionId: 'pid', predictionScore: 'score' },
});

describe('Delta tables through the daemon', () => {
  let stack: Stack;
  let daemon: Daemon;
  before(async () => {
    stack = await startStack();
    const jobs = [...cases.map((c) => tableJob(c.case, `tables/${c.case}/`)), tableJob('growing', 'growing/'), tableJob('variant', 'variant/')];
    daemon = await runDaemon(stack.config(jobs, { worker: { concurrency: 4, attempts: 2, backoff: '200ms', lockDuration: '10s', shutdownTimeout: '10s' } }));
  });
  after(async () => {
    await daemon?.stop();
    await stack?.stop();
  });

  it('imports every corpus table with its exact row count, and never its data files as plain parquet', async () => {
    for (const c of cases) {
      const root = join(CORPUS, c.case, 'delta');
      // As a Delta writer does: data files first, the log after them.
      const files = (await filesUnder(root)).map((f) => relative(root, f)).sort((a, b) => Number(a.startsWith('_delta_log/')) - Number(b.startsWith('_delta_log/')) || a.localeCompare(b));
      for (const rel of files) await stack.s3.put(BUCKET, `tables/${c.case}/${rel}`, await readFile(join(root, rel)));
    }
    const rows = await waitFor('all 36 tables imported', async () => {
      const r = await sql(daemon.store)<{ job_id: string; key: string; etag: string; status: string; n: number; error_message: string | null }>(
        `SELECT job_id, key, etag, status, predictions_loaded::INT AS n, error_message FROM import_files
         QUALIFY row_number() OVER (PARTITION BY job_id ORDER BY discovered_at DESC, file_id DESC) = 1 ORDER BY job_id`);
      return r.length === cases.length && r.every((x) => x.status !== 'pending') && r;
    }, 120_000);
    for (const c of cases) {
      const row = rows.find((r) => r.job_id === jobId(c.case))!;
      assert.deepEqual(
        { key: row.key, etag: row.etag, status: row.status, rows: row.n },
        { key: `tables/${c.case}/`, etag: `v${c.latestVersion}`, status: 'succeeded', rows: c.rowCount },
        `${c.case}: ${row.error_message}`,
      );
    }
    const [{ plain }] = await sql(daemon.store)<{ plain: number }>(`SELECT count(*)::INT AS plain FROM import_files WHERE NOT key LIKE '%/'`);
    assert.equal(plain, 0);
    const [{ total }] = await sql(daemon.store)<{ total: number }>(`SELECT count(*)::INT AS total FROM predictions`);
    assert.equal(total, cases.reduce((a, c) => a + c.rowCount, 0));
  });

  it('replaces the rows of a table when a new version lands: appends add rows, nothing is duplicated', async () => {
    const root = join(CORPUS, 'dat-basic-append', 'delta');
    const log0 = JSON.parse(`[${(await readFile(join(root, '_delta_log/00000000000000000000.json'), 'utf8')).trim().split('\n').join(',')}]`);
    const firstFile = log0.find((a: { add?: { path: string } }) => a.add)!.add.path as string;
    await stack.s3.put(BUCKET, 'growing/_delta_log/00000000000000000000.json', await readFile(join(root, '_delta_log/00000000000000000000.json')));
    await stack.s3.put(BUCKET, `growing/${firstFile}`, await readFile(join(root, firstFile)));
    await waitFor('v0 imported', async () => (await ledger(daemon, 'growing')).some((r) => r.status === 'succeeded'));
    const count = async () => (await sql(daemon.store)<{ n: number }>(`SELECT count(*)::INT AS n FROM model_predictions.growing`))[0].n;
    assert.equal(await count(), 3);
    for (const file of await filesUnder(root)) {
      const rel = relative(root, file);
      if (rel !== firstFile && !rel.endsWith('00000000000000000000.json')) await stack.s3.put(BUCKET, `growing/${rel}`, await readFile(file));
    }
    const versions = await waitFor('v1 imported', async () => {
      const l = await ledger(daemon, 'growing');
      return l.length === 2 && l.every((r) => r.status === 'succeeded') && l;
    });
    assert.deepEqual(versions.map((v) => v.predictions_loaded), [3, 5]);
    assert.equal(await count(), 5);
    const [{ letters }] = await sql(daemon.store)<{ letters: string }>(`SELECT string_agg(features.letter, '' ORDER BY features.letter) AS letters FROM model_predictions.growing`);
    assert.equal(letters, 'abcde');
  });

  it('fails a table that needs an unsupported reader feature, naming the feature', async () => {
    const schema = JSON.stringify({ type: 'struct', fields: [{ name: 'v', type: 'variant', nullable: true, metadata: {} }] });
    const log = [
      { protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['variantType'], writerFeatures: ['variantType'] } },
      { metaData: { id: 'x', format: { provider: 'parquet', options: {} }, schemaString: schema, partitionColumns: [], configuration: {}, createdTime: 0 } },
      { add: { path: 'part-0.parquet', partitionValues: {}, size: 10, modificationTime: 0, dataChange: true } },
    ];
    await stack.s3.put(BUCKET, 'variant/part-0.parquet', 'not read');
    await stack.s3.put(BUCKET, 'variant/_delta_log/00000000000000000000.json', log.map((a) => JSON.stringify(a)).join('\n'));
    const [row] = await waitFor('variant table ended', async () => {
      const l = await ledger(daemon, 'variant');
      return l.length === 1 && l[0].status !== 'pending' && l;
    });
    assert.equal(row.status, 'failed');
    assert.equal(row.error_code, 'IMP_ERR_FORMAT_UNREADABLE');
    assert.match(row.error_message!, /reader feature "variantType", which is not supported/);
    assert.equal(row.attempts, 1); // permanent: not retried
  });
});
