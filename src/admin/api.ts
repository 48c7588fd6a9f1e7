import type { S3Client } from '@aws-sdk/client-s3';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Config, JobConfig } from '../config/index.ts';
import { ImporterError } from '../errors.ts';
import { jobQueueStates, lastPolls, pauseJob, resumeJob, setAllPaused } from '../queue/control.ts';
import type { ImportQueues } from '../queue/queues.ts';
import type { RedisHealth } from '../queue/redis-health.ts';
import type { FileStatus, Store } from '../store/store.ts';
import { dryRun } from '../worker/dry-run.ts';

/** What the API reads and acts on. */
export interface ApiContext {
  config: Readonly<Config>;
  store: Store;
  queues: ImportQueues;
  redis: Redis;
  s3: S3Client;
  /** When given, calls that need Redis fail at once with IMP_ERR_REDIS_UNAVAILABLE (503) while it is away. */
  redisHealth?: RedisHealth;
}

const STATUSES = ['pending', 'succeeded', 'partially_succeeded', 'failed', 'superseded', 'vanished'] as const;

const filesQuery = z.strictObject({
  status: z.enum(STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  offset: z.coerce.number().int().min(0).default(0),
  errors: z.coerce.number().int().min(0).max(100).default(5),
});
const reimportBody = z.strictObject({ key: z.string().min(1) });
const dryRunBody = z.strictObject({ key: z.string().min(1).optional() }).default({});
const sqlBody = z.strictObject({ sql: z.string().min(1), limit: z.number().int().min(1).max(10_000).default(1000) });

function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const r = schema.safeParse(value ?? undefined);
  if (r.success) return r.data;
  const why = r.error.issues.map((i) => `${[where, ...i.path].join('.')}: ${i.message}`).join('; ');
  throw new ImporterError('IMP_ERR_HTTP_BAD_REQUEST', why, { permanent: true });
}

/** Every API error is JSON with a stable code; the status follows from the code. */
function statusOf(code: string): number {
  if (code === 'IMP_ERR_HTTP_NOT_FOUND') return 404;
  if (code === 'IMP_ERR_HTTP_BAD_REQUEST' || code === 'IMP_ERR_SQL_REFUSED') return 400;
  if (code === 'IMP_ERR_HTTP_UNAUTHORIZED') return 401;
  // The store or Redis cannot answer now: a retry later can succeed.
  if (code === 'IMP_ERR_STORE' || code === 'IMP_ERR_REDIS_UNAVAILABLE') return 503;
  return 500;
}

/**
 * The admin API: jobs with their state and counters, files with versions and first errors,
 * pause/resume/retry/reimport/dry-run, model summaries, and read-only SQL over the store.
 */
