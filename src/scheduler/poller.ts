import cron, { type ScheduledTask } from 'node-cron';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { Config, JobConfig } from '../config/index.ts';
import { describeError } from '../errors.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { ImportQueues } from '../queue/queues.ts';
import type { RedisHealth } from '../queue/redis-health.ts';
import { describeTarget, eligibleObjects, listSource, oldPartitionRanges, type SkippedRange } from '../source/index.ts';
import type { FileVersion, ListedObject, Store } from '../store/store.ts';
import { isSqlJob, s3Location, sourceLabel, type SqlJob } from '../source/sql/index.ts';
import type { PollLock } from './poll-lock.ts';
import { PollSchedule } from './poll-schedule.ts';
import { refreshSqlJob } from './sql-windows.ts';

/** Ledger states that change only when the object changes (or an operator retries through the API, which queues it itself). */
const SETTLED: ReadonlySet<string> = new Set(['succeeded', 'partially_succeeded', 'failed']);
const SETTLED_REBUILD_MS = 5 * 60_000;
/** The scheduling tick: every second, a job whose interval has passed is polled. */
const TICK_MS = 1000;
const signature = (o: ListedObject) => `${o.etag}|${o.size}`;

/** What one poll of a job found. */
export interface PollResult {
  /** Whether the poll listed the whole prefix, or left out old date partitions (`partitionHorizon`). */
  full: boolean;
  listed: number;
  eligible: number;
  discoveredNew: number;
  discoveredChanged: number;
  requeued: number;
}

export interface PollerDeps {
  config: Readonly<Config>;
  store: Store;
  s3: S3Client;
  queues: ImportQueues;
  metrics: Metrics;
  log: Logger;
  lock: PollLock;
  /** When given, ticks are skipped silently while Redis is away (it logs the outage once). */
  redisHealth?: RedisHealth;
  /** Jobs for which polling is paused right now. */
  isPaused?: (jobId: string) => Promise<boolean>;
  /** Told how every poll ended (for status displays); failures to record are ignored. */
  onPolled?: (jobId: string, status: { outcome: 'ok' | 'empty' | 'error'; listed?: number; queued?: number; error?: string }) => Promise<void>;
  /** The clock of partition ages and full listings (tests move it). @defaultValue Date.now */
  clock?: () => number;
}

/** A job's last full listing: its keys (split points of the next one), when it ran, and the old partitions later polls leave out. */
interface FullListing {
  at: number;
  keys: string[];
  skip: SkippedRange[];
  /** Objects the full listing found in the skipped ranges. */
  skippedObjects: number;
}

/**
 * Lists each job's prefix on its interval (one node-cron tick a second decides who is due), diffs
 * the listing against the ledger by key and ETag, records new and changed versions and queues them.
 * Versions recorded but never committed are queued again on every poll: that heals a lost Redis
 * or a crash between the ledger write and the enqueue.
 */
export class Poller {
  private task?: ScheduledTask;
  private readonly lastStart = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<unknown>>();
  /** Per job, its last full listing: split points for the next one, and the old partitions polls leave out until then. */
  private readonly fullListings = new Map<string, FullListing>();
  /**
   * Per job, the listed objects whose ledger version is settled (committed or failed for good), by
   * key → ETag and size, and when it was last rebuilt from the ledger. A poll asks the ledger only
   * about objects not in it (new, changed, or still pending), so an unchanged prefix of 100 000
   * objects costs no ledger read; like NiFi's listing state. Rebuilt every few minutes, so a
   * version reset in the ledger whose queue entry was lost is still re-queued (objects in skipped
   * old partitions at the next full listing that is due for it; listed ones every few minutes).
   */
  private readonly settled = new Map<string, { at: number; listedAt: number; objects: Map<string, string> }>();
  private stopped = false;
  /** When each job is due: sooner while files arrive (activePollInterval), every pollInterval while idle. */
  private readonly schedule = new PollSchedule();
  /** Per job, polls in a row that found no importable object. */
  private readonly emptyPolls = new Map<string, number>();

  constructor(private readonly deps: PollerDeps) {}

  start(): void {
    const { log } = this.deps;
    // node-cron's own warnings are coloured console lines; a slow tick (overlap, missed second) is expected, so debug.
    const logger = {
      info: (m: string) => log.debug({ component: 'node-cron' }, m),
      warn: (m: string) => log.debug({ component: 'node-cron' }, m),
      debug: (m: string | Error) => log.debug({ component: 'node-cron' }, String(m)),
      error: (m: string | Error, err?: Error) => log.error({ component: 'node-cron', err: String(err ?? m) }, typeof m === 'string' ? m : 'poll tick failed'),
    };
    this.task = cron.schedule('* * * * * *', () => this.tick(), { noOverlap: true, name: 'poll-tick', logger });
    void this.tick();
  }

