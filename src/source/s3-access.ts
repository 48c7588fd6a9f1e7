import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import type { Config, JobConfig } from '../config/index.ts';
import { createS3Client, parseS3Url, s3ClientConfig } from './s3.ts';

/** Everything that decides which S3 client a request needs: region, endpoint and identity. */
export interface S3Access {
  region: string;
  endpoint?: string;
  forcePathStyle: boolean;
  maxAttempts: number;
  /** Role assumed through STS, with the credential chain's identity as the caller. */
  roleArn?: string;
  externalId?: string;
  sessionName: string;
  stsEndpoint?: string;
}

/** The S3 access of a job: each key it sets under `jobs[].s3`, the top-level `s3` for the rest. */
export function jobAccess(config: Pick<Config, 's3'>, job: Pick<JobConfig, 's3'>): S3Access {
  const top = config.s3;
  const own = job.s3 ?? {};
  return {
    region: own.region ?? top.region,
    endpoint: own.endpoint ?? top.endpoint,
    forcePathStyle: own.forcePathStyle ?? top.forcePathStyle,
    maxAttempts: top.maxAttempts,
    roleArn: own.roleArn ?? top.roleArn,
    externalId: own.externalId ?? top.externalId,
    sessionName: own.sessionName ?? top.sessionName,
    stsEndpoint: own.stsEndpoint ?? top.stsEndpoint,
  };
}

/** STS refused to hand out the role's credentials (trust policy, external ID, or the caller's own permissions). */
export class AssumeRoleRefused extends Error {
  override name = 'AssumeRoleRefused';
}

/**
 * Credentials of `access.roleArn` from STS AssumeRole (with the external ID). The S3 client
 * memoizes them and calls AssumeRole again once they are within five minutes of expiring.
 */
export function assumeRoleCredentials(access: S3Access): S3ClientConfig['credentials'] {
  const roleArn = access.roleArn!;
  const provider = fromTemporaryCredentials({
    params: { RoleArn: roleArn, ExternalId: access.externalId, RoleSessionName: access.sessionName },
    clientConfig: { region: access.region, endpoint: access.stsEndpoint, maxAttempts: access.maxAttempts },
  });
  return async () => {
    try {
      return await provider();
    } catch (err) {
      const e = err as { name?: string; message?: string };
      throw new AssumeRoleRefused(
        `sts:AssumeRole of ${roleArn}${access.externalId ? ' (with external ID)' : ''} failed: ${e.name ?? 'Error'}: ${e.message ?? String(err)}; ` +
          "check the role's trust policy (principal and sts:ExternalId condition) and that the daemon's own identity may call sts:AssumeRole on it",
        { cause: err },
      );
    }
  };
}

/** One client for one access. */
export function clientFor(access: S3Access): S3Client {
  return createS3Client(access, access.roleArn ? assumeRoleCredentials(access) : undefined);
}

/**
 * An S3 client that sends each request with the client of the job whose source holds the
 * request's bucket and key (or listing prefix), the longest source prefix winning, and anything
 * else with the top-level `s3` access. Jobs with the same access share one client (one STS
 * session). Code that lists and downloads stays unaware of identities.
 */
class RoutingS3Client extends S3Client {
  constructor(
    top: S3Access,
    private readonly routes: { bucket: string; prefix: string; client: S3Client }[],
    private readonly clients: S3Client[],
    private readonly onAttempts?: AttemptsObserver,
  ) {
    super(s3ClientConfig(top, top.roleArn ? assumeRoleCredentials(top) : undefined));
  }

  private pick(input: { Bucket?: string; Key?: string; Prefix?: string } | undefined): S3Client | undefined {
    if (!input?.Bucket) return undefined;
    const key = input.Key ?? input.Prefix ?? '';
    return this.routes.find((r) => r.bucket === input.Bucket && key.startsWith(r.prefix))?.client;
  }

  override send(...args: any[]): any {
    const client = this.pick(args[0]?.input);
    const sent = client ? (client.send as (...a: any[]) => any)(...args) : (super.send as (...a: any[]) => any)(...args);
    if (!this.onAttempts || !(sent instanceof Promise)) return sent;
    // The SDK retries inside send (s3.maxAttempts); only $metadata.attempts, on the answer or the final error, tells.
    const operation = String(args[0]?.constructor?.name ?? 'Unknown').replace(/Command$/, '');
    const observe = (r: unknown) => this.onAttempts!(operation, Number((r as { $metadata?: { attempts?: number } } | undefined)?.$metadata?.attempts ?? 1));
    return sent.then((out: unknown) => (observe(out), out), (err: unknown) => {
      observe(err);
      throw err;
    });
  }

  override destroy(): void {
    for (const c of this.clients) c.destroy();
    super.destroy();
  }
}

/** Told, after each S3 request, how many attempts the SDK made (1 when it was not retried). */
export type AttemptsObserver = (operation: string, attempts: number) => void;

/** The S3 client of a daemon or command: per-job accesses routed by source, the top-level one for the rest. */
export function createS3Clients(config: Pick<Config, 's3' | 'jobs'>, onAttempts?: AttemptsObserver): S3Client {
  const top = jobAccess(config, {});
  const byAccess = new Map<string, S3Client>();
  const routes: { bucket: string; prefix: string; client: S3Client }[] = [];
  for (const job of config.jobs) {
    if (!job.s3 || typeof job.source !== 'string') continue;
    const access = jobAccess(config, job);
    const id = JSON.stringify(access);
    if (id === JSON.stringify(top)) continue;
    let client = byAccess.get(id);
    if (!client) byAccess.set(id, (client = clientFor(access)));
    routes.push({ ...parseS3Url(job.source), client });
  }
  routes.sort((a, b) => b.prefix.length - a.prefix.length);
  return new RoutingS3Client(top, routes, [...byAccess.values()], onAttempts);
}
