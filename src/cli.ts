import { Command, Option } from 'commander';
import { DuckDBInstance } from '@duckdb/node-api';
import { DEFAULT_CONFIG_PATH, loadConfig, type Config } from './config/index.ts';
import { startDaemon, type Roles } from './daemon.ts';
import { describeError, ImporterError } from './errors.ts';
import { jobQueueStates, pauseJob, resumeJob, setAllPaused } from './queue/control.ts';
import { connectRedis, ImportQueues } from './queue/queues.ts';
import { createS3Client } from './source/index.ts';
import { checkSelect } from './schema/select.ts';
import { dryRun, formatDryRun } from './worker/dry-run.ts';
import { createLogger } from './log.ts';

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
  const log = createLogger(config.log.level);
  let daemon;
  try {
    daemon = await startDaemon(config, { roles, log });
  } catch (err) {
    const e = describeError(err);
    log.fatal({ code: e.code }, e.message);
    process.exit(1);
  }
  const shutdown = (signal: string) => {
    log.info({ signal }, 'signal received');
    daemon
      .stop()
      .then(() => process.exit(0))
      .catch((err) => {
        log.error({ err: describeError(err) }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
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
    const report = await dryRun(config, job, createS3Client(config.s3), { key: o.file });
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
    const s3 = createS3Client(config.s3);
    let clean = true;
    for (const job of config.jobs) {
      const report = await dryRun(config, job, s3);
      process.stdout.write(formatDryRun(report));
      clean &&= report.status === 'ok';
    }
    process.exit(clean ? 0 : 1);
  });

/** Runs a command that needs only Redis (never the store, which a running daemon holds). */
async function withQueues(configPath: string, fn: (config: Readonly<Config>, queues: ImportQueues) => Promise<void>): Promise<void> {
  const config = await load(configPath);
  const redis = connectRedis(config.redis.url, 'inference-importer-cli');
  redis.on('error', () => undefined);
  const queues = new ImportQueues(config, redis);
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => setTimeout(() => reject(new ImporterError('IMP_ERR_INTERNAL', `Redis does not answer at the configured redis.url within 5 s; is it running?`)), 5000)),
    ]);
    await fn(config, queues);
  } catch (err) {
    await queues.close().catch(() => undefined);
    redis.disconnect();
    fail(err);
  }
  await queues.close();
  await redis.quit();
}

const jobsCmd = program.command('jobs').description('list jobs with their queue state').enablePositionalOptions().addOption(configOption()).option('--json', 'JSON output')
  .action((o: { config: string; json?: boolean }) =>
    withQueues(o.config, async (config, queues) => {
      const states = await jobQueueStates(config, queues);
      if (o.json) process.stdout.write(`${JSON.stringify(states, null, 2)}\n`);
      else {
        const rows = [['JOB', 'STATE', 'WAITING', 'ACTIVE', 'DELAYED', 'FAILED'], ...states.map((s) => [s.id, s.state, s.waiting, s.active, s.delayed, s.failed].map(String))];
        const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
        process.stdout.write(rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n');
      }
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

await program.parseAsync(process.argv);
