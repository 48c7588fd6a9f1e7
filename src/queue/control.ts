import type { Redis } from 'ioredis';
import type { Config } from '../config/index.ts';
import { ImporterError } from '../errors.ts';
import type { ImportQueues } from './queues.ts';

/** What the queue says about one import job. */
export interface JobQueueState {
  id: string;
  state: 'active' | 'paused';
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
}

function requireJob(config: Readonly<Config>, jobId: string): void {
  if (!config.jobs.some((j) => j.id === jobId)) {
    throw new ImporterError('IMP_ERR_CONFIG_INVALID', `no job "${jobId}" in the config; jobs: ${config.jobs.map((j) => j.id).join(', ')}`, { permanent: true });
  }
}

/**
 * Pausing a job pauses its BullMQ queue: workers stop taking its files, and the poller skips a job
 * whose queue is paused. The state lives in Redis with the queue, so it survives daemon restarts and
 * is the same state the queue dashboard shows and changes.
 */
export async function pauseJob(config: Readonly<Config>, queues: ImportQueues, jobId: string): Promise<void> {
  requireJob(config, jobId);
  await queues.get(jobId).pause();
}

export async function resumeJob(config: Readonly<Config>, queues: ImportQueues, jobId: string): Promise<void> {
  requireJob(config, jobId);
  await queues.get(jobId).resume();
}

/** Pauses or resumes every job's queue. */
export async function setAllPaused(config: Readonly<Config>, queues: ImportQueues, paused: boolean): Promise<void> {
  await Promise.all(config.jobs.map((j) => (paused ? queues.get(j.id).pause() : queues.get(j.id).resume())));
}

export async function isJobPaused(queues: ImportQueues, jobId: string): Promise<boolean> {
  return queues.get(jobId).isPaused();
}

export async function jobQueueStates(config: Readonly<Config>, queues: ImportQueues): Promise<JobQueueState[]> {
  return Promise.all(
    config.jobs.map(async (j) => {
      const q = queues.get(j.id);
      const [paused, counts] = await Promise.all([q.isPaused(), q.getJobCounts('waiting', 'active', 'delayed', 'failed')]);
      return {
        id: j.id,
        state: paused ? 'paused' : 'active',
        waiting: counts.waiting ?? 0,
        active: counts.active ?? 0,
        delayed: counts.delayed ?? 0,
        failed: counts.failed ?? 0,
      } satisfies JobQueueState;
    }),
  );
}

/** How the last poll of a job went; kept in Redis so every process (and the CLI) can show it. */
export interface PollStatus {
  at: string;
  /** `empty`: the poll was fine but the source has held no importable object for `defaults.emptyPolls` polls. */
  outcome: 'ok' | 'empty' | 'error';
  listed?: number;
  queued?: number;
  error?: string;
}

const pollKey = (config: Readonly<Config>, jobId: string) => `${config.redis.prefix}:last-poll:${jobId}`;

export async function recordPoll(redis: Redis, config: Readonly<Config>, jobId: string, status: PollStatus): Promise<void> {
  await redis.set(pollKey(config, jobId), JSON.stringify(status));
}

export async function lastPolls(redis: Redis, config: Readonly<Config>): Promise<Map<string, PollStatus>> {
  const values = await redis.mget(...config.jobs.map((j) => pollKey(config, j.id)));
  return new Map(config.jobs.flatMap((j, i) => (values[i] ? [[j.id, JSON.parse(values[i]!) as PollStatus] as const] : [])));
}
