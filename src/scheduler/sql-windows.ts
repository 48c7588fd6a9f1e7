import type { Logger } from 'pino';
import type { Metrics } from '../metrics/metrics.ts';
import type { ImportQueues } from '../queue/queues.ts';
import { connectWarehouse, parseWindowKey, QUERY_KEY, refreshEntry, subquery, nextWindows, warehouseError, windowEntry, type SqlJob } from '../source/sql/index.ts';
import { sqlIdent } from '../formats/index.ts';
import type { FileVersion, ListedObject, Store } from '../store/store.ts';

/** Windows planned by one refresh at most: a long backfill is queued over several refreshes. */
const MAX_WINDOWS_PER_REFRESH = 500;
const COMMITTED: ReadonlySet<string> = new Set(['succeeded', 'partially_succeeded']);

export interface SqlPlanDeps {
  store: Store;
  queues: ImportQueues;
  metrics: Metrics;
  log: Logger;
  /** Region for Redshift IAM when neither the job nor the host names one. */
  region: string;
}

/** What one refresh of a query source did. */
export interface SqlPlan {
  /** Windows (or refreshes) the ledger holds for the job. */
  windows: number;
  planned: number;
  requeued: number;
}

/**
 * One refresh of a query source, the counterpart of listing a prefix. The ledger is the cursor:
 * the next windows follow the last one recorded, from there to now in steps of `windowSize`, and
 * are recorded (pending) and queued like discovered files; windows recorded but not committed are
 * queued again, and windows that failed because the database was away are made pending again
 * once it answers, so no range is ever skipped. The first window starts at `cursor.start`, else at
 * the smallest cursor value the query returns. Without a cursor each refresh is a new version of
 * the one `query` key. Opening a session first makes an unreachable database this refresh's error
 * (the job's status says so) instead of planning windows that cannot run.
 */
export async function refreshSqlJob(deps: SqlPlanDeps, job: SqlJob, now = new Date()): Promise<SqlPlan> {
  const { store, queues, metrics } = deps;
  const source = job.source.sql;
  const wh = await connectWarehouse(job, deps.region);
  try {
    const latest = [...(await store.latestVersions(job.id)).values()];
    const windows = latest.filter((v) => v.key === QUERY_KEY || parseWindowKey(v.key));
    const requeue: FileVersion[] = windows.filter((v) => v.status === 'pending');
    for (const v of windows.filter((w) => w.status === 'failed' && w.errorCode === 'IMP_ERR_SOURCE_UNREACHABLE')) {
      const reset = await store.resetVersions(job.id, { key: v.key });
      for (const r of reset) await queues.forgetFinished(r);
      requeue.push(...reset);
    }
    let fresh: ListedObject[] = [];
    if (!source.cursor) {
      fresh = [refreshEntry(now)];
    } else {
      const ends = windows.map((v) => parseWindowKey(v.key)?.to.getTime() ?? 0);
      const committed = windows.filter((v) => COMMITTED.has(v.status)).map((v) => parseWindowKey(v.key)!.to);
      if (committed.length) metrics.sqlWindowCommitted(job.id, new Date(Math.max(...committed.map((d) => d.getTime()))));
      let end = ends.length ? new Date(Math.max(...ends)) : undefined;
      if (!end) {
        const start = source.cursor.start ? new Date(source.cursor.start) : await smallestCursor(job, wh.client);
        // The first window's lower bound is exclusive like every other's: one millisecond before the first row.
        end = start && new Date(start.getTime() - 1);
      }
      if (end) fresh = nextWindows(end, now, source.windowSize, MAX_WINDOWS_PER_REFRESH).map(windowEntry);
    }
    // One window at a time: ledger IDs then follow the cursor, and the newest window's copy of a row read twice is the current one.
    const recorded: FileVersion[] = [];
    for (const entry of fresh) recorded.push(...(await store.recordDiscovered(job.id, [entry])));
    if (recorded.length) metrics.filesDiscovered.inc({ job: job.id, kind: 'new' }, recorded.length);
    await queues.enqueue([...recorded, ...requeue]);
    if (recorded.length || requeue.length) deps.log.info({ job: job.id, planned: recorded.length, requeued: requeue.length, first: recorded[0]?.key }, 'refresh queued windows');
    return { windows: windows.length + recorded.length, planned: recorded.length, requeued: requeue.length };
  } finally {
    await wh.close();
  }
}

/** The smallest cursor value of the query (undefined while it returns no row). */
async function smallestCursor(job: SqlJob, client: import('pg').Client): Promise<Date | undefined> {
  const column = sqlIdent(job.source.sql.cursor!.column);
  try {
    const { rows } = await client.query({ text: `SELECT to_char(min(q.${column})::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS start FROM ${subquery(job)}`, rowMode: 'array' });
    return rows[0]?.[0] ? new Date(rows[0][0] as string) : undefined;
  } catch (err) {
    throw warehouseError(job, 'finding the first cursor value', err);
  }
}
