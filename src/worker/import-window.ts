import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImportResult } from '../import/index.ts';
import { applySelect } from '../schema/select.ts';
import { connectWarehouse, describeQuery, parseWindowKey, queryToCsv, windowRelation, windowSelect, type SqlJob } from '../source/sql/index.ts';
import type { FileVersion } from '../store/store.ts';
import { countImport } from './count-import.ts';
import type { ImportDeps } from './import-file.ts';

/**
 * The import of one window of a query source: the query's rows whose cursor is in
 * (window start − lookback, window end] (the whole query for a source without a cursor) are
 * streamed from the warehouse into a CSV file, read by DuckDB with the types of the result
 * description, and imported like a file: one store transaction holds the rows and the window's
 * ledger row, so the next window starts from a committed one.
 */
export async function importWindow(deps: ImportDeps, job: SqlJob, version: FileVersion): Promise<ImportResult & { ms: { query: number; import: number } }> {
  const { config, metrics } = deps;
  const window = parseWindowKey(version.key);
  const lookback = job.source.sql.cursor?.lookback ?? 0;
  const range = window && { from: new Date(window.from.getTime() - lookback), to: window.to };
  const dir = join(deps.tmpDir, `${version.fileId}-${randomUUID()}`);
  const started = performance.now();
  await mkdir(dir);
  try {
    const file = { path: join(dir, 'window.csv'), key: version.key };
    const wh = await connectWarehouse(job, config.s3.region);
    let columns;
    try {
      columns = await describeQuery(wh, job);
      await queryToCsv(wh, job, windowSelect(job, columns, range), file.path, `reading ${version.key}`);
    } finally {
      await wh.close();
    }
    const queried = performance.now();
    const source = applySelect(job, await windowRelation(file, columns));
    // Where the time went, for the log line: the query into the CSV file, the import (its turn included).
    const result = { ...(await deps.importer.importFile({ job, version, file, source, importTime: new Date(), alone: true })), ms: { query: Math.round(queried - started), import: Math.round(performance.now() - queried) } };
    countImport(metrics, job, result, version.lastModified);
    if (window && (result.status === 'succeeded' || result.status === 'partially_succeeded')) metrics.sqlWindowCommitted(job.id, window.to);
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
