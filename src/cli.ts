import { Command, Option } from 'commander';
import { DuckDBInstance } from '@duckdb/node-api';
import { DEFAULT_CONFIG_PATH, loadConfig, type Config } from './config/index.ts';
import { startDaemon, type Roles } from './daemon.ts';
import { describeError, ImporterError } from './errors.ts';
import { jobQueueStates, pauseJob, resumeJob, setAllPaused } from './queue/control.ts';
import { connectRedis, ImportQueues } from './queue/queues.ts';
import { redisAddress } from './queue/redis-health.ts';
import { createS3Clients } from './source/index.ts';
import { ApiClient } from './admin/client.ts';
import { checkSelect } from './schema/select.ts';
import { formatTable } from './util/table.ts';
import { dryRun, formatDryRun } from './worker/dry-run.ts';
import { createLogger, secretValues } from './log.ts';

const configOption = () => new Option('-c, --config <path>', 'config file').env('IMPORTER_CONFIG').default(DEFAULT_CONFIG_PATH);

async function load(path: string): Promise<Readonly<Config>> {
  try {
    return await loadConfig(path);
  } catch (err) {
    fail(err);
  }
}

function fail(err: unknown): never {
  const e = describeError(err);
  process.stderr.write(`${e.code}: ${e.message}\n`);
  process.exit(err instanceof ImporterError && err.code.startsWith('IMP_ERR_CONFIG') ? 2 : 1);
}

async function runRoles(configPath: string, roles: Roles): Promise<void> {
  const config = await load(configPath);
  if (config.store.kind === 'duckdb' && !(roles.scheduler && roles.worker)) {
    fail(new ImporterError('IMP_ERR_STORE_ROLE', 'the embedded DuckDB store allows one writer process: run `inference-importer run`, or use store.kind: postgres to split scheduler and workers', { permanent: true }));
  }
  const log = createLogger(config.log.level, undefined, secretValues(config));
  // Node prints process warnings (deprecations, the AWS SDK's Node version notice) as plain stderr text; the log stays JSON.
  process.removeAllListeners('warning');
  process.on('warning', (w) => log.warn({ warning: w.name }, w.message));
  // Handlers go in before the start: a signal that arrives while the daemon is still starting (its HTTP
  // server may already answer) is acted on once it has started, not met by Node's default of dying at once.
  let daemon: Awaited<ReturnType<typeof startDaemon>> | undefined;
  let signalled: string | undefined;
  const onSignal = (signal: string) => {
    if (daemon) return shutdown(signal);
    if (signalled) return;
    signalled = signal;
    log.info({ signal }, 'signal received while starting: stopping once started');
    // Starting may wait for an unreachable store (no import runs before it opens): then exit soon.
    const waitMs = Math.min(5000, config.worker.shutdownTimeout);
    setTimeout(() => {
      log.warn({ waitMs }, 'still starting (waiting for the store?); exiting without a clean stop (the next start recovers)');
      process.exit(0);
    }, waitMs).unref();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  try {
    daemon = await startDaemon(config, { roles, log, configPath });
  } catch (err) {
    const e = describeError(err);
    log.fatal({ code: e.code }, e.message);
    process.exit(1);
  }
  const started = daemon;
  const shutdown = (signal: string) => {
    log.info({ signal }, 'signal received');
    // The stop bounds every step by worker.shutdownTimeout; this is the backstop should anything still hang.
    setTimeout(() => {
      log.error({ timeoutMs: config.worker.shutdownTimeout }, 'shutdown did not finish within worker.shutdownTimeout; exiting anyway (the next start recovers)');
      process.exit(1);
    }, config.worker.shutdownTimeout + 1000).unref();
    started
      .stop()
      .then(() => process.exit(0))
      .catch((err) => {
        log.error({ err: describeError(err) }, 'shutdown failed');
        process.exit(1);
      });
  };
  // SIGHUP re-reads the config (as nginx and Prometheus do); without a listener Node would exit on it.
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'signal received: reloading the config');
    void started.reload('SIGHUP');
  });
  if (signalled) shutdown(signalled);
}

const program = new Command('inference-importer')
  .description('Imports ML inference data (predictions and delayed actuals) from S3 into an inference store')
  // `jobs --config X` and `jobs pause ID --config X` both work: options bind to the command they follow.
  .enablePositionalOptions();

program.command('run').description('scheduler, workers and HTTP in one process (the single-node default)').addOption(configOption())
  .action((o: { config: string }) => runRoles(o.config, { scheduler: true, worker: true, http: true }));
program.command('scheduler').description('only poll and enqueue (needs store.kind: postgres)').addOption(configOption())
  .action((o: { config: string }) => runRoles(o.config, { scheduler: true, worker: false, http: true }));
