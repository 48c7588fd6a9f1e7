import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createMetrics, type Metrics } from './metrics/metrics.ts';
import { startHttpServer } from './admin/server.ts';
import type { Config } from './config/index.ts';
import { LiveConfig, type ReloadReport } from './config/live.ts';
import { describeError, isPermanent } from './errors.ts';
import { openMemoryEngine } from './engine/index.ts';
import { Importer } from './import/index.ts';
import { createLogger, secretValues } from './log.ts';
import { isJobPaused, recordPoll } from './queue/control.ts';
import { connectRedis, ImportQueues } from './queue/queues.ts';
import { RedisHealth } from './queue/redis-health.ts';
import { PollLock } from './scheduler/poll-lock.ts';
import { Poller } from './scheduler/poller.ts';
import { createS3Clients } from './source/index.ts';
import { createStore, type Store } from './store/index.ts';
import { ownedTempDir, removeAbandoned } from './util/temp-folders.ts';
import { ImportWorkers } from './worker/workers.ts';

/** Which parts run in this process. `run` is all of them. */
export interface Roles {
  scheduler: boolean;
  worker: boolean;
  http: boolean;
}

/** A running daemon and its parts (tests and the demo look inside). */
export interface Daemon {
  /** The running config: replaced (jobs and defaults) by each reload that applies. */
  readonly config: Readonly<Config>;
  live: LiveConfig;
  store: Store;
  queues: ImportQueues;
  poller?: Poller;
  metrics: Metrics;
  http?: FastifyInstance;
  log: Logger;
  /** Re-reads the config file (SIGHUP, the API and the file watch call this). */
  reload(trigger: string): Promise<ReloadReport>;
  /** Stops in order: polling → imports (with the shutdown deadline) → queues → store → Redis → HTTP. */
  stop(): Promise<void>;
}

export interface DaemonOptions {
  roles?: Roles;
  log?: Logger;
  /** The file the config came from: watched, and re-read on reload. Without it the config is fixed. */
  configPath?: string;
  /** Watch the config file for changes. @defaultValue true when configPath is given */
  watchConfig?: boolean;
  /** The poller's clock for partition ages and full listings (tests move it). @defaultValue Date.now */
  clock?: () => number;
}