  /** One tick: if this process holds the poll lock, start the polls that are due and not already running. */
  async tick(): Promise<void> {
    if (this.stopped) return;
    const { config, lock, log, redisHealth } = this.deps;
    if (redisHealth && !redisHealth.up) return;
    let leader: boolean;
    try {
      leader = await (redisHealth ? redisHealth.call('the poll lock', () => lock.acquireOrRenew(), 5000) : lock.acquireOrRenew());
    } catch (err) {
      const e = describeError(err);
      if (e.code !== 'IMP_ERR_REDIS_UNAVAILABLE') log.warn({ code: e.code }, `cannot take the poll lock: ${e.message}; polling waits`);
      return;
    }
    if (!leader) return;
    const now = Date.now();
    for (const job of config.jobs) {
      const interval = this.schedule.interval(job);
      // Half a tick of slack: a tick landing a few ms before the interval is up would otherwise push the poll a whole tick late.
      if (this.inFlight.has(job.id) || now - (this.lastStart.get(job.id) ?? 0) < interval - TICK_MS / 2) continue;
      this.lastStart.set(job.id, now);
      const run = this.pollJob(job)
        .catch(() => undefined)
        .finally(() => this.inFlight.delete(job.id));
      this.inFlight.set(job.id, run);
    }
  }

  /** Polls one job now. Errors are logged and counted, never thrown past the loop. */
  async pollJob(job: JobConfig): Promise<PollResult | undefined> {
    const { store, s3, queues, metrics, log, isPaused, onPolled } = this.deps;
    if (isPaused && (await isPaused(job.id))) {
      this.scheduleNext(job, false);
      return undefined;
    }
    const started = process.hrtime.bigint();
    const now = (this.deps.clock ?? Date.now)();
    try {
      if (isSqlJob(job)) return await this.refreshSql(job, started);
      const last = this.fullListings.get(job.id);
      const full = !last || last.skip.length === 0 || now - last.at >= job.fullListInterval || !this.settled.has(job.id);
      const { target, objects: listed } = await listSource(s3, s3Location(job), {
        previousKeys: last?.keys,
        skip: full ? undefined : last.skip,
        concurrency: this.deps.config.s3.listConcurrency,
        onRequest: () => metrics.listRequests.inc({ job: job.id }),
      });
      const prefix = target.prefix;
      const eligible = eligibleObjects(job, prefix, listed);
      let listing = last;
      if (full) {
        const keys = listed.map((o) => o.key);
        const skip = job.partitionHorizon > 0 && target.kind === 'folder' ? oldPartitionRanges(keys, prefix, job.partitionKey, now - job.partitionHorizon) : [];
        listing = { at: now, keys, skip, skippedObjects: skip.reduce((n, r) => n + r.keys, 0) };
        this.fullListings.set(job.id, listing);
      }
      const cached = this.settled.get(job.id);
      // A full listing rebuilds the whole memory from the ledger every few minutes; a partial one re-checks what it listed.
      const rebuild = !cached || Date.now() - (full ? cached.at : cached.listedAt) > SETTLED_REBUILD_MS;
      // Objects unchanged since they settled need no ledger read; the rest are looked up.
      const settled = full ? new Map<string, string>() : cached!.objects;
      const unsettled: ListedObject[] = [];
      for (const o of eligible) {
        if (!rebuild && cached.objects.get(o.key) === signature(o)) settled.set(o.key, signature(o));
        else unsettled.push(o);
      }
      const latest = await store.latestVersions(job.id, rebuild && full ? undefined : unsettled.map((o) => o.key));
      for (const o of unsettled) {
        const known = latest.get(o.key);
        if (known && known.etag === o.etag && known.size === o.size && SETTLED.has(known.status)) settled.set(o.key, signature(o));
        // A partial listing keeps the memory of the skipped ranges: drop what changed.
        else settled.delete(o.key);
      }
      const rebuiltAt = rebuild ? Date.now() : undefined;
      this.settled.set(job.id, { at: (full && rebuiltAt) || cached?.at || Date.now(), listedAt: rebuiltAt ?? cached!.listedAt, objects: settled });
      const fresh: ListedObject[] = [];
      let changed = 0;
      const requeue: FileVersion[] = [];
      const revived: FileVersion[] = [];
      for (const o of unsettled) {
        const known = latest.get(o.key);
        if (!known) fresh.push(o);
        else if (known.etag !== o.etag || known.size !== o.size) {
          fresh.push(o);
          changed++;
        } else if (known.status === 'pending') requeue.push(known);
        // Listed again after a 404 or a 412 on download (content went back, a spurious precondition failure): import it.
        else if (known.status === 'vanished' || known.status === 'superseded') revived.push(known);
      }
      for (const v of revived) fresh.push(v);
      const recorded = await store.recordDiscovered(job.id, fresh);
      // Counted before the enqueue: a worker may import a file before enqueue() returns, and the discovery must not lag its import.
      if (fresh.length - changed) metrics.filesDiscovered.inc({ job: job.id, kind: 'new' }, fresh.length - changed);
      if (changed) metrics.filesDiscovered.inc({ job: job.id, kind: 'changed' }, changed);
      // A version recorded before (content went back to an older ETag) may still have a finished BullMQ job under its ID.
      for (const v of recorded) if (latest.has(v.key)) await queues.forgetFinished(v);
      await queues.enqueue([...recorded, ...requeue]);
      // Versions waiting in the queue (requeue) are no news: only what this poll found makes the next one sooner.
      this.scheduleNext(job, fresh.length > 0);

      const result: PollResult = { full, listed: listed.length, eligible: eligible.length, discoveredNew: fresh.length - changed, discoveredChanged: changed, requeued: requeue.length };
      metrics.pollDuration.observe({ job: job.id }, Number(process.hrtime.bigint() - started) / 1e9);
      metrics.objectsListed.set({ job: job.id }, listed.length + (full ? 0 : listing!.skippedObjects));
      metrics.lastPoll.set({ job: job.id }, Date.now() / 1000);
      if (result.discoveredNew || changed || requeue.length) log.info({ job: job.id, ...result }, 'poll queued files');
      else log.debug({ job: job.id, ...result }, 'poll found nothing new');
      // Objects in skipped old partitions count as there: a job whose new data pauses is not empty.
      const present = full ? 0 : listing!.skippedObjects;
      const empty = this.countEmpty(job, eligible.length + present, listed.length + present, describeTarget(target));
      await onPolled?.(job.id, { outcome: empty ? 'empty' : 'ok', listed: listed.length, queued: recorded.length + requeue.length }).catch(() => undefined);
      return result;
    } catch (err) {
      this.scheduleNext(job, false, true);
      metrics.pollErrors.inc({ job: job.id });
      const e = describeError(err);
      log.error({ job: job.id, source: sourceLabel(job), code: e.code }, `poll failed: ${e.message}`);
      await onPolled?.(job.id, { outcome: 'error', error: `${e.code}: ${e.message}` }).catch(() => undefined);
      throw err;
    }
  }

