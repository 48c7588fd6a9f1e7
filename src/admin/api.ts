import type { S3Client } from '@aws-sdk/client-s3';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Config, JobConfig } from '../config/index.ts';
import type { LiveConfig } from '../config/live.ts';
import { ImporterError } from '../errors.ts';
import { jobQueueStates, lastPolls, pauseJob, resumeJob, setAllPaused } from '../queue/control.ts';
import type { ImportQueues } from '../queue/queues.ts';
import type { RedisHealth } from '../queue/redis-health.ts';
import type { FileStatus, Store } from '../store/store.ts';
import { dryRun } from '../worker/dry-run.ts';
import { sourceLabel } from '../source/sql/index.ts';

/** What the API reads and acts on. */
export interface ApiContext {
  /** The running config (a getter when it reloads). */
  readonly config: Readonly<Config>;
  /** Reloads and their status; without it, `/api/config/reload` answers that reloading is off. */
  live?: LiveConfig;
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
const reimportBody = z.union([z.strictObject({ key: z.string().min(1) }), z.strictObject({ all: z.literal(true) })]);
const deleteQuery = z.strictObject({ purge: z.enum(['true', 'false']).default('false') });
const dryRunBody = z.strictObject({ key: z.string().min(1).optional() }).default({});
const sqlBody = z.strictObject({ sql: z.string().min(1), limit: z.number().int().min(1).max(10_000).default(1000) });

function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const r = schema.safeParse(value ?? undefined);
  if (r.success) return r.data;
  const why = r.error.issues.map((i) => `${[where, ...i.path].join('.')}: ${i.message}`).join('; ');
  throw new ImporterError('IMP_ERR_HTTP_BAD_REQUEST', why, { permanent: true });
}

/**
 * How a job stands, for people: paused (by an operator), failing (its last poll failed or files
 * failed for good), empty (nothing found under its prefix yet), or active.
 */
function jobState(queueState: 'active' | 'paused', poll: { outcome: string } | undefined, files: Record<string, number>): 'active' | 'paused' | 'empty' | 'failing' {
  if (queueState === 'paused') return 'paused';
  if (poll?.outcome === 'error' || files.failed > 0) return 'failing';
  // Polled fine, but the source has held no importable object for defaults.emptyPolls polls (a mistyped prefix?), or nothing was ever found.
  if (poll?.outcome === 'empty') return 'empty';
  if (Object.values(files).every((n) => n === 0)) return 'empty';
  return 'active';
}

/** Every API error is JSON with a stable code; the status follows from the code. */
function statusOf(code: string): number {
  if (code === 'IMP_ERR_HTTP_NOT_FOUND') return 404;
  if (code === 'IMP_ERR_HTTP_BAD_REQUEST' || code === 'IMP_ERR_SQL_REFUSED' || code === 'IMP_ERR_SQL_UNKNOWN_TABLE') return 400;
  if (code === 'IMP_ERR_HTTP_UNAUTHORIZED') return 401;
  if (code === 'IMP_ERR_HTTP_CONFLICT') return 409;
  // The store or Redis cannot answer now: a retry later can succeed.
  if (code === 'IMP_ERR_STORE' || code === 'IMP_ERR_REDIS_UNAVAILABLE') return 503;
  return 500;
}

/**
 * The admin API: jobs with their state and counters, files with versions and first errors,
 * pause/resume/retry/reimport/dry-run, model summaries, and read-only SQL over the store.
 */
