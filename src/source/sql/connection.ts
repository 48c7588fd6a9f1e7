import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { JobConfig, SqlSource } from '../../config/index.ts';
import { ImporterError } from '../../errors.ts';
import { RedshiftLogins } from './iam.ts';

/** A job whose source is a query. */
export type SqlJob = JobConfig & { source: { sql: SqlSource } };

export const isSqlJob = (job: JobConfig): job is SqlJob => typeof job.source !== 'string';

/** The S3 location of a job that reads files (callers have ruled out a query source). */
export function s3Location(job: JobConfig): string {
  if (typeof job.source !== 'string') throw new ImporterError('IMP_ERR_INTERNAL', `job ${job.id} reads a query, not an S3 location`);
  return job.source;
}

/** Which wire-protocol dialect a URL names: PostgreSQL streams `COPY … TO STDOUT`; Redshift has no COPY to the client, so rows come by a server-side cursor. */
export type Dialect = 'postgres' | 'redshift';

interface ParsedUrl {
  dialect: Dialect;
  /** The URL pg is given: postgres://, without our own parameters. */
  pgUrl: string;
  host: string;
  port: number;
  user: string;
  database: string;
  iam: boolean;
  /** TLS asked for by the URL (`sslmode`), or by default for redshift://. */
  sslDefault: boolean;
}

function parseUrl(url: string): ParsedUrl {
  const dialect: Dialect = url.startsWith('redshift://') ? 'redshift' : 'postgres';
  const u = new URL(url.replace(/^(redshift|postgresql):\/\//, 'postgres://'));
  const iam = /^(true|1)$/i.test(u.searchParams.get('iam') ?? '');
  u.searchParams.delete('iam');
  if (dialect === 'redshift' && !u.port) u.port = '5439';
  const sslmode = u.searchParams.get('sslmode');
  return {
    dialect, pgUrl: u.toString(), host: u.hostname, port: Number(u.port || 5432), user: decodeURIComponent(u.username),
    database: decodeURIComponent(u.pathname.slice(1)) || (dialect === 'redshift' ? 'dev' : decodeURIComponent(u.username)), iam,
    sslDefault: sslmode ? sslmode !== 'disable' : dialect === 'redshift',
  };
}

/** The source as operators read it, with no credentials: `postgres://host:5432/db: SELECT …`. */
export function describeSql(source: SqlSource): string {
  let where: string;
  try {
    const p = parseUrl(source.url);
    where = `${p.dialect}://${p.host}:${p.port}/${p.database}`;
  } catch {
    where = source.url.split('://')[0];
  }
  const query = source.query.replace(/\s+/g, ' ').trim();
  return `${where}: ${query.length > 80 ? `${query.slice(0, 79)}…` : query}`;
}

/** What the logs and pages say a job reads from (never a password). */
export function sourceLabel(job: JobConfig): string {
  return typeof job.source === 'string' ? job.source : `sql ${describeSql(job.source.sql)}`;
}

/** The dialect of a job's warehouse. */
export const dialectOf = (source: SqlSource): Dialect => parseUrl(source.url).dialect;

const logins = new RedshiftLogins();

/** A connected session on the job's warehouse, with the settings every query relies on. */
export interface Warehouse {
  client: pg.Client;
  dialect: Dialect;
  /** host:port/database, for messages. */
  where: string;
  close(): Promise<void>;
}

/**
 * Opens a session on the job's warehouse: TLS as the URL and `ssl` say, the IAM login when asked
 * for, then UTC, ISO dates and the statement timeout. Failing to connect or log in is
 * IMP_ERR_SOURCE_UNREACHABLE (retried); nothing is logged with a password.
 */
export async function connectWarehouse(job: SqlJob, defaultRegion: string): Promise<Warehouse> {
  const source = job.source.sql;
  const p = parseUrl(source.url);
  const where = `${p.host}:${p.port}/${p.database}`;
  let client: pg.Client | undefined;
  try {
    const iam = p.iam || source.iam !== undefined;
    const login = iam ? await logins.login({ host: p.host, user: p.user, database: p.database, iam: source.iam ?? {}, defaultRegion }) : undefined;
    const ssl = source.ssl
      ? { ca: source.ssl.ca ? readFileSync(source.ssl.ca, 'utf8') : undefined, rejectUnauthorized: source.ssl.rejectUnauthorized }
      : p.sslDefault ? { rejectUnauthorized: true } : undefined;
    // pg takes the URL's user and password over separate ones: the IAM login goes into the URL.
    const url = new URL(p.pgUrl);
    if (login) [url.username, url.password] = [encodeURIComponent(login.user), encodeURIComponent(login.password)];
    client = new pg.Client({
      connectionString: url.toString(),
      ...(ssl ? { ssl } : {}),
      connectionTimeoutMillis: 15_000,
      application_name: `inference-importer ${job.id}`,
    });
    // A session the server drops between queries must not crash the process.
    client.on('error', () => undefined);
    await client.connect();
    await client.query(`SET statement_timeout = ${Math.round(source.statementTimeout)}`);
    await client.query("SET TimeZone = 'UTC'");
    await client.query("SET DateStyle = 'ISO, YMD'");
    await client.query('SET extra_float_digits = 3');
  } catch (err) {
    await client?.end().catch(() => undefined);
    throw warehouseError(job, `cannot open a session on ${where}`, err);
  }
  const c = client;
  return { client: c, dialect: p.dialect, where, close: () => c.end().catch(() => undefined) };
}

/** SQLSTATE classes that say the session or the server, not the query, is the trouble: retried. */
const TRANSIENT_CLASSES = new Set(['08', '53', '57', '58', '40', '28', 'XX']);

/**
 * The error of a warehouse call, named for the operator with the job and what was being done: the
 * database's own message and SQLSTATE for a query it refused (IMP_ERR_SOURCE_QUERY, permanent:
 * the same query fails the same way), IMP_ERR_SOURCE_UNREACHABLE for anything about the connection.
 */
export function warehouseError(job: JobConfig, what: string, err: unknown): ImporterError {
  if (err instanceof ImporterError) return err;
  const e = err as { code?: string; message?: string; position?: string; hint?: string };
  const sqlstate = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  const message = e.message ?? String(err);
  if (sqlstate && !TRANSIENT_CLASSES.has(sqlstate.slice(0, 2)) && sqlstate !== '57014') {
    return new ImporterError('IMP_ERR_SOURCE_QUERY', `job ${job.id}: ${what}: the database refused the query: ${message} (SQLSTATE ${sqlstate})${e.hint ? `; hint: ${e.hint}` : ''}; fix jobs[].source.sql.query`, { permanent: true, cause: err });
  }
  return new ImporterError('IMP_ERR_SOURCE_UNREACHABLE', `job ${job.id}: ${what}: ${message}${sqlstate ? ` (SQLSTATE ${sqlstate})` : ''}; retried with backoff`, { cause: err });
}