  /** A query source's poll: its refresh plans and queues windows (see refreshSqlJob). */
  private async refreshSql(job: SqlJob, started: bigint): Promise<PollResult> {
    const { store, queues, metrics, log, onPolled, config } = this.deps;
    const plan = await refreshSqlJob({ store, queues, metrics, log, region: config.s3.region }, job);
    this.scheduleNext(job, plan.planned > 0);
    metrics.pollDuration.observe({ job: job.id }, Number(process.hrtime.bigint() - started) / 1e9);
    metrics.lastPoll.set({ job: job.id }, Date.now() / 1000);
    const empty = this.countEmpty(job, plan.windows, plan.windows, sourceLabel(job));
    await onPolled?.(job.id, { outcome: empty ? 'empty' : 'ok', listed: plan.windows, queued: plan.planned + plan.requeued }).catch(() => undefined);
    return { listed: plan.windows, eligible: plan.windows, discoveredNew: plan.planned, discoveredChanged: 0, requeued: plan.requeued, full: true };
  }

  /** Schedules the job's next poll after this one (`failed`: back to pollInterval) and shows the wait. */
  private scheduleNext(job: JobConfig, found: boolean, failed = false): void {
    if (failed) this.schedule.reset(job.id);
    else this.schedule.polled(job, found);
    this.deps.metrics.pollInterval.set({ job: job.id }, this.schedule.interval(job) / 1000);
  }

  /**
   * Forgets what earlier polls of a job learned (its listing split points, its settled objects) and
   * waits for its poll under way: the job was removed or edited (its source may have changed).
   */
  async forget(jobId: string): Promise<void> {
    await this.inFlight.get(jobId);
    this.fullListings.delete(jobId);
    this.settled.delete(jobId);
    this.schedule.reset(jobId);
  }

  /** Counts polls in a row without an importable object; at `defaults.emptyPolls` the job is flagged, with one log line. True while flagged. */
  private countEmpty(job: JobConfig, eligible: number, listed: number, target: string): boolean {
    const { config, metrics, log } = this.deps;
    if (eligible > 0) {
      if ((this.emptyPolls.get(job.id) ?? 0) >= config.defaults.emptyPolls) log.info({ job: job.id }, `job ${job.id} has importable objects again under ${target}`);
      this.emptyPolls.set(job.id, 0);
      metrics.jobEmpty.set({ job: job.id }, 0);
      return false;
    }
    const n = (this.emptyPolls.get(job.id) ?? 0) + 1;
    this.emptyPolls.set(job.id, n);
    if (n < config.defaults.emptyPolls) return false;
    metrics.jobEmpty.set({ job: job.id }, 1);
    if (n === config.defaults.emptyPolls) {
      log.warn({ job: job.id, source: sourceLabel(job), polls: n, listed }, `job ${job.id}: no importable object under ${target} for ${n} polls (${listed} object${listed === 1 ? '' : 's'} listed); check jobs[].source and jobs[].format`);
    }
    return true;
  }

  /** Stops ticking and waits up to `timeoutMs` for polls under way (one waiting on a Redis that is away may never end). */
  async stop(timeoutMs = Infinity): Promise<void> {
    this.stopped = true;
    await this.task?.stop();
    await this.task?.destroy();
    let timer: NodeJS.Timeout | undefined;
    const deadline = Number.isFinite(timeoutMs) ? new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))) : new Promise<void>(() => undefined);
    await Promise.race([Promise.all(this.inFlight.values()), deadline]);
    clearTimeout(timer);
  }
}
