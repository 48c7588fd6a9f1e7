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

/** TLS settings of a PostgreSQL-protocol connection (the store's, a query source's). */
const tls = z.strictObject({
  ca: z.string().optional().describe('File with the CA certificate(s) to trust'),
  rejectUnauthorized: z.boolean().default(true).describe('Refuse servers whose certificate does not verify'),
});

/** A query as a job's source (see docs/sql-source.md); the rest of the job is the same as for files. */
const sqlSource = z
  .strictObject({
    sql: z
      .strictObject({
        url: z
          .string()
          .regex(/^(postgres(ql)?|redshift):\/\//, 'must be a postgres://, postgresql:// or redshift:// URL')
          .describe('Warehouse connection URL (PostgreSQL wire protocol: PostgreSQL, Redshift, Aurora); take it from a secret: url: ${WAREHOUSE_URL}. redshift:// is postgres:// on port 5439 with TLS; ?iam=true takes the password from Redshift IAM'),
        query: z.string().min(1).describe('One SELECT; its rows are mapped like a file\'s (the cursor condition is added around it)'),
        cursor: z
          .strictObject({
            column: columnName.describe('A timestamp column of the query that grows when a row is inserted or updated (updated_at)'),
            lookback: duration('0s').describe('Each window also re-reads this much before the last committed cursor: rows committed late, or updated, come again and replace their earlier copy'),
            start: z.iso.datetime({ offset: true }).optional().describe('Cursor value to start from (RFC 3339); default: the smallest value the query returns'),
          })
          .optional()
          .describe('Incremental pulls: each window reads the rows whose cursor is in (last committed cursor − lookback, window end]; omitted = the whole query each refresh, replacing the previous refresh'),
        refreshInterval: duration('5m').describe('How often the query runs (a new window is planned)'),
        windowSize: duration('24h').describe('Most cursor range one window reads: a backfill goes in windows of this size'),
        statementTimeout: duration('10m').describe('statement_timeout of the query on the warehouse'),
        ssl: tls.optional().describe('TLS to the warehouse (also sslmode= in the URL; redshift:// URLs use TLS by default)'),
        iam: z
          .strictObject({
            clusterIdentifier: z.string().min(1).optional().describe('Provisioned cluster: GetClusterCredentials; default: the first label of the URL\'s host'),
            workgroupName: z.string().min(1).optional().describe('Redshift Serverless workgroup: GetCredentials instead of GetClusterCredentials'),
            dbUser: z.string().min(1).optional().describe('Database user (provisioned clusters); default: the URL\'s user'),
            autoCreate: z.boolean().default(false).describe('Create the database user when it does not exist (provisioned clusters)'),
            region: z.string().min(1).optional().describe('AWS region of the cluster; default: from the URL\'s host, else s3.region'),
            endpoint: z.string().url().optional().describe('Custom Redshift API endpoint (a VPC endpoint)'),
            durationSeconds: z.number().int().min(900).max(3600).default(900).describe('Lifetime of the temporary password; it is renewed 5 minutes before it expires'),
          })
          .optional()
          .describe('Redshift IAM authentication with the AWS credential chain (IRSA on Kubernetes); ?iam=true in the URL is the same with every default'),
      })
      .describe('Pull rows from a warehouse by query instead of files'),
  })
  .describe('A SQL query source');
export type SqlSource = z.output<typeof sqlSource>['sql'];

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
    type: z
      .enum(['binary', 'multiclass', 'regression', 'ranking', 'object_detection', 'generative'])
      .optional()
      .describe('Model type; object_detection and generative have required fields of their own (schema.predictionBoxes, schema.prompt/response)'),
    environment: z.enum(['production', 'training', 'validation']).default('production').describe('Environment of the rows; training and validation sets are baselines'),
    batchId: z.string().min(1).max(128).optional().describe('Constant batch ID (training/validation only); schema.batchId names a column instead'),
  })
  .describe('The model the rows of this job belong to');

/** Bounding boxes of an object-detection model, one list entry per box (Arize's object detection columns). */
const boundingBoxes = (side: string) => z
  .strictObject({
    coordinates: columnName.describe('Column with the boxes\' coordinates: a list of [x_min, y_min, x_max, y_max] lists'),
    categories: columnName.describe('Column with the boxes\' categories: a list of labels, one per box'),
    scores: columnName.optional().describe('Column with the boxes\' confidence scores: a list of numbers, one per box'),
  })
  .describe(`Object detection: the ${side} bounding boxes`);