export function registerApi(app: FastifyInstance, ctx: ApiContext): void {
  const { store, queues, redis, s3, redisHealth } = ctx;
  /** Reads answer within a second; writes (pause, enqueue) get longer, but nothing waits while Redis is known to be down. */
  const withRedis = <T>(what: string, fn: () => Promise<T>, timeoutMs = 1000): Promise<T> => (redisHealth ? redisHealth.call(what, fn, timeoutMs) : fn());
  const requireRedis = (what: string) => {
    if (redisHealth && !redisHealth.up) throw redisHealth.unavailable(what);
  };
  const jobOf = (id: string): JobConfig => {
    const config = ctx.config;
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
    const config = ctx.config;
    const [polls, states] = await withRedis('the job list (queue state and last polls)', () => Promise.all([lastPolls(redis, config), jobQueueStates(config, queues)]));
    const [counts, models] = await Promise.all([store.jobCounts(), store.modelSummaries()]);
    return config.jobs
      .filter((j) => !only || j.id === only)
      .map((job) => {
        const c = counts.get(job.id);
        const q = states.find((s) => s.id === job.id)!;
        const poll = polls.get(job.id);
        const model = models.find((m) => m.modelId === job.model.id && m.environment === job.model.environment);
        const files = Object.fromEntries(STATUSES.map((s) => [s, c?.files[s as FileStatus] ?? 0])) as Record<(typeof STATUSES)[number], number>;
        return {
          id: job.id,
          state: jobState(q.state, poll, files),
          source: sourceLabel(job),
          format: job.format,
          model: job.model,
          lastPoll: poll ?? null,
          files,
          rows: { loaded: c?.rowsLoaded ?? 0, rejected: c?.rowsRejected ?? 0 },
          /** Of the model (and environment) the job loads into, which other jobs may share. */
          actuals: { matchRate: model?.matchRate ?? 0, waiting: model?.actualsWaiting ?? 0 },
          queue: { waiting: q.waiting, active: q.active, delayed: q.delayed, failed: q.failed },
        };
      });
  };

  app.get('/api/jobs', async () => ({ jobs: await jobViews() }));
  app.get<{ Params: { id: string } }>('/api/jobs/:id', async (req) => (await jobViews(jobOf(req.params.id).id))[0]);
  app.post<{ Params: { id: string } }>('/api/jobs/:id/pause', async (req) => {
    const id = jobOf(req.params.id).id;
    await withRedis('pausing a job', () => pauseJob(ctx.config, queues, id), 5000);
    return { id: req.params.id, state: 'paused' };
  });
  app.post<{ Params: { id: string } }>('/api/jobs/:id/resume', async (req) => {
    const id = jobOf(req.params.id).id;
    await withRedis('resuming a job', () => resumeJob(ctx.config, queues, id), 5000);
    return { id: req.params.id, state: 'active' };
  });
  app.post('/api/queue/pause', async () => {
    await withRedis('pausing the queue', () => setAllPaused(ctx.config, queues, true), 5000);
    return { jobs: ctx.config.jobs.length, state: 'paused' };
  });
  app.post('/api/queue/resume', async () => {
    await withRedis('resuming the queue', () => setAllPaused(ctx.config, queues, false), 5000);
    return { jobs: ctx.config.jobs.length, state: 'active' };
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
    const which = parse(reimportBody, req.body, 'body');
    requireRedis('reimport');
    const versions = await store.resetVersions(job.id, which);
    const enqueue = () => withRedis('reimport', async () => {
      for (const v of versions) await queues.forgetFinished(v);
      await queues.enqueue(versions);
    }, 5000);
    if ('all' in which) {
      await enqueue();
      return { job: job.id, reimported: versions.map((v) => v.key) };
    }
    if (versions.length === 0) throw new ImporterError('IMP_ERR_HTTP_NOT_FOUND', `job ${job.id} has no file ${which.key} in its ledger`, { permanent: true });
    await enqueue();
    return { job: job.id, key: which.key, etag: versions[0].etag, status: 'pending' };
  });
  app.post<{ Params: { id: string } }>('/api/jobs/:id/dry-run', async (req) => {
    const job = jobOf(req.params.id);
    const { key } = parse(dryRunBody, req.body, 'body');
    return dryRun(ctx.config, job, s3, { key });
  });
  app.get('/api/config', async () => {
    const { live } = ctx;
    return {
      path: live?.path ?? null,
      loadedAt: live?.loadedAt ?? null,
      jobs: ctx.config.jobs.map((j) => j.id),
      lastReload: live?.last ?? null,
      lastReloadFailed: !!live?.lastFailure,
      /** Key paths changed in the file that apply only after a restart (from the last reload that read a valid file). */
      needsRestart: live?.last?.outcome === 'failed' ? null : (live?.last?.needsRestart ?? []),
    };
  });
  app.post('/api/config/reload', async (_req, reply) => {
    if (!ctx.live) throw new ImporterError('IMP_ERR_HTTP_CONFLICT', 'this process was started without a config file, so it cannot reload', { permanent: true });
    const report = await ctx.live.reload('api');
    if (report.outcome === 'failed') return reply.code(422).send({ code: 'IMP_ERR_CONFIG_INVALID', message: `the running config stays: ${report.errors?.join('; ')}`, ...report });
    return report;
  });
  app.delete<{ Params: { id: string } }>('/api/jobs/:id', async (req) => {
    const id = req.params.id;
    const { purge } = parse(deleteQuery, req.query, 'query');
    if (ctx.config.jobs.some((j) => j.id === id)) {
      throw new ImporterError('IMP_ERR_HTTP_CONFLICT', `job ${id} is still in the config: remove it from the config file (then reload) before purging its data, or the next poll imports everything again`, { permanent: true });
    }
    if (purge !== 'true') {
      throw new ImporterError('IMP_ERR_HTTP_BAD_REQUEST', `job ${id} is not in the config, so it no longer polls; its rows and ledger stay until you delete them with ?purge=true`, { permanent: true });
    }
    const purged = await store.purgeJob(id);
    if (purged.files === 0) throw new ImporterError('IMP_ERR_HTTP_NOT_FOUND', `no job "${id}" in the ledger: nothing to purge`, { permanent: true });
    return { job: id, purged };
  });
  app.get('/api/models', async () => ({ models: await store.modelSummaries() }));
  app.post('/api/sql', async (req) => {
    const { sql, limit } = parse(sqlBody, req.body, 'body');
    try {
      return await store.readOnlyQuery(sql, limit, 10_000);
    } catch (err) {
      // DuckDB: `Table with name x does not exist`; PostgreSQL: `relation "x" does not exist`.
      const missing = err instanceof ImporterError && /Table with name (\S+) does not exist|relation "([^"]+)" does not exist/.exec(err.message);
      if (!missing) throw err;
      const { rows } = await store.readOnlyQuery(
        // The store's own schema, and the DuckDB store's schema of per-model tables.
        `SELECT CASE WHEN table_schema = current_schema() THEN table_name ELSE table_schema || '.' || table_name END AS name,
                CASE WHEN table_type = 'VIEW' THEN 'view' ELSE 'table' END AS kind
         FROM information_schema.tables WHERE table_schema IN (current_schema(), 'model_predictions') AND table_type IN ('BASE TABLE', 'VIEW') ORDER BY 2 DESC, 1`,
        1000, 10_000,
      );
      const tables = rows as Array<{ name: string; kind: string }>;
      const list = (kind: string) => tables.filter((t) => t.kind === kind).map((t) => t.name).join(', ') || 'none';
      throw new ImporterError('IMP_ERR_SQL_UNKNOWN_TABLE', `there is no table or view "${missing[1] ?? missing[2]}"; views: ${list('view')}; tables: ${list('table')}`, { permanent: true });
    }
  });
}
