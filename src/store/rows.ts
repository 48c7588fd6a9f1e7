import { ACTUAL_DELAY_BUCKETS, type FilePage, type FileStatus, type FileVersion, type JobCounts, type MatchedActuals, type ModelSummary } from './store.ts';

/** Turns the rows the stores read back into the objects of the `Store` interface, the same for every store. */

type Row = Record<string, unknown>;

export const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** A timestamp as a driver returns it: a Date (pg) or text such as `2026-11-01 00:00:00+00` (DuckDB's JSON rows). */
export const date = (v: unknown): Date | null =>
  v === null || v === undefined ? null : v instanceof Date ? v : new Date(String(v).replace(/\+00$/, 'Z').replace(' ', 'T'));

/** The ledger columns every store selects for a `FileVersion`. */
export const LEDGER_COLUMNS = `file_id, job_id, bucket, key, etag, size, last_modified, status, attempts, discovered_at, finished_at,
  rows_read, predictions_loaded, actuals_loaded, rows_rejected, error_code, error_message, error_column, error_row`;

export function toVersion(r: Row): FileVersion {
  return {
    fileId: Number(r.file_id),
    jobId: String(r.job_id),
    bucket: String(r.bucket),
    key: String(r.key),
    etag: String(r.etag),
    size: Number(r.size),
    lastModified: date(r.last_modified) ?? new Date(0),
    status: r.status as FileStatus,
    attempts: Number(r.attempts),
    discoveredAt: date(r.discovered_at)!,
    finishedAt: date(r.finished_at),
    rowsRead: num(r.rows_read),
    predictionsLoaded: num(r.predictions_loaded),
    actualsLoaded: num(r.actuals_loaded),
    rowsRejected: num(r.rows_rejected),
    errorCode: (r.error_code as string | null) ?? null,
    errorMessage: (r.error_message as string | null) ?? null,
    errorColumn: (r.error_column as string | null) ?? null,
    errorRow: num(r.error_row),
  };
}

/** Job counts from rows of (job_id, status, n, loaded, rejected) over current versions. */
export function toJobCounts(rows: Row[]): Map<string, JobCounts> {
  const out = new Map<string, JobCounts>();
  for (const r of rows) {
    const c = out.get(String(r.job_id)) ?? { files: {}, rowsLoaded: 0, rowsRejected: 0 };
    c.files[r.status as FileStatus] = Number(r.n);
    c.rowsLoaded += Number(r.loaded);
    c.rowsRejected += Number(r.rejected);
    out.set(String(r.job_id), c);
  }
  return out;
}

/** A page of files from the current versions, their earlier versions (key, etag, status, times) and first rejected rows (file_id, code, message, row_number, column_name). */
export function toFilePage(total: number, files: FileVersion[], older: Row[], errors: Row[]): FilePage {
  return {
    total,
    files: files.map((f) => ({
      ...f,
      previousVersions: older.filter((o) => o.key === f.key).map((o) => ({ etag: String(o.etag), status: o.status as FileStatus, discoveredAt: date(o.discovered_at)!, finishedAt: date(o.finished_at) })),
      firstErrors: errors
        .filter((e) => Number(e.file_id) === f.fileId)
        .map((e) => ({ code: String(e.code), message: String(e.message), row: num(e.row_number), column: (e.column_name as string | null) ?? null })),
    })),
  };
}

/** A model summary from a row of (model_id, environment, predictions, actuals, joined, p50, p90). */
export function toModelSummary(r: Row): ModelSummary {
  const predictions = Number(r.predictions);
  const actuals = Number(r.actuals);
  const joined = Number(r.joined);
  return {
    modelId: String(r.model_id), environment: String(r.environment), predictions, actuals, joined,
    matchRate: predictions ? joined / predictions : 0, actualsWaiting: actuals - joined,
    delayP50: r.p50 === null ? null : Number(r.p50), delayP90: r.p90 === null ? null : Number(r.p90),
  };
}

/** The index in ACTUAL_DELAY_BUCKETS of a delay in seconds `d` (a SQL expression valid in both stores). */
export const delayBucketSql = (d = 'd') => `CASE ${ACTUAL_DELAY_BUCKETS.map((b, i) => `WHEN ${d} <= ${b} THEN ${i}`).join(' ')} ELSE ${ACTUAL_DELAY_BUCKETS.length} END`;

/** Rows (f: file ID, n: matches, mean: mean delay) per file and delay bucket, as `matchedActuals` returns them. */
export function toMatchedActuals(rows: Row[]): Map<number, MatchedActuals> {
  const out = new Map<number, MatchedActuals>();
  for (const r of rows) {
    const m = out.get(Number(r.f)) ?? { count: 0, groups: [] };
    m.groups.push({ count: Number(r.n), meanSeconds: Number(r.mean) });
    m.count += Number(r.n);
    out.set(Number(r.f), m);
  }
  return out;
}