program.command('worker').description('only import queued files (needs store.kind: postgres)').addOption(configOption())
  .action((o: { config: string }) => runRoles(o.config, { scheduler: false, worker: true, http: true }));

program.command('dry-run').description('check access, schema and every row of one file of a job; writes nothing; exit 1 when it would not import cleanly')
  .requiredOption('--job <id>', 'job ID').option('--file <key>', 'object key (default: the first importable file)').option('--json', 'JSON report')
  .addOption(configOption())
  .action(async (o: { config: string; job: string; file?: string; json?: boolean }) => {
    const config = await load(o.config);
    const job = config.jobs.find((j) => j.id === o.job);
    if (!job) fail(new ImporterError('IMP_ERR_CONFIG_INVALID', `no job "${o.job}" in the config; jobs: ${config.jobs.map((j) => j.id).join(', ')}`));
    const report = await dryRun(config, job, createS3Clients(config), { key: o.file });
    process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatDryRun(report));
    process.exit(report.status === 'ok' ? 0 : 1);
  });

const configCmd = program.command('config').description('configuration tools');
configCmd.command('check').description('validate the config and print every problem with its key path').addOption(configOption())
  .option('--dry-run', 'also dry-run the first file of every job')
  .action(async (o: { config: string; dryRun?: boolean }) => {
    const config = await load(o.config);
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    try {
      for (const job of config.jobs) await checkSelect(async (sql) => (await conn.runAndReadAll(sql)).getRowObjectsJson() as Array<Record<string, unknown>>, job);
    } catch (err) {
      fail(err);
    } finally {
      conn.closeSync();
      db.closeSync();
    }
    process.stdout.write(`${o.config}: ok (${config.jobs.length} job${config.jobs.length > 1 ? 's' : ''}: ${config.jobs.map((j) => j.id).join(', ')})\n`);
    if (!o.dryRun) return;
    const s3 = createS3Clients(config);
    let clean = true;
    for (const job of config.jobs) {
      const report = await dryRun(config, job, s3);
      process.stdout.write(formatDryRun(report));
      // An empty prefix is the normal state right after deploying (actuals come later): a note, not a failure.
      clean &&= report.status === 'ok' || report.status === 'empty';
    }
    process.exit(clean ? 0 : 1);
  });

/** How long a CLI command waits for Redis before it gives up and says so. */
const CLI_REDIS_TIMEOUT_MS = 5000;

/** Runs a command that needs only Redis (never the store, which a running daemon holds); gives up naming Redis when it does not answer. */
async function withQueues(configPath: string, fn: (config: Readonly<Config>, queues: ImportQueues) => Promise<void>): Promise<void> {
  const config = await load(configPath);
  const redis = connectRedis(config.redis.url, 'inference-importer-cli');
  let lastError = '';
  redis.on('error', (err: Error) => (lastError = err.message));
  const queues = new ImportQueues(config, redis);
  const noAnswer = (phase: string) => new ImporterError(
    'IMP_ERR_REDIS_UNAVAILABLE',
    `Redis at ${redisAddress(config.redis.url)} (redis.url) did not answer within ${CLI_REDIS_TIMEOUT_MS / 1000} s ${phase}${lastError ? ` (${lastError})` : ''}; is it running and reachable from here?`,
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = (phase: string) => new Promise<never>((_, reject) => (timer = setTimeout(() => reject(noAnswer(phase)), CLI_REDIS_TIMEOUT_MS)));
  try {
    await Promise.race([redis.ping(), deadline('to PING')]);
    clearTimeout(timer);
    await Promise.race([fn(config, queues), deadline('to the command')]);
    clearTimeout(timer);
  } catch (err) {
    clearTimeout(timer);
    // A queue's close waits for Redis too; the error is what matters now.
    await Promise.race([queues.close().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 500))]);
    redis.disconnect();
    fail(err);
  }
  await queues.close();
  await redis.quit();
}

const urlOption = () => new Option('--url <url>', "the daemon's HTTP address (default http://127.0.0.1:<http.port>)");

/** Runs a command against the running daemon's API. */
async function withApi(o: { config: string; url?: string }, fn: (api: ApiClient, config: Readonly<Config>) => Promise<void>): Promise<void> {
  const config = await load(o.config);
  try {
    await fn(new ApiClient(config, o.url), config);
  } catch (err) {
    fail(err);
  }
}

/** An unknown job is a config error (exit 2) for every command, checked here before the daemon is asked. */
function requireJob(config: Readonly<Config>, id: string): void {
  if (!config.jobs.some((j) => j.id === id)) fail(new ImporterError('IMP_ERR_CONFIG_INVALID', `no job "${id}" in the config; jobs: ${config.jobs.map((j) => j.id).join(', ')}`));
}

const print = (json: boolean | undefined, value: unknown, text: () => string) => process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : text());

