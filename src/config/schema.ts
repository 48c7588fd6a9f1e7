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

export const FORMATS = ['auto', 'parquet', 'csv', 'json', 'arrow', 'avro', 'delta', 'sagemaker-capture', 'sagemaker-ground-truth'] as const;
export type SourceFormat = (typeof FORMATS)[number];

/** Feature types in Aporia's vocabulary; a tensor declares its dimensions. */
const featureType = z.union([
  z.enum(['numeric', 'string', 'boolean', 'categorical', 'datetime']),
  z.strictObject({ tensor: z.strictObject({ dimensions: z.array(z.number().int().min(1)).min(1) }) }),
]);
export type FeatureType = z.output<typeof featureType>;

const s3Url = z
  .string()
  .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/, 'must be s3://bucket/prefix/')
  .describe('The S3 location to watch, recursively: s3://bucket/prefix/');

/** The AWS access settings a job may set for itself (the rest comes from the top-level `s3`). */
const roleArn = z
  .string()
  .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/, 'must be an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>')
  .describe('IAM role to assume with STS AssumeRole for this access (cross-account buckets); default: the credential chain\'s own identity');
const externalId = z
  .string()
  .min(2, 'must be 2-1224 characters: letters, digits and _+=,.@:/-')
  .max(1224, 'must be 2-1224 characters: letters, digits and _+=,.@:/-')
  .regex(/^[\w+=,.@:/-]+$/, 'must be 2-1224 characters: letters, digits and _+=,.@:/-')
  .describe('External ID sent with AssumeRole (the sts:ExternalId condition of the role\'s trust policy)');
const sessionName = z.string().regex(/^[\w+=,.@-]{2,64}$/, 'must be 2-64 characters: letters, digits and _+=,.@-');
const stsEndpoint = z.string().url().describe('Custom STS endpoint for AssumeRole (a VPC endpoint); default: the regional STS endpoint');

const jobS3Schema = z
  .strictObject({
    region: z.string().min(1).optional().describe('AWS region of this job\'s bucket; default s3.region'),
    endpoint: z.string().url().optional().describe('Custom endpoint for this job; default s3.endpoint'),
    forcePathStyle: z.boolean().optional().describe('Path-style addressing for this job; default s3.forcePathStyle'),
    roleArn: roleArn.optional(),
    externalId: externalId.optional(),
    sessionName: sessionName.optional().describe('AssumeRole session name (shows in CloudTrail); default s3.sessionName'),
    stsEndpoint: stsEndpoint.optional(),
  })
  .describe('AWS access of this job when it differs from the top-level s3 (another account, region or endpoint); share one with a YAML anchor');

const modelSchema = z
  .strictObject({
    id: z.string().min(1).max(128).describe('Model ID the rows belong to'),
    version: z.string().min(1).max(128).default('no_version').describe("Constant model version; schema.version names a column instead (its empty cells also get this). Arize's default: no_version"),
    type: z.enum(['binary', 'multiclass', 'regression', 'ranking']).optional().describe('Model type'),
    environment: z.enum(['production', 'training', 'validation']).default('production').describe('Environment of the rows; training and validation sets are baselines'),
    batchId: z.string().min(1).max(128).optional().describe('Constant batch ID (training/validation only); schema.batchId names a column instead'),
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
    exclude: z.array(columnName).optional().describe('Columns never taken as features when features are inferred (features omitted)'),
    featureTypes: z
      .record(z.string().min(1), featureType)
      .optional()
      .describe('Declared types of features by feature name (Aporia vocabulary); values are checked and cast'),
    shapValues: z.string().min(1).optional().describe('Prefix of SHAP value columns (stripped from the feature name)'),
    embeddings: z
      .array(
        z.strictObject({
          name: z.string().min(1).describe('Embedding feature name'),
          vector: columnName.describe('Column holding the vector (a list of numbers)'),
          rawData: columnName.optional().describe('Column with the raw data the vector encodes (text, tokens)'),
          link: columnName.optional().describe('Column with a link to the data (image URL)'),
          dimension: z.number().int().min(1).optional().describe('Vector length; default: the first vector of each file'),
        }),
      )
      .optional()
      .describe('Embedding features'),
    predictionGroupId: columnName.optional().describe('Ranking: the group (query, list) a prediction belongs to'),
    rank: columnName.optional().describe('Ranking: position of the prediction in its group, 1 to 100'),
    relevanceLabel: columnName.optional().describe('Ranking: actual relevance label'),
    relevanceScore: columnName.optional().describe('Ranking: actual relevance score'),
    batchId: columnName.optional().describe('Column with the batch ID (training/validation only)'),
  })
  .describe('How the columns of the files map to model fields');