/** A prompt or response of a generative model: its text and, optionally, its embedding vector. */
const generativeText = (what: string) => z
  .strictObject({
    text: columnName.describe(`Column with the ${what} text`),
    vector: columnName.optional().describe(`Column with the ${what}'s embedding vector (a list of numbers)`),
  })
  .describe(`Generative models: the ${what}`);

const fieldMapping = z
  .strictObject({
    predictionId: columnName.describe('Column holding the prediction ID (max 128 characters); required'),
    timestamp: columnName.optional().describe('Column with the prediction time: epoch seconds, RFC 3339 text, or a timestamp; missing = import time'),
    version: columnName.optional().describe('Column with the model version, when it varies by row'),
    predictionLabel: columnName.optional().describe('Column with the predicted label'),
    predictionScore: columnName.optional().describe('Column with the predicted score'),
    actualLabel: columnName.optional().describe('Column with the actual (ground truth) label'),
    actualScore: columnName.optional().describe('Column with the actual (ground truth) score; multiclass: may be a map of class to score (kept as actual_scores)'),
    thresholdScores: columnName.optional().describe('Multiclass: column with a map of class to decision threshold (Arize\'s multi-class threshold scores)'),
    rawInputs: columnSelection.optional().describe('Raw input columns kept with the prediction but not treated as features (Aporia\'s raw_inputs): a name prefix (stripped) or a list'),
    predictions: z
      .union([z.array(columnName).min(1), z.record(columnName, featureType)])
      .optional()
      .describe('Named predictions beside predictionLabel/predictionScore (Aporia\'s predictions dict): a list of columns, or column → type (numeric, string, boolean, categorical, datetime)'),
    predictionBoxes: boundingBoxes('predicted').optional(),
    actualBoxes: boundingBoxes('actual (ground truth)').optional(),
    prompt: generativeText('prompt').optional(),
    response: generativeText('response').optional(),
    tokenCounts: z
      .strictObject({
        prompt: columnName.optional().describe('Column with the prompt\'s token count'),
        response: columnName.optional().describe('Column with the response\'s token count'),
        total: columnName.optional().describe('Column with the total token count'),
      })
      .optional()
      .describe('Generative models: token counts, where given'),
    features: columnSelection.optional().describe('Feature columns: a name prefix (stripped from the feature name) or a list; omitted = every unmapped column'),
    tags: columnSelection.optional().describe('Tag columns: a name prefix (stripped) or a list; omitted = none'),
    exclude: z.array(columnName).optional().describe('Columns never taken as features when features are inferred (features omitted)'),
    featureTypes: z
      .record(z.string().min(1), featureType)
      .optional()
      .describe('Declared types of features by feature name (Aporia vocabulary); values are checked and cast'),
    shapValues: z
      .string()
      .min(1)
      .optional()
      .describe('Prefix of SHAP value columns (stripped from the feature name); mapped without predictions or actuals, the files hold SHAP values alone, matched to predictions by predictionId in any order'),
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

const partitionKey = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, _, . or -');

const jobSchema = z
  .strictObject({
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'must be 1-63 letters, digits, - or _, starting with a letter or digit')
      .describe('Stable job ID; names its queue and its ledger rows'),
    source: z
      .union([s3Url, sqlSource])
      .describe('Where the rows come from: an S3 location (s3://bucket/prefix/, watched recursively) or a query ({ sql: ... })'),
    format: z.enum(FORMATS).default('auto').describe('File format; auto = Delta tables (folders with _delta_log/) plus files by extension'),
    pollInterval: durationValue.optional().describe('How often to list this prefix; default defaults.pollInterval'),
    activePollInterval: durationValue.optional().describe('How soon to list again after a poll found new or changed objects; default defaults.activePollInterval'),
    partitionHorizon: durationValue.optional().describe('Date partitions older than this are listed only by the full listing; default defaults.partitionHorizon'),
    partitionKey: partitionKey.optional().describe('Name of the date partition folders (<name>=2024-01-31/); default defaults.partitionKey'),
    fullListInterval: durationValue.optional().describe('How often the whole prefix is listed when partitionHorizon is set; default defaults.fullListInterval'),
    maxFileBytes: sizeValue.optional().describe('Largest file to import; default defaults.maxFileBytes'),
    maxDecompressedBytes: sizeValue.optional().describe('Largest size a .gz file may expand to; default defaults.maxDecompressedBytes'),
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
    const predicts = s.predictionLabel ?? s.predictionScore ?? s.rank ?? s.predictions ?? s.predictionBoxes ?? s.prompt ?? s.response;
    const actual = s.actualLabel ?? s.actualScore ?? s.relevanceLabel ?? s.relevanceScore ?? s.actualBoxes;
    if (!predicts && !actual && !s.shapValues) {
      ctx.addIssue({
        code: 'custom',
        path: ['schema'],
        message: 'maps neither predictions (predictionLabel/predictionScore) nor actuals (actualLabel/actualScore) nor SHAP values (shapValues)',
      });
    }
    const type = job.model.type;
    const need = (field: keyof typeof s, why: string) => {
      if (!s[field]) ctx.addIssue({ code: 'custom', path: ['schema', field], message: why });
    };
    const only = (fields: Array<keyof typeof s>, t: string, why: string) => {
      for (const f of fields) if (s[f] && type !== t) ctx.addIssue({ code: 'custom', path: ['schema', f], message: `${why}; set model.type: ${t}` });
    };
    only(['predictionBoxes', 'actualBoxes'], 'object_detection', 'bounding boxes belong to object-detection models');
    only(['prompt', 'response', 'tokenCounts'], 'generative', 'prompts, responses and token counts belong to generative models');
    only(['thresholdScores'], 'multiclass', 'threshold scores belong to multiclass models');
    if (type === 'object_detection') {
      if (s.predictionLabel || s.predictionScore || s.actualLabel || s.actualScore) {
        ctx.addIssue({ code: 'custom', path: ['schema'], message: 'an object-detection model maps its predictions and actuals as predictionBoxes and actualBoxes, not labels or scores' });
      }
    }
    if (type === 'generative' && predicts) {
      need('prompt', 'required for a generative model (the prompt text, optionally its vector)');
      need('response', 'required for a generative model (the response text, optionally its vector)');
    }
    if (s.thresholdScores && !s.predictionScore) need('predictionScore', 'thresholdScores needs the class scores they apply to');
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
          ssl: tls.optional().describe('TLS to the server (also sslmode= in the URL)'),
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
        pollInterval: duration('10s').describe('How often each prefix is listed while nothing arrives'),
        activePollInterval: duration('1s').describe(
          'After a poll finds new or changed objects the next one comes this soon, and every poll that finds nothing doubles the wait, up to pollInterval: files arriving in a stream are found within about this, an idle prefix is listed every pollInterval as before. Equal to pollInterval (or more) turns it off; query sources (jobs[].source.sql) poll on their refreshInterval only',
        ),
        partitionHorizon: duration('0s').describe(
          'Date partition folders (<partitionKey>=YYYY-MM-DD/) whose day ended longer ago than this are left out of polls and listed only by the full listing every fullListInterval, so a file landing in one is imported within that interval; 0 = every poll lists the whole prefix',
        ),
        partitionKey: partitionKey.default('dt').describe('Name of the date partition folders partitionHorizon looks for (<name>=2024-01-31/, also 20240131 or with a time after the date)'),
        fullListInterval: duration('1h').describe('How often a job with a partitionHorizon lists its whole prefix, old partitions included'),
        maxFileBytes: size('1GiB').describe('Largest file imported; larger ones fail with IMP_ERR_SOURCE_TOO_LARGE'),
        maxDecompressedBytes: sizeValue.optional().describe('Largest size a .gz file may expand to (a gzip bomb fails with IMP_ERR_SOURCE_TOO_LARGE instead of filling the disk); default 10 × the job\'s maxFileBytes'),
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
        maxTempBytes: size('16GiB').describe("Most disk DuckDB may use for spilling (its max_temp_directory_size): an import that needs more fails (and is retried) instead of filling the disk"),
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
  jobs: cfg.jobs.map((job) => {
    const pollInterval = job.pollInterval ?? (typeof job.source === 'string' ? cfg.defaults.pollInterval : job.source.sql.refreshInterval);
    return {
      ...job,
      pollInterval,
      // Never longer than the job's pollInterval; a query source keeps its refreshInterval unless told.
      activePollInterval: Math.min(job.activePollInterval ?? (typeof job.source === 'string' ? cfg.defaults.activePollInterval : pollInterval), pollInterval),
      partitionHorizon: job.partitionHorizon ?? cfg.defaults.partitionHorizon,
      partitionKey: job.partitionKey ?? cfg.defaults.partitionKey,
      fullListInterval: job.fullListInterval ?? cfg.defaults.fullListInterval,
      maxFileBytes: job.maxFileBytes ?? cfg.defaults.maxFileBytes,
      maxDecompressedBytes: job.maxDecompressedBytes ?? cfg.defaults.maxDecompressedBytes ?? 10 * (job.maxFileBytes ?? cfg.defaults.maxFileBytes),
    };
  }),
}));

export type Config = z.output<typeof resolvedConfigSchema>;
export type JobConfig = Config['jobs'][number];
export type FieldMapping = JobConfig['schema'];
