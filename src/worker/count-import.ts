import type { JobConfig } from '../config/index.ts';
import type { ImportResult } from '../import/index.ts';
import type { Metrics } from '../metrics/metrics.ts';

/** The metrics of an import that ended: rows loaded and rejected, actuals joined, lag from `sourceTime` (the object's LastModified, a window's end). */
export function countImport(metrics: Metrics, job: JobConfig, result: ImportResult, sourceTime: Date): void {
  if (result.status === 'succeeded' || result.status === 'partially_succeeded') {
    metrics.storeChanged();
    metrics.importLag.observe({ job: job.id }, Math.max(0, (Date.now() - sourceTime.getTime()) / 1000));
    metrics.rowsLoaded.inc({ job: job.id, kind: 'prediction' }, result.predictionsLoaded);
    metrics.rowsLoaded.inc({ job: job.id, kind: 'actual' }, result.actualsLoaded);
  }
  for (const [reason, n] of Object.entries(result.rejectedByCode)) metrics.rowsRejected.inc({ job: job.id, reason }, n);
  if (result.matched?.count) {
    metrics.actualsMatched.inc({ job: job.id }, result.matched.count);
    // Observing each bucket's mean delay once per row keeps both the bucket counts and the sum exact.
    for (const g of result.matched.groups) for (let i = 0; i < g.count; i++) metrics.actualDelay.observe({ job: job.id }, g.meanSeconds);
  }
}
