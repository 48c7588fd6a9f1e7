import type { SqlSource } from '../../config/index.ts';
import { ImporterError } from '../../errors.ts';

/** A temporary database login from Redshift IAM. */
export interface IamLogin {
  user: string;
  password: string;
  expires: Date;
}

/** The temporary password is renewed this long before it expires, so no connection starts with a dying one. */
const RENEW_BEFORE_MS = 5 * 60_000;

/** What a connection needs to ask for a login: the URL's parts and the job's `iam` block. */
export interface IamTarget {
  host: string;
  user: string;
  database: string;
  iam: NonNullable<SqlSource['iam']> | Record<string, never>;
  /** Region when neither `iam.region` nor the host names one. */
  defaultRegion: string;
}

/** `cluster.abc123.us-east-1.redshift.amazonaws.com` / `wg.123456789012.us-east-1.redshift-serverless.amazonaws.com` → its region. */
const regionOfHost = (host: string) => /\.([a-z]{2}(?:-gov)?-[a-z]+-\d)\.redshift(?:-serverless)?\.amazonaws\.com$/.exec(host)?.[1];

/**
 * Redshift IAM logins, cached per target and renewed before they expire: GetClusterCredentials
 * for a provisioned cluster (the user is created when `autoCreate`), GetCredentials of Redshift
 * Serverless for a workgroup. Both use the AWS SDK's default credential chain (IRSA, instance role).
 */
export class RedshiftLogins {
  private readonly cache = new Map<string, Promise<IamLogin>>();

  async login(t: IamTarget): Promise<IamLogin> {
    const id = JSON.stringify(t);
    const cached = this.cache.get(id);
    if (cached) {
      const login = await cached.catch(() => undefined);
      if (login && login.expires.getTime() - Date.now() > RENEW_BEFORE_MS) return login;
    }
    const fresh = fetchLogin(t);
    this.cache.set(id, fresh);
    fresh.catch(() => this.cache.delete(id));
    return fresh;
  }
}

async function fetchLogin(t: IamTarget): Promise<IamLogin> {
  const iam = t.iam as Partial<NonNullable<SqlSource['iam']>>;
  const region = iam.region ?? regionOfHost(t.host) ?? t.defaultRegion;
  const durationSeconds = iam.durationSeconds ?? 900;
  const what = iam.workgroupName ? `Redshift Serverless GetCredentials for workgroup ${iam.workgroupName}` : `Redshift GetClusterCredentials for cluster ${iam.clusterIdentifier ?? t.host.split('.')[0]}`;
  try {
    // Loaded only by jobs that use IAM: every process imports this module, few need the Redshift SDKs.
    if (iam.workgroupName) {
      const { GetCredentialsCommand, RedshiftServerlessClient } = await import('@aws-sdk/client-redshift-serverless');
      const client = new RedshiftServerlessClient({ region, endpoint: iam.endpoint });
      try {
        const out = await client.send(new GetCredentialsCommand({ workgroupName: iam.workgroupName, dbName: t.database, durationSeconds }));
        return checked({ user: out.dbUser, password: out.dbPassword, expires: out.expiration }, what);
      } finally {
        client.destroy();
      }
    }
    const { GetClusterCredentialsCommand, RedshiftClient } = await import('@aws-sdk/client-redshift');
    const client = new RedshiftClient({ region, endpoint: iam.endpoint });
    try {
      const out = await client.send(new GetClusterCredentialsCommand({
        ClusterIdentifier: iam.clusterIdentifier ?? t.host.split('.')[0],
        DbUser: iam.dbUser ?? t.user,
        DbName: t.database,
        DurationSeconds: durationSeconds,
        AutoCreate: iam.autoCreate ?? false,
      }));
      return checked({ user: out.DbUser, password: out.DbPassword, expires: out.Expiration }, what);
    } finally {
      client.destroy();
    }
  } catch (err) {
    if (err instanceof ImporterError) throw err;
    const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode;
    // Refused (4xx) is for an operator to mend; anything else (network, 5xx) is retried.
    throw new ImporterError('IMP_ERR_SOURCE_ACCESS', `${what} failed: ${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}; check the role's redshift:GetClusterCredentials / redshift-serverless:GetCredentials rights`, { cause: err });
  }
}

function checked(login: { user?: string; password?: string; expires?: Date }, what: string): IamLogin {
  if (!login.user || !login.password) throw new ImporterError('IMP_ERR_SOURCE_ACCESS', `${what} answered without a user and password`);
  return { user: login.user, password: login.password, expires: login.expires ?? new Date(Date.now() + 15 * 60_000) };
}
