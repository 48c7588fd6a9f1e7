import { createHash } from 'node:crypto';
import { Queue, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../config/index.ts';
import type { FileVersion } from '../store/store.ts';

/** Payload of one import: everything a worker needs to fetch exactly this version. */
export interface ImportJobData {
  jobId: string;
  fileId: number;
  bucket: string;
  key: string;
  etag: string;
  size: number;
  lastModified: string;
}

/** BullMQ queue of an import job: one per job, so the standard queue admin pauses and resumes it. */
export const queueName = (jobId: string) => `import-${jobId}`;

/** Deterministic BullMQ job ID of a file version, so the same version is never queued twice. */
export function versionJobId(jobId: string, bucket: string, key: string, etag: string): string {
  return `v${createHash('sha256').update(`${jobId}\0${bucket}\0${key}\0${etag}`).digest('hex').slice(0, 40)}`;
}

/** Opens a Redis connection as BullMQ needs it (blocking commands must not time out). */
export function connectRedis(url: string, name: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false });
}

/** The import queues of every configured job, sharing one connection. */
export class ImportQueues {
  private readonly queues = new Map<string, Queue<ImportJobData>>();
  private readonly jobOptions: JobsOptions;

  /**
   * @param onError - told every error a queue reports (a lost connection, mostly); without it a
   * queue with no listener prints the error's stack to stderr, outside the JSON log.
   */
  constructor(
    private readonly config: Readonly<Config>,
    private readonly connection: Redis,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {
    this.jobOptions = {
      attempts: config.worker.attempts,
      backoff: { type: 'exponential', delay: config.worker.backoff },
      // Kept for a while so the queue admin's COMPLETED tab shows recent imports; the ledger keeps the full history.
      removeOnComplete: { age: 24 * 3600, count: 1000 },
      // Failed versions stay visible for the queue admin; the ledger keeps the full history.
      removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
    };
  }

  get(jobId: string): Queue<ImportJobData> {
    let q = this.queues.get(jobId);
    if (!q) {
      q = new Queue<ImportJobData>(queueName(jobId), { connection: this.connection, prefix: this.config.redis.prefix });
      q.on('error', this.onError);
      this.queues.set(jobId, q);
    }
    return q;
  }

  /** Queues file versions; versions already queued (same deterministic ID) are left as they are. */
  async enqueue(versions: FileVersion[]): Promise<void> {
    const byJob = new Map<string, FileVersion[]>();
    for (const v of versions) byJob.set(v.jobId, [...(byJob.get(v.jobId) ?? []), v]);
    for (const [jobId, list] of byJob) {
      const q = this.get(jobId);
      for (let i = 0; i < list.length; i += 500) {
        await q.addBulk(
          list.slice(i, i + 500).map((v) => ({
            // The name is what the queue admin lists: the file key says which file a job is.
            name: v.key,
            data: { jobId, fileId: v.fileId, bucket: v.bucket, key: v.key, etag: v.etag, size: v.size, lastModified: v.lastModified.toISOString() },
            opts: { ...this.jobOptions, jobId: versionJobId(jobId, v.bucket, v.key, v.etag) },
          })),
        );
      }
    }
  }

  /**
   * Removes a finished BullMQ job of a version so it can be queued again (a version that failed
   * before and is pending again, e.g. after its object went back to that content).
   */
  async forgetFinished(v: FileVersion): Promise<void> {
    const job = await this.get(v.jobId).getJob(versionJobId(v.jobId, v.bucket, v.key, v.etag));
    if (job && ((await job.isFailed()) || (await job.isCompleted()))) await job.remove();
  }

  /**
   * Drops every queued, delayed and finished import of a job removed from the config (its ledger
   * and rows stay: versions left pending are queued again if the job comes back).
   */
  async drop(jobId: string): Promise<void> {
    const q = this.get(jobId);
    await q.obliterate({ force: true });
    await q.close();
    this.queues.delete(jobId);
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