export function registerApi(app: FastifyInstance, ctx: ApiContext): void {
  const { config, store, queues, redis, s3, redisHealth } = ctx;
  /** Reads answer within a second; writes (pause, enqueue) get longer, but nothing waits while Redis is known to be down. */
  const withRedis = <T>(what: string, fn: () => Promise<T>, timeoutMs = 1000): Promise<T> => (redisHealth ? redisHealth.call(what, fn, timeoutMs) : fn());
  const requireRedis = (what: string) => {
    if (redisHealth && !redisHealth.up) throw redisHealth.unavailable(what);
  };
  const jobOf = (id: string): JobConfig => {
    const job = config.jobs.find((j) => j.id === id);
    if (!job) throw new ImporterError('IMP_ERR_HTTP_NOT_FOUND', `no job "${id}"; jobs: ${config.jobs.map((j) => j.id).join(', ')}`, { permanent: true });
    return job;
  };

  app.setErrorHandler(async (err, _req, reply) => {
    if (err instanceof ImporterError) return reply.code(statusOf(err.code)).send({ code: err.code, message: err.message });
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    return reply.code(status).send({ code: status < 500 ? 'IMP_ERR_HTTP_BAD_REQUEST' : 'IMP_ERR_INTERNAL', message: (err as Error).message });
  });
  app.setNotFoundHandler(async (req, reply) => reply.code(404).send({ code: 'IMP_ERR_HTTP_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  const jobViews = async (only?: string) => {
    const [polls, states] = await withRedis('the job list (queue state and last polls)', () => Promise.all([lastPolls(redis, config), jobQueueStates(config, queues)]));
    const counts = await store.jobCounts();
    return config.jobs
      .filter((j) => !only || j.id === only)
      .map((job) => {
        const c = counts.get(job.id);
        const q = states.find((s) => s.id === job.id)!;
        return {
          id: job.id,
          // `empty`: polled fine, but the source has held no importable object for defaults.emptyPolls polls (a mistyped prefix?).
          state: q.state === 'active' && polls.get(job.id)?.outcome === 'empty' ? 'empty' : q.state,
          source: job.source,
          format: job.format,
          model: job.model,
          lastPoll: polls.get(job.id) ?? null,
          files: Object.fromEntries(STATUSES.map((s) => [s, c?.files[s as FileStatus] ?? 0])),
          rows: { loaded: c?.rowsLoaded ?? 0, rejected: c?.rowsRejected ?? 0 },
          queue: { waiting: q.waiting, active: q.active, delayed: q.delayed, failed: q.failed },
        };
      });
  };

  app.get('/api/jobs', async () => ({ jobs: await jobViews() }));
  app.get<{ Params: { id: string } }>('/api/jobs/:id', async (req) => (await jobViews(jobOf(req.params.id).id))[0]);
  app.post<{ Params: { id: string } }>('/api/jobs/:id/pause', async (req) => {
    const id = jobOf(req.params.id).id;
    await withRedis('pausing a job', () => pauseJob(config, queues, id), 5000);
    return { id: req.params.id, state: 'paused' };
  });
  app.post<{ Params: { id: string } }>('/api/jobs/:id/resume', async (req) => {
    const id = jobOf(req.params.id).id;
    await withRedis('resuming a job', () => resumeJob(config, queues, id), 5000);
    return { id: req.params.id, state: 'active' };
  });
  app.post('/api/queue/pause', async () => {
    await withRedis('pausing the queue', () => setAllPaused(config, queues, true), 5000);
    return { jobs: config.jobs.length, state: 'paused' };
  });
  app.post('/api/queue/resume', async () => {
    await withRedis('resuming the queue', () => setAllPaused(config, queues, false), 5000);
    return { jobs: config.jobs.length, state: 'active' };
  });
  app.get<{ Params: { id: string } }>('/api/jobs/:id/files', async (req) => {
    const job = jobOf(req.params.id);
    const q = parse(filesQuery, req.query, 'query');
    return { job: job.id, limit: q.limit, offset: q.offset, ...(await store.listFiles(job.id, q)) };
  });
  app.post<{ Params: { id: string } }>('/api/jobs/:id/retry', async (req) => {
    const job = jobOf(req.params.id);
    requireRedis('retry');
    const versions = await store.resetVersions(job.id, { failed: true });
    // Reset versions are pending in the ledger: if Redis drops now, the next poll queues them anyway.
    await withRedis('retry', async () => {
      for (const v of versions) await queues.forgetFinished(v);
      await queues.enqueue(versions);
    }, 5000);
    return { job: job.id, retried: versions.map((v) => v.key) };
  });
  app.post<{ Params: { id: string } }>('/api/jobs/:id/reimport', async (req) => {
    const job = jobOf(req.params.id);
    const { key } = parse(reimportBody, req.body, 'body');
    requireRedis('reimport');
    const versions = await store.resetVersions(job.id, { key });
    if (versions.length === 0) throw new ImporterError('IMP_ERR_HTTP_NOT_FOUND', `job ${job.id} has no file ${key} in its ledger`, { permanent: true });
    await withRedis('reimport', async () => {
      for (const v of versions) await queues.forgetFinished(v);
      await queues.enqueue(versions);
    }, 5000);
    return { job: job.id, key, etag: versions[0].etag, status: 'pending' };
  });
  app.post<{ Params: { id: string } }>('/api/jobs/:id/dry-run', async (req) => {
    const job = jobOf(req.params.id);
    const { key } = parse(dryRunBody, req.body, 'body');
    return dryRun(config, job, s3, { key });
  });
  app.get('/api/models', async () => ({ models: await store.modelSummaries() }));
  app.post('/api/sql', async (req) => {
    const { sql, limit } = parse(sqlBody, req.body, 'body');
    return store.readOnlyQuery(sql, limit, 10_000);
  });
}
