import type { Redis } from 'ioredis';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from '../config/index.ts';
import type { ReloadReport } from '../config/live.ts';
import { ErrorCodes } from '../errors.ts';
import { jobQueueStates } from '../queue/control.ts';
import type { ImportQueues } from '../queue/queues.ts';
import type { RedisHealth } from '../queue/redis-health.ts';
import { ACTUAL_DELAY_BUCKETS, type ModelSummary, type Store } from '../store/store.ts';

/** What the scrape-time gauges read. */
export interface MetricSources {
  config: Readonly<Config>;
  queues: ImportQueues;
  store: Store;
  redis: Redis;
  /** Whether Redis is up: while it is not, the Redis-backed gauges are left out instead of waiting for it. */
  redisHealth: RedisHealth;
}

/** Without imports in between, scrapes reuse the model summaries this long (they scan predictions and actuals). */
const SUMMARY_TTL_MS = 60_000;

/**
 * Every metric the importer exports, with its labels, in one place so cardinality is visible:
 * labels are job IDs and small fixed sets, never file keys.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'importer_' });
  const registers = [registry];
  let sources: MetricSources | undefined;
  let summaries: { at: number; value: Promise<ModelSummary[]> } | undefined;
  const modelSummaries = () => {
    if (!summaries || Date.now() - summaries.at > SUMMARY_TTL_MS) summaries = { at: Date.now(), value: sources!.store.modelSummaries() };
    return summaries.value;
  };
  const probe = async (fn: () => Promise<unknown>, timeoutMs: number) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([fn(), new Promise((_, reject) => (timer = setTimeout(reject, timeoutMs)))]);
      return 1;
    } catch {
      return 0;
    } finally {
      clearTimeout(timer);
    }
  };
  const configReloads = new Counter({ name: 'importer_config_reloads_total', help: 'Config reloads by outcome (applied, unchanged, failed)', labelNames: ['outcome'], registers });
  const configReloadFailed = new Gauge({ name: 'importer_config_reload_failed', help: '1 while the last config reload failed (the running config is the one before it)', registers });
  configReloadFailed.set(0);
  for (const outcome of ['applied', 'unchanged', 'failed']) configReloads.inc({ outcome }, 0);
  const s3Retries = new Counter({
    name: 'importer_s3_retries_total', help: 'S3 requests sent again by the SDK (s3.maxAttempts) after a throttle, a 5xx or a broken connection, one per extra attempt, by operation',
    labelNames: ['operation'], registers,
  });
  for (const operation of ['ListObjectsV2', 'GetObject', 'HeadObject']) s3Retries.inc({ operation }, 0);
  /** Per query-source job, the end of its last committed window (this process's knowledge: the scheduler's from the ledger, a worker's from its commits). */
  const cursors = new Map<string, number>();
  const rowCodes = Object.keys(ErrorCodes).filter((c) => c.startsWith('IMP_ERR_ROW_'));
  // A scrape answers within a second whatever Redis does: Redis-backed gauges are bounded and skipped while it is away.
  const queueStates = () => sources!.redisHealth.call('the queue gauges', () => jobQueueStates(sources!.config, sources!.queues), 400).catch(() => undefined);
  return {
    registry,
    /** A config reload ended. */
    configReloaded(report: ReloadReport) {
      configReloads.inc({ outcome: report.outcome });
      configReloadFailed.set(report.outcome === 'failed' ? 1 : 0);
    },
    /** Creates the per-job error series at zero, so rate() and alerts work before the first error. */
    initJobs(jobIds: string[]) {
      for (const job of jobIds) {
        this.pollErrors.inc({ job }, 0);
        for (const reason of rowCodes) this.rowsRejected.inc({ job, reason }, 0);
      }
    },
    /** A query source's window up to `end` is committed (or the ledger says so): its lag counts from there. */
    sqlWindowCommitted(job: string, end: Date) {
      if (end.getTime() > (cursors.get(job) ?? 0)) cursors.set(job, end.getTime());
    },
    /** Connects the scrape-time gauges to the running parts. */
    attach(s: MetricSources) {
      sources = s;
    },
    /** An import committed rows: the next scrape recomputes the model summaries. */
    storeChanged() {
      summaries = undefined;
    },
    queueDepth: new Gauge({
      name: 'importer_queue_jobs', help: 'Files in each job queue by state', labelNames: ['job', 'state'], registers,
      async collect() {
        if (!sources) return;
        this.reset();
        for (const q of (await queueStates()) ?? []) {
          for (const state of ['waiting', 'active', 'delayed', 'failed'] as const) this.set({ job: q.id, state }, q[state]);
        }
      },
    }),
    paused: new Gauge({
      name: 'importer_job_paused', help: '1 when the job is paused (no polling, no imports)', labelNames: ['job'], registers,
      async collect() {
        if (!sources) return;
        const states = await queueStates();
        if (!states) this.reset();
        for (const q of states ?? []) this.set({ job: q.id }, q.state === 'paused' ? 1 : 0);
      },
    }),
    actualsWaiting: new Gauge({
      name: 'importer_actuals_waiting', help: 'Actuals whose prediction has not arrived', labelNames: ['model', 'environment'], registers,
      async collect() {
        if (!sources) return;
        this.reset();
        for (const m of await modelSummaries().catch(() => [])) this.set({ model: m.modelId, environment: m.environment }, m.actualsWaiting);
      },
    }),
    redisUp: new Gauge({
      name: 'importer_redis_up', help: '1 when Redis answers PING', registers,
      async collect() {
        if (sources) this.set(sources.redisHealth.up ? await probe(() => sources!.redis.ping(), 400) : 0);
      },
    }),
    storeUp: new Gauge({
      name: 'importer_store_up', help: '1 when the store answers a query', registers,
      async collect() {
        if (sources) this.set(await probe(() => sources!.store.ping(), 800));
      },
    }),
    sqlCursorLag: new Gauge({
      name: 'importer_sql_cursor_lag_seconds', help: 'Query sources: now minus the end of the last committed window (how far behind the rows in the store are)', labelNames: ['job'], registers,
      collect() {
        this.reset();
        for (const [job, end] of cursors) this.set({ job }, Math.max(0, (Date.now() - end) / 1000));
      },
    }),
    actualsMatched: new Counter({ name: 'importer_actuals_matched_total', help: 'Actuals joined to their prediction (by the import of either)', labelNames: ['job'], registers }),
    actualDelay: new Histogram({
      name: 'importer_actual_delay_seconds', help: 'Time from a prediction to its actual, for actuals as they are joined',
      labelNames: ['job'], buckets: ACTUAL_DELAY_BUCKETS, registers,
    }),
    pollDuration: new Histogram({
      name: 'importer_poll_duration_seconds', help: 'Time to list a job prefix and diff it against the ledger',
      labelNames: ['job'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers,
    }),
    objectsListed: new Gauge({ name: 'importer_objects_listed', help: 'Objects under the prefix at the last poll', labelNames: ['job'], registers }),
    listRequests: new Counter({ name: 'importer_list_requests_total', help: 'ListObjectsV2 requests sent by polls', labelNames: ['job'], registers }),
    jobEmpty: new Gauge({ name: 'importer_job_empty', help: '1 when the job\'s source held no importable object for defaults.emptyPolls polls in a row (a mistyped prefix?)', labelNames: ['job'], registers }),
    pollErrors: new Counter({ name: 'importer_poll_errors_total', help: 'Polls that failed (listing or ledger)', labelNames: ['job'], registers }),
    pollInterval: new Gauge({ name: 'importer_poll_interval_seconds', help: 'How long after its last poll the job polls again: pollInterval while idle, shorter right after a poll found new or changed objects (activePollInterval)', labelNames: ['job'], registers }),
    lastPoll: new Gauge({ name: 'importer_last_successful_poll_timestamp_seconds', help: 'When the prefix was last listed successfully', labelNames: ['job'], registers }),
    filesDiscovered: new Counter({
      name: 'importer_files_discovered_total', help: 'File versions found by polling', labelNames: ['job', 'kind'], registers,
    }),
    filesImported: new Counter({
      name: 'importer_files_imported_total', help: 'Import attempts that ended, by outcome', labelNames: ['job', 'outcome'], registers,
    }),
    s3Retries,
    bytesRead: new Counter({ name: 'importer_bytes_read_total', help: 'Bytes downloaded from S3', labelNames: ['job'], registers }),
    rowsLoaded: new Counter({ name: 'importer_rows_loaded_total', help: 'Rows loaded into the store', labelNames: ['job', 'kind'], registers }),
    rowsRejected: new Counter({ name: 'importer_rows_rejected_total', help: 'Rows rejected by validation', labelNames: ['job', 'reason'], registers }),
    importDuration: new Histogram({
      name: 'importer_import_duration_seconds', help: 'Time to download, read and load one file',
      labelNames: ['job'], buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600], registers,
    }),
    importLag: new Histogram({
      name: 'importer_import_lag_seconds', help: 'From the object LastModified to the rows committed',
      labelNames: ['job'], buckets: [1, 2.5, 5, 10, 15, 30, 60, 120, 300, 900, 3600], registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