interface JobView {
  id: string; state: string; source: string; format: string; model: { id: string; environment: string };
  lastPoll: { at: string; outcome: string; error?: string } | null;
  files: Record<string, number>; rows: { loaded: number; rejected: number }; queue: Record<string, number>;
}

const jobsCmd = program.command('jobs').description('list jobs: state, last poll, files by status, rows (from the running daemon; queue state only when it is down)')
  .enablePositionalOptions().addOption(configOption()).addOption(urlOption()).option('--json', 'JSON output')
  .action(async (o: { config: string; url?: string; json?: boolean }) => {
    const config = await load(o.config);
    let jobs: JobView[] | undefined;
    try {
      jobs = (await new ApiClient(config, o.url).call<{ jobs: JobView[] }>('GET', '/api/jobs')).jobs;
    } catch (err) {
      // The daemon answered that Redis is away: asking Redis from here would only wait for the same answer.
      if (err instanceof ImporterError && err.code === 'IMP_ERR_REDIS_UNAVAILABLE') fail(err);
      // The daemon is down: what Redis knows (state and queue) still helps.
    }
    if (jobs) {
      print(o.json, jobs, () => formatTable(
        ['JOB', 'STATE', 'LAST POLL', 'PENDING', 'SUCCEEDED', 'PARTIAL', 'FAILED', 'ROWS', 'REJECTED'],
        jobs!.map((j) => [j.id, j.state, j.lastPoll ? `${j.lastPoll.at.slice(0, 19)}Z ${j.lastPoll.outcome}` : 'never', j.files.pending, j.files.succeeded, j.files.partially_succeeded, j.files.failed, j.rows.loaded, j.rows.rejected]),
      ));
      return;
    }
    await withQueues(o.config, async (cfg, queues) => {
      const states = await jobQueueStates(cfg, queues);
      print(o.json, states, () => formatTable(['JOB', 'STATE', 'WAITING', 'ACTIVE', 'DELAYED', 'FAILED'], states.map((s) => [s.id, s.state, s.waiting, s.active, s.delayed, s.failed])));
    });
  });
jobsCmd.command('status <id>').description('one job in detail').addOption(configOption()).addOption(urlOption()).option('--json', 'JSON output')
  .action((id: string, o: { config: string; url?: string; json?: boolean }) =>
    withApi(o, async (api, config) => {
      requireJob(config, id);
      const j = await api.call<JobView>('GET', `/api/jobs/${encodeURIComponent(id)}`);
      print(o.json, j, () => [
        `job ${j.id}: ${j.state}`,
        `  source   ${j.source} (${j.format})`,
        `  model    ${j.model.id} / ${j.model.environment}`,
        `  polled   ${j.lastPoll ? `${j.lastPoll.at} ${j.lastPoll.outcome}${j.lastPoll.error ? `: ${j.lastPoll.error}` : ''}` : 'never'}`,
        `  files    ${Object.entries(j.files).map(([k, v]) => `${k} ${v}`).join(', ')}`,
        `  rows     loaded ${j.rows.loaded}, rejected ${j.rows.rejected}`,
        `  queue    ${Object.entries(j.queue).map(([k, v]) => `${k} ${v}`).join(', ')}`,
        '',
      ].join('\n'));
    }),
  );
for (const [name, paused] of [['pause', true], ['resume', false]] as const) {
  jobsCmd.command(`${name} <id>`).description(`${name} one job's polling and imports`).addOption(configOption())
    .action((id: string, o: { config: string }) =>
      withQueues(o.config, async (config, queues) => {
        await (paused ? pauseJob : resumeJob)(config, queues, id);
        process.stdout.write(`job ${id} ${paused ? 'paused' : 'resumed'}\n`);
      }),
    );
}
interface FileView {
  key: string; etag: string; status: string; attempts: number; rowsRead: number | null; predictionsLoaded: number | null; actualsLoaded: number | null;
  rowsRejected: number | null; errorCode: string | null; errorMessage: string | null; finishedAt: string | null;
  firstErrors: Array<{ code: string; message: string; row: number | null; column: string | null }>;
}