const jobSchema = z
  .strictObject({
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'must be 1-63 letters, digits, - or _, starting with a letter or digit')
      .describe('Stable job ID; names its queue and its ledger rows'),
    source: s3Url,
    format: z.enum(FORMATS).default('auto').describe('File format; auto = Delta tables (folders with _delta_log/) plus files by extension'),
    pollInterval: durationValue.optional().describe('How often to list this prefix; default defaults.pollInterval'),
    maxFileBytes: sizeValue.optional().describe('Largest file to import; default defaults.maxFileBytes'),
    s3: jobS3Schema.optional(),
    model: modelSchema,
    schema: fieldMapping,
    timestamps: z
      .strictObject({
        unit: z.enum(['s', 'ms']).default('s').describe('Unit of numeric (epoch) timestamps'),
        timeZone: z.string().default('UTC').describe('IANA time zone of timestamps written without an offset'),
        maxAge: durationValue.prefault('5y').describe('Rows older than this (from the import time) are rejected'),
        maxAhead: durationValue.prefault('1y').describe('Rows further in the future than this are rejected'),
      })
      .prefault({})
      .describe('How timestamps are read and which are plausible'),
    capture: z
      .strictObject({
        featureNames: z.array(z.string().min(1)).min(1).optional().describe('Names of the features of CSV and list payloads, in payload order; default 0, 1, 2, ...'),
      })
      .optional()
      .describe('SageMaker Data Capture settings'),
    readOptions: z
      .record(
        z.string().regex(/^[a-z_][a-z0-9_]*$/i, 'must be a DuckDB reader option name'),
        z.union([z.string(), z.number(), z.boolean(), z.array(z.string()), z.record(z.string(), z.string())]),
      )
      .optional()
      .describe("Options passed to DuckDB's reader: delim, quote, escape, header, compression, dateformat, timestampformat, types, ..."),
    select: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('DuckDB SQL expressions applied to each file before mapping (one per entry; "*" keeps every column)'),
    onInvalidRows: z.enum(['skip', 'fail']).default('skip').describe('skip: load the good rows and record the bad ones; fail: load nothing of a file with a bad row'),
  })
  .superRefine((job, ctx) => {
    const s = job.schema;
    const predicts = s.predictionLabel ?? s.predictionScore ?? s.rank;
    const actual = s.actualLabel ?? s.actualScore ?? s.relevanceLabel ?? s.relevanceScore;
    if (!predicts && !actual) {
      ctx.addIssue({
        code: 'custom',
        path: ['schema'],
        message: 'maps neither predictions (predictionLabel/predictionScore) nor actuals (actualLabel/actualScore)',
      });
    }
    const type = job.model.type;
    if (type === 'regression') {
      if (predicts && !s.predictionScore) ctx.addIssue({ code: 'custom', path: ['schema', 'predictionScore'], message: 'required for a regression model (the predicted value)' });
      if (actual && !s.actualScore) ctx.addIssue({ code: 'custom', path: ['schema', 'actualScore'], message: 'required for a regression model (the actual value)' });
    }
    const ranking = [s.predictionGroupId, s.rank, s.relevanceLabel, s.relevanceScore].some(Boolean);
    if (type === 'ranking') {
      if (predicts && !s.predictionGroupId) ctx.addIssue({ code: 'custom', path: ['schema', 'predictionGroupId'], message: 'required for a ranking model' });
      if (predicts && !s.rank) ctx.addIssue({ code: 'custom', path: ['schema', 'rank'], message: 'required for a ranking model' });
      if (actual && !s.relevanceLabel && !s.relevanceScore && !s.actualLabel && !s.actualScore) {
        ctx.addIssue({ code: 'custom', path: ['schema', 'relevanceLabel'], message: 'a ranking model needs relevanceLabel or relevanceScore for its actuals' });
      }
    } else if (ranking) {
      ctx.addIssue({ code: 'custom', path: ['model', 'type'], message: 'predictionGroupId, rank and relevance fields need model.type: ranking' });
    }
    if ((job.model.batchId || s.batchId) && job.model.environment === 'production') {
      ctx.addIssue({ code: 'custom', path: [job.model.batchId ? 'model' : 'schema', 'batchId'], message: 'batch IDs belong to training and validation data; set model.environment' });
    }
    if (job.model.batchId && s.batchId) {
      ctx.addIssue({ code: 'custom', path: ['schema', 'batchId'], message: 'model.batchId (constant) and schema.batchId (column) exclude each other' });
    }
    if (s.exclude && s.features !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['schema', 'exclude'], message: 'only applies when features are inferred (leave schema.features out)' });
    }
    try {
      new Intl.DateTimeFormat('en', { timeZone: job.timestamps.timeZone });
    } catch {
      ctx.addIssue({ code: 'custom', path: ['timestamps', 'timeZone'], message: `unknown time zone "${job.timestamps.timeZone}" (use an IANA name like Europe/Oslo)` });
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
      // `kind` may be left out: the embedded DuckDB store is the default, as for the whole `store` key.
      .preprocess((v) => (v && typeof v === 'object' && !Array.isArray(v) && !('kind' in v) ? { kind: 'duckdb', ...v } : v), z.discriminatedUnion('kind', [
        z.strictObject({
          kind: z.literal('duckdb'),
          path: z.string().min(1).default('./data/inferences.duckdb').describe('DuckDB database file'),
          memoryLimit: z.string().default('512MB').describe("DuckDB memory_limit (bounds RSS; spills beyond it)"),
          threads: z.number().int().min(1).optional().describe('DuckDB threads; default: the number of cores'),
        }),
        z.strictObject({
          kind: z.literal('postgres'),
          url: z
            .string()
            .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
            .describe('PostgreSQL connection URL (postgres://user:password@host:5432/db?sslmode=require); take it from a secret: url: ${PG_URL}'),
          schema: z
            .string()
            .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier')
            .default('public')
            .describe('Schema that holds the tables and views (created when missing)'),
          poolSize: z.number().int().min(1).max(100).default(4).describe('Connections per process'),
          statementTimeout: duration('5m').describe('statement_timeout of import and ledger statements; operators\' SQL has its own 10 s'),
          ssl: z
            .strictObject({
              ca: z.string().optional().describe('File with the CA certificate(s) to trust'),
              rejectUnauthorized: z.boolean().default(true).describe('Refuse servers whose certificate does not verify'),
            })
            .optional()
            .describe('TLS to the server (also sslmode= in the URL)'),
          memoryLimit: z.string().default('768MB').describe("memory_limit of the worker's private in-memory DuckDB that reads, maps and validates files"),
          threads: z.number().int().min(1).optional().describe('threads of that DuckDB; default the number of cores'),
        }),
      ]))
      .prefault({ kind: 'duckdb' }),
    s3: z
      .strictObject({
        region: z.string().default('us-east-1').describe('AWS region'),
        endpoint: z.string().url().optional().describe('Custom endpoint for S3-compatible stores'),
        forcePathStyle: z.boolean().default(false).describe('Path-style addressing (needed by most S3-compatible stores)'),
        roleArn: roleArn.optional(),
        externalId: externalId.optional(),
        sessionName: sessionName.default('inference-importer').describe('AssumeRole session name (shows in CloudTrail)'),
        stsEndpoint: stsEndpoint.optional(),
        maxAttempts: z.number().int().min(1).default(3).describe('SDK attempts per S3 request'),
        listConcurrency: z.number().int().min(1).max(64).default(8).describe('Parallel LIST requests when polling a prefix of more than 2000 objects'),
        downloadPartSize: size('16MiB').describe('Objects larger than this are downloaded in byte ranges of this size, in parallel; 0 = one GET per object'),
        downloadConcurrency: z.number().int().min(1).max(64).default(4).describe('Byte ranges of one object downloaded at a time'),
      })
      .prefault({}),
    http: z
      .strictObject({
        port: z.number().int().min(0).max(65535).default(8080).describe('Port for health, metrics and the API'),
        host: z.string().optional().describe('Bind address; default 0.0.0.0 with a token, 127.0.0.1 without'),
        token: z.string().min(16, 'must be at least 16 characters').optional().describe('Bearer token for everything but health and metrics'),
        sessionTtl: duration('12h').describe('How long a dashboard login (session cookie) lasts'),
      })
      .prefault({}),
    defaults: z
      .strictObject({
        pollInterval: duration('10s').describe('How often each prefix is listed'),
        maxFileBytes: size('1GiB').describe('Largest file imported; larger ones fail with IMP_ERR_SOURCE_TOO_LARGE'),
        emptyPolls: z.number().int().min(1).default(3).describe('Polls in a row that find no importable object before a job is flagged empty (job state, log line, importer_job_empty)'),
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
    const host = cfg.http.host;
    if (!cfg.http.token && host !== undefined && !/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(host)) {
      ctx.addIssue({ code: 'custom', path: ['http', 'host'], message: `binding ${host} without http.token would expose the admin API; set http.token or bind to 127.0.0.1` });
    }
    if (cfg.s3.externalId && !cfg.s3.roleArn) {
      ctx.addIssue({ code: 'custom', path: ['s3', 'externalId'], message: 'is sent with AssumeRole: set s3.roleArn too' });
    }
    cfg.jobs.forEach((job, i) => {
      if (job.s3?.externalId && !(job.s3.roleArn ?? cfg.s3.roleArn)) {
        ctx.addIssue({ code: 'custom', path: ['jobs', i, 's3', 'externalId'], message: 'is sent with AssumeRole: set jobs[].s3.roleArn (or s3.roleArn) too' });
      }
    });
    const seen = new Map<string, number>();
    cfg.jobs.forEach((job, i) => {
      const first = seen.get(job.id);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['jobs', i, 'id'], message: `duplicates jobs[${first}].id "${job.id}"` });
      } else seen.set(job.id, i);
    });
  });

/** The config with every per-job default resolved, so no caller restates one. */
export const resolvedConfigSchema = configSchema.transform((cfg) => ({
  ...cfg,
  jobs: cfg.jobs.map((job) => ({
    ...job,
    pollInterval: job.pollInterval ?? cfg.defaults.pollInterval,
    maxFileBytes: job.maxFileBytes ?? cfg.defaults.maxFileBytes,
  })),
}));

export type Config = z.output<typeof resolvedConfigSchema>;
export type JobConfig = Config['jobs'][number];
export type FieldMapping = JobConfig['schema'];
