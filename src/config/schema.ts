import { z } from 'zod';
import { parseDuration, parseSize } from './units.ts';

/**
 * The one declaration of the configuration: every key, its default and its description.
 * Defaults live only here; the rest of the code reads the parsed, frozen result.
 */

const durationValue = z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `not a duration: ${JSON.stringify(v)} (use e.g. 500ms, 10s, 5m, 1h)` });
        return z.NEVER;
      }
      return ms;
    });
const duration = (dflt: string) => durationValue.prefault(dflt);

const sizeValue = z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const bytes = parseSize(v);
      if (bytes === undefined) {
        ctx.addIssue({ code: 'custom', message: `not a size: ${JSON.stringify(v)} (use e.g. 512MiB, 1GiB, or bytes)` });
        return z.NEVER;
      }
      return bytes;
    });
const size = (dflt: string) => sizeValue.prefault(dflt);

const columnName = z.string().min(1, 'must name a column');

/** A prefix (`"feature/"`) or an explicit list of columns. */
const columnSelection = z.union([z.string().min(1), z.array(columnName).min(1)]);

export const FORMATS = ['auto', 'parquet', 'csv', 'json'] as const;
export type SourceFormat = (typeof FORMATS)[number];

const s3Url = z
  .string()
  .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/, 'must be s3://bucket/prefix/')
  .describe('The S3 location to watch, recursively: s3://bucket/prefix/');

const modelSchema = z
  .strictObject({
    id: z.string().min(1).max(128).describe('Model ID the rows belong to'),
    version: z.string().min(1).max(128).optional().describe('Constant model version; schema.version names a column instead'),
    type: z.enum(['binary', 'multiclass', 'regression', 'ranking']).optional().describe('Model type'),
    environment: z.enum(['production', 'training', 'validation']).default('production').describe('Environment of the rows'),
  })
  .describe('The model the rows of this job belong to');

const fieldMapping = z
  .strictObject({
    predictionId: columnName.describe('Column holding the prediction ID (max 128 characters); required'),
    timestamp: columnName.optional().describe('Column with the prediction time: epoch seconds, RFC 3339 text, or a timestamp; missing = import time'),
    version: columnName.optional().describe('Column with the model version, when it varies by row'),
    predictionLabel: columnName.optional().describe('Column with the predicted label'),
    predictionScore: columnName.optional().describe('Column with the predicted score'),
    actualLabel: columnName.optional().describe('Column with the actual (ground truth) label'),
    actualScore: columnName.optional().describe('Column with the actual (ground truth) score'),
    features: columnSelection.optional().describe('Feature columns: a name prefix (stripped from the feature name) or a list; omitted = every unmapped column'),
    tags: columnSelection.optional().describe('Tag columns: a name prefix (stripped) or a list; omitted = none'),
  })
  .describe('How the columns of the files map to model fields');

const jobSchema = z
  .strictObject({
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'must be 1-63 letters, digits, - or _, starting with a letter or digit')
      .describe('Stable job ID; names its queue and its ledger rows'),
    source: s3Url,
    format: z.enum(FORMATS).default('auto').describe('File format; auto = by extension'),
    pollInterval: durationValue.optional().describe('How often to list this prefix; default defaults.pollInterval'),
    maxFileBytes: sizeValue.optional().describe('Largest file to import; default defaults.maxFileBytes'),
    model: modelSchema,
    schema: fieldMapping,
  })
  .superRefine((job, ctx) => {
    const s = job.schema;
    const predicts = s.predictionLabel ?? s.predictionScore;
    const actual = s.actualLabel ?? s.actualScore;
    if (!predicts && !actual) {
      ctx.addIssue({
        code: 'custom',
        path: ['schema'],
        message: 'maps neither predictions (predictionLabel/predictionScore) nor actuals (actualLabel/actualScore)',
      });
    }
  });

export const configSchema = z
  .strictObject({
    redis: z
      .strictObject({
        url: z.string().url().default('redis://127.0.0.1:6379').describe('Redis URL of the work queue'),
        prefix: z.string().min(1).default('importer').describe('Key prefix for every queue and lock in Redis'),
      })
      .prefault({}),
    store: z
      .discriminatedUnion('kind', [
        z.strictObject({
          kind: z.literal('duckdb'),
          path: z.string().min(1).default('./data/inferences.duckdb').describe('DuckDB database file'),
          memoryLimit: z.string().default('1GB').describe("DuckDB memory_limit (bounds RSS; spills beyond it)"),
          threads: z.number().int().min(1).optional().describe('DuckDB threads; default: the number of cores'),
        }),
        z.strictObject({
          kind: z.literal('postgres'),
          url: z.string().min(1).describe('PostgreSQL connection URL'),
        }),
      ])
      .prefault({ kind: 'duckdb' }),
    s3: z
      .strictObject({
        region: z.string().default('us-east-1').describe('AWS region'),
        endpoint: z.string().url().optional().describe('Custom endpoint for S3-compatible stores'),
        forcePathStyle: z.boolean().default(false).describe('Path-style addressing (needed by most S3-compatible stores)'),
        maxAttempts: z.number().int().min(1).default(3).describe('SDK attempts per S3 request'),
      })
      .prefault({}),
    http: z
      .strictObject({
        port: z.number().int().min(0).max(65535).default(8080).describe('Port for health, metrics and the API'),
        host: z.string().optional().describe('Bind address; default 0.0.0.0 with a token, 127.0.0.1 without'),
        token: z.string().min(16, 'must be at least 16 characters').optional().describe('Bearer token for everything but health and metrics'),
      })
      .prefault({}),
    defaults: z
      .strictObject({
        pollInterval: duration('10s').describe('How often each prefix is listed'),
        maxFileBytes: size('1GiB').describe('Largest file imported; larger ones fail with IMP_ERR_SOURCE_TOO_LARGE'),
      })
      .prefault({}),
    worker: z
      .strictObject({
        concurrency: z.number().int().min(1).max(64).default(4).describe('Files downloaded and imported at once per process'),
        attempts: z.number().int().min(1).max(50).default(4).describe('Tries per file version before it stays failed'),
        backoff: duration('5s').describe('First retry delay; doubles per attempt'),
        lockDuration: duration('30s').describe('BullMQ lock; a crashed import is taken over after it'),
        shutdownTimeout: duration('30s').describe('How long SIGTERM waits for running imports'),
        tmpDir: z.string().optional().describe('Where downloads are written; default the OS temp dir'),
      })
      .prefault({}),
    log: z
      .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .prefault({}),
    jobs: z.array(jobSchema).min(1, 'at least one job is needed'),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Map<string, number>();
    cfg.jobs.forEach((job, i) => {
      const first = seen.get(job.id);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['jobs', i, 'id'], message: `duplicates jobs[${first}].id "${job.id}"` });
      } else seen.set(job.id, i);
    });
  });

export type Config = z.output<typeof configSchema>;
export type JobConfig = Config['jobs'][number];
export type FieldMapping = JobConfig['schema'];