program.command('files <id>').description("a job's files, newest first, with their status and first errors").addOption(configOption()).addOption(urlOption())
  .option('--failed', 'only failed files').option('--status <status>', 'only files in this status').option('--limit <n>', 'how many', '50').option('--json', 'JSON output')
  .action((id: string, o: { config: string; url?: string; failed?: boolean; status?: string; limit: string; json?: boolean }) =>
    withApi(o, async (api, config) => {
      requireJob(config, id);
      const status = o.failed ? 'failed' : o.status;
      const page = await api.call<{ total: number; files: FileView[] }>('GET', `/api/jobs/${encodeURIComponent(id)}/files?limit=${encodeURIComponent(o.limit)}${status ? `&status=${encodeURIComponent(status)}` : ''}`);
      print(o.json, page, () => {
        const table = formatTable(
          ['KEY', 'STATUS', 'ATTEMPTS', 'ROWS', 'LOADED', 'REJECTED', 'ERROR'],
          page.files.map((f) => [f.key, f.status, f.attempts, f.rowsRead, (f.predictionsLoaded ?? 0) + (f.actualsLoaded ?? 0), f.rowsRejected, f.errorCode]),
        );
        const details = page.files.filter((f) => f.errorMessage).map((f) => f.errorMessage).join('\n');
        return `${table}${details ? `\n${details}\n` : ''}(${page.files.length} of ${page.total})\n`;
      });
    }),
  );
program.command('retry <id>').description('import the failed files of a job again').addOption(configOption()).addOption(urlOption())
  .option('--failed', 'the failed files (the default, and the only choice: `reimport --all` takes every file)')
  .action((id: string, o: { config: string; url?: string }) =>
    withApi(o, async (api, config) => {
      requireJob(config, id);
      const r = await api.call<{ retried: string[] }>('POST', `/api/jobs/${encodeURIComponent(id)}/retry`);
      process.stdout.write(`${r.retried.length} failed file${r.retried.length === 1 ? '' : 's'} queued again${r.retried.length ? `: ${r.retried.join(', ')}` : ''}\n`);
    }),
  );
program.command('reimport <id> [key]').description('import one file (or --all files, e.g. after a schema change) again, replacing what it contributed').addOption(configOption()).addOption(urlOption())
  .option('--all', "every file of the job: files keep the mapping they were imported with until re-imported")
  .action((id: string, key: string | undefined, o: { config: string; url?: string; all?: boolean }) =>
    withApi(o, async (api, config) => {
      requireJob(config, id);
      if (!!key === !!o.all) throw new ImporterError('IMP_ERR_HTTP_BAD_REQUEST', 'give either a file key or --all');
      if (o.all) {
        const r = await api.call<{ reimported: string[] }>('POST', `/api/jobs/${encodeURIComponent(id)}/reimport`, { all: true });
        process.stdout.write(`${r.reimported.length} file${r.reimported.length === 1 ? '' : 's'} queued for re-import\n`);
        return;
      }
      const r = await api.call<{ key: string; etag: string }>('POST', `/api/jobs/${encodeURIComponent(id)}/reimport`, { key });
      process.stdout.write(`${r.key} (etag ${r.etag}) queued for re-import\n`);
    }),
  );
jobsCmd.command('delete <id>').description("delete the rows and ledger of a job already removed from the config (the config is where jobs are defined)")
  .option('--purge', 'required: says you mean to delete its data').addOption(configOption()).addOption(urlOption())
  .action((id: string, o: { config: string; url?: string; purge?: boolean }) =>
    withApi(o, async (api) => {
      const r = await api.call<{ purged: { files: number; predictions: number; actuals: number } }>('DELETE', `/api/jobs/${encodeURIComponent(id)}?purge=${o.purge ? 'true' : 'false'}`);
      process.stdout.write(`job ${id} purged: ${r.purged.files} ledger rows, ${r.purged.predictions} predictions, ${r.purged.actuals} actuals deleted\n`);
    }),
  );
program.command('reload').description('make the running daemon re-read its config file (like SIGHUP)').addOption(configOption()).addOption(urlOption())
  .action((o: { config: string; url?: string }) =>
    withApi(o, async (api) => {
      const r = await api.call<{ outcome: string; added?: string[]; removed?: string[]; changed?: string[]; needsRestart?: string[] }>('POST', '/api/config/reload');
      process.stdout.write(`${r.outcome}: added ${r.added?.join(', ') || 'none'}; removed ${r.removed?.join(', ') || 'none'}; changed ${r.changed?.join(', ') || 'none'}${r.needsRestart?.length ? `; needs a restart: ${r.needsRestart.join(', ')}` : ''}\n`);
    }),
  );

const queueCmd = program.command('queue').description('every job at once');
for (const [name, paused] of [['pause', true], ['resume', false]] as const) {
  queueCmd.command(name).description(`${name} every job`).addOption(configOption())
    .action((o: { config: string }) =>
      withQueues(o.config, async (config, queues) => {
        await setAllPaused(config, queues, paused);
        process.stdout.write(`${config.jobs.length} job${config.jobs.length > 1 ? 's' : ''} ${paused ? 'paused' : 'resumed'}\n`);
      }),
    );
}

// A bare `inference-importer` prints the commands (the README says so); `run` starts the daemon.
if (process.argv.length <= 2) {
  program.outputHelp();
  process.exit(0);
}
await program.parseAsync(process.argv);
