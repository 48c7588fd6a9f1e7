import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { describeError, describeFileError, ImporterError, isPermanent } from '../errors.ts';
import { queueName, type ImportJobData } from '../queue/queues.ts';
import { DownloadTracker } from './download-tracker.ts';
import { importFileVersion, type ImportDeps } from './import-file.ts';

/** How long a downloaded file waits for its job's other downloads, to be imported with them. */
const SIBLING_DOWNLOAD_WAIT_MS = 2000;

/** Counts the imports running in this process, across every job's worker, and caps them. */
class Slots {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly max: number) {}
  async acquire(): Promise<void> {
    if (this.running < this.max) {
      this.running++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }
}

/**
 * One BullMQ worker per job queue, all in this process, sharing a cap of `worker.concurrency`
 * imports. Every attempt's outcome is written to the ledger: a failed attempt with attempts left
 * stays pending (BullMQ retries it with backoff), the last one makes the version failed.
 */
export class ImportWorkers {
  private readonly workers = new Map<string, Worker<ImportJobData>>();
  private readonly slots: Slots;

  private readonly deps: ImportDeps;

  /** @param onQueueError - takes a worker's error first; true when it handled it (a lost Redis connection, logged once elsewhere). */
  constructor(
    deps: ImportDeps,
    private readonly connection: Redis,
    private readonly onQueueError: (err: Error) => boolean = () => false,
  ) {
    this.slots = new Slots(deps.config.worker.concurrency);
    // Not a spread: `deps.config` may be a getter of the live config, read at each use.
    this.deps = Object.create(deps, { downloads: { value: new DownloadTracker(SIBLING_DOWNLOAD_WAIT_MS), enumerable: true } }) as ImportDeps;
  }

  start(): void {
    void this.sync();
  }

  /** Starts a worker for each configured job that has none; closes (waiting for its imports) those of jobs no longer configured. */
  async sync(): Promise<void> {
    const { config, log } = this.deps;
    const ids = new Set(config.jobs.map((j) => j.id));
    await Promise.all([...this.workers].filter(([id]) => !ids.has(id)).map(async ([id, w]) => {
      this.workers.delete(id);
      await w.close();
    }));
    for (const job of config.jobs) {
      if (this.workers.has(job.id)) continue;
      const worker = new Worker<ImportJobData>(queueName(job.id), (bullJob) => this.process(bullJob), {
        connection: this.connection,
        prefix: config.redis.prefix,
        concurrency: config.worker.concurrency,
        lockDuration: config.worker.lockDuration,
        stalledInterval: Math.max(1000, Math.floor(config.worker.lockDuration / 2)),
        // A kill mid-import is a stall; allow several before BullMQ gives up on the version.
        maxStalledCount: 5,
        autorun: true,
      });
      worker.on('failed', (bullJob, err) => void this.onFailed(bullJob, err));
      worker.on('error', (err) => {
        if (!this.onQueueError(err)) log.warn({ job: job.id, code: describeError(err).code }, `queue worker error: ${err.message}`);
      });
      this.workers.set(job.id, worker);
    }
  }

  private async process(bullJob: Job<ImportJobData>) {
    const { config, store, metrics, log } = this.deps;
    const { jobId, fileId, key } = bullJob.data;
    const job = config.jobs.find((j) => j.id === jobId);
    if (!job) return { status: 'skipped' };
    await this.slots.acquire();
    const timer = metrics.importDuration.startTimer({ job: jobId });
    try {
      const result = await importFileVersion(this.deps, job, fileId);
      timer();
      metrics.filesImported.inc({ job: jobId, outcome: result.status });
      if (result.status !== 'skipped') log.info({ job: jobId, key, fileId, ...result }, `import ${result.status}`);
      return result;
    } catch (err) {
      const attempts = bullJob.attemptsMade + 1;
      // A file that will never import as it is (corrupt, a mapped column missing) fails at once: retries only delay the verdict.
      const permanent = isPermanent(err);
      const final = permanent || attempts >= (bullJob.opts.attempts ?? 1);
      const e = describeFileError(err, key);
      metrics.filesImported.inc({ job: jobId, outcome: final ? 'failed' : 'retried' });
      await store.recordFailure(fileId, attempts, e, final).catch((storeErr) => log.error({ err: describeError(storeErr) }, 'cannot record failure'));
      log[final ? 'error' : 'warn']({ job: jobId, key, fileId, code: e.code, attempts, final, permanent, ...e.location }, e.message);
      if (permanent) throw new UnrecoverableError(`${e.code}: ${e.message}`);
      throw err instanceof Error ? err : new ImporterError('IMP_ERR_INTERNAL', String(err));
    } finally {
      this.slots.release();
    }
  }

  /**
   * Keeps the ledger in step when BullMQ gives up on a version: after a stall limit (the process
   * died during the import several times) or when the final attempt's own ledger write failed.
   * A version left pending while its BullMQ job sits in the failed set would never be queued again.
   */
  private async onFailed(bullJob: Job<ImportJobData> | undefined, err: Error): Promise<void> {
    if (!bullJob) return;
    const stalled = /stalled/i.test(err.message);
    if (!stalled && bullJob.attemptsMade < (bullJob.opts.attempts ?? 1)) return;
    const version = await this.deps.store.getVersion(bullJob.data.fileId).catch(() => undefined);
    if (version?.status !== 'pending') return;
    const e = stalled
      ? { code: 'IMP_ERR_IMPORT_INTERRUPTED' as const, message: `${bullJob.data.key}: ${err.message}`, location: { file: bullJob.data.key } }
      : describeError(err);
    await this.deps.store.recordFailure(bullJob.data.fileId, bullJob.attemptsMade, e, true).catch((storeErr) =>
      this.deps.log.error({ err: describeError(storeErr), fileId: bullJob.data.fileId }, 'cannot record the final failure; the version stays pending'),
    );
  }

  /** Stops taking work and waits up to `timeoutMs` for running imports; returns false when it had to abandon some. */
  async close(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const workers = [...this.workers.values()];
    const graceful = Promise.all(workers.map((w) => w.close())).then(() => true);
    const deadline = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const done = await Promise.race([graceful, deadline]);
    clearTimeout(timer);
    if (!done) await Promise.all(workers.map((w) => w.close(true).catch(() => undefined)));
    return done;
  }
}