/** Starts the configured roles. With the embedded DuckDB store the scheduler and the workers share this one process. */
export async function startDaemon(config: Readonly<Config>, options: DaemonOptions = {}): Promise<Daemon> {
  const roles = options.roles ?? { scheduler: true, worker: true, http: true };
  const log = options.log ?? createLogger(config.log.level, undefined, secretValues(config));
  const metrics = createMetrics();
  const live = new LiveConfig(config, options.configPath, log, { apply: (change) => apply(change), onReport: (r) => metrics.configReloaded(r) });
  const tmpParent = config.worker.tmpDir ?? tmpdir();
  // Downloads of a process that was killed stay behind (nothing else would ever remove them).
  const abandoned = await removeAbandoned(tmpParent);
  if (abandoned.folders.length) log.info({ folders: abandoned.folders.length, bytes: abandoned.bytes, under: tmpParent }, 'removed temp folders left by processes that ended without cleaning up');
  const tmpDir = await ownedTempDir(tmpParent);
  const store = createStore(config, tmpDir);
  log.debug({ config }, 'effective config (secrets redacted)');

  const redis = connectRedis(config.redis.url, 'inference-importer');
  const redisHealth = new RedisHealth(redis, config.redis.url, log);
  const onQueueError = (err: Error) => {
    if (!redisHealth.noteError(err)) log.warn({ code: describeError(err).code }, `queue error: ${err.message}`);
  };
  const queues = new ImportQueues(config, redis, onQueueError);
  const s3 = createS3Clients(config, (operation, attempts) => {
    if (attempts > 1) metrics.s3Retries.inc({ operation }, attempts - 1);
  });
  // Every part reads the config through a getter, so a reload reaches it from its next use.
  metrics.attach({ get config() { return live.current; }, queues, store, redis, redisHealth });
  metrics.initJobs(config.jobs.map((j) => j.id));

  // HTTP comes up before the store opens, so health, readiness (naming the store) and metrics answer while it cannot.
  let http: FastifyInstance | undefined;
  let stopping = false;
  if (roles.http) {
    http = await startHttpServer(config, metrics, {
      live: () => !stopping,
      ready: () => readiness(redisHealth, redis, store),
    }, log, { get config() { return live.current; }, live, store, queues, redis, s3, redisHealth });
  }
  try {
    await openStore(store, log, () => stopping);
  } catch (err) {
    await http?.close();
    redis.disconnect();
    await rm(tmpDir, { recursive: true, force: true });
    throw err;
  }
  const readEngine = await openMemoryEngine({ readableDirectory: tmpDir, memoryLimit: '256MB', threads: 1, maxTempBytes: config.worker.maxTempBytes });
  log.info({ store: store.kind, jobs: config.jobs.map((j) => j.id) }, 'store open');

  let workers: ImportWorkers | undefined;
  if (roles.worker) {
    workers = new ImportWorkers({ get config() { return live.current; }, store, importer: new Importer(store), readEngine, s3, metrics, log, tmpDir }, redis, (err) => redisHealth.noteError(err));
    workers.start();
  }
  let poller: Poller | undefined;
  let lock: PollLock | undefined;
  if (roles.scheduler) {
    lock = new PollLock(redis, `${config.redis.prefix}:poll-lock`, Math.max(30_000, 3 * config.defaults.pollInterval));
    poller = new Poller({
      get config() { return live.current; }, store, s3, queues, metrics, log, lock, redisHealth,
      isPaused: (jobId) => isJobPaused(queues, jobId),
      onPolled: (jobId, status) => recordPoll(redis, live.current, jobId, { at: new Date().toISOString(), ...status }),
      clock: options.clock,
    });
    poller.start();
  }
  /** Puts a reload into effect: removed jobs stop polling and importing and their queued work is dropped; added jobs start. */
  async function apply(change: { added: Array<{ id: string }>; removed: Array<{ id: string }>; changed: Array<{ id: string }> }): Promise<void> {
    for (const job of [...change.removed, ...change.changed]) await poller?.forget(job.id);
    await workers?.sync();
    for (const job of change.removed) await queues.drop(job.id);
    metrics.initJobs(change.added.map((j) => j.id));
  }
  if (options.configPath && options.watchConfig !== false) live.watch();
  log.info({ roles }, 'inference-importer started');

  return {
    get config() { return live.current; },
    live, store, queues, poller, metrics, http, log,
    reload: (trigger) => live.reload(trigger),
    async stop() {
      if (stopping) return;
      stopping = true;
      // One deadline for the whole stop, whatever Redis or a running import does: every step is bounded by what is left.
      const deadline = Date.now() + config.worker.shutdownTimeout;
      const left = () => Math.max(0, deadline - Date.now());
      // What the steps after the imports need (queues, store checkpoint, Redis, HTTP), kept back from the imports' share.
      const reserve = Math.min(3000, config.worker.shutdownTimeout / 4);
      log.info({ timeoutMs: config.worker.shutdownTimeout, redisUp: redisHealth.up }, 'shutting down');
      live.close();
      await poller?.stop(Math.min(left() - reserve, 5000));
      const clean = workers ? await within(workers.close(Math.max(0, left() - reserve)), left() - reserve + 1000) : true;
      if (!clean) log.warn({ timeoutMs: config.worker.shutdownTimeout }, 'imports still running at the deadline were abandoned; they are retried after restart');
      const redisUp = redisHealth.up;
      redisHealth.stopWatching();
      if (redisUp) {
        await within(queues.close(), Math.min(left(), 1000));
        await within(lock?.release() ?? Promise.resolve(), Math.min(left(), 500));
      }
      if (!(await within(store.close(), Math.max(0, left() - 500)))) log.warn('the store did not close before the deadline; DuckDB replays its log on the next start');
      readEngine.close();
      if (redisUp) await within(redis.quit(), Math.min(left(), 500));
      redis.disconnect();
      await within(http?.close() ?? Promise.resolve(), Math.min(left(), 500));
      await rm(tmpDir, { recursive: true, force: true });
      log.info('stopped');
    },
  };
}

/**
 * Opens the store, waiting for it while it is unreachable (a database that starts after the
 * daemon, or is restarted): one log line per attempt, backing off to 30 s. Errors a wait cannot
 * mend (wrong credentials, a missing right, a locked DuckDB file) are thrown at once.
 */
async function openStore(store: Store, log: Logger, stopping: () => boolean): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await store.init();
      if (attempt > 1) log.info({ attempts: attempt }, 'store reachable again');
      return;
    } catch (err) {
      if (isPermanent(err) || stopping()) throw err;
      const delay = Math.min(30_000, 1000 * 2 ** (attempt - 1));
      log.error({ code: describeError(err).code, attempt, retryInMs: delay }, `${describeError(err).message}; the daemon waits for the store (health and metrics answer meanwhile)`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** Resolves true when `p` settles within `ms` (false when it does not, or rejects quietly): a bounded wait, the work itself goes on. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))));
  try {
    return await Promise.race([p.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Ready when Redis and the store answer; answers within a second whatever either does. */
async function readiness(redisHealth: RedisHealth, redis: Redis, store: Store): Promise<{ ok: boolean; checks: Record<string, string> }> {
  const checks: Record<string, string> = {};
  const probe = async (name: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
      checks[name] = 'ok';
    } catch (err) {
      checks[name] = describeError(err).message;
    }
  };
  const storeProbe = () => Promise.race([store.ping(), new Promise((_, reject) => setTimeout(() => reject(new Error(`the ${store.kind} store did not answer within 800 ms (unreachable or stalled)`)), 800).unref())]);
  await Promise.all([probe('redis', () => redisHealth.call('readiness', () => redis.ping())), probe('store', storeProbe)]);
  return { ok: Object.values(checks).every((c) => c === 'ok'), checks };
}
