import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateConfig } from '../src/config/index.ts';
import type { Daemon } from '../src/daemon.ts';
import { lastPolls } from '../src/queue/control.ts';
import { connectRedis } from '../src/queue/queues.ts';
import { BUCKET, counts, runDaemon, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';

/**
 * There is no real STS here: this small HTTP server answers STS's AssumeRole (the query protocol
 * the SDK speaks) the way STS does, and records what it was asked. The credentials it hands out are
 * s3rver's keys plus a session token per role, so the S3 request log shows which identity signed what.
 */
interface AssumeRoleCall {
  RoleArn: string;
  ExternalId?: string;
  RoleSessionName: string;
}

const READER = 'arn:aws:iam::111111111111:role/inference-reader';
const SHORT = 'arn:aws:iam::333333333333:role/short-lived';
const DENIED = 'arn:aws:iam::222222222222:role/not-trusted';
const EXTERNAL_ID = 'arize-ext-7f3a9c';

async function startFakeSts(): Promise<{ url: string; calls: AssumeRoleCall[]; stop(): Promise<void> }> {
  const calls: AssumeRoleCall[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const form = Object.fromEntries(new URLSearchParams(body)) as Record<string, string>;
      if (form.Action !== 'AssumeRole') {
        res.writeHead(400).end();
        return;
      }
      calls.push({ RoleArn: form.RoleArn, ExternalId: form.ExternalId, RoleSessionName: form.RoleSessionName });
      res.setHeader('content-type', 'text/xml');
      if (form.RoleArn === DENIED || (form.RoleArn === READER && form.ExternalId !== EXTERNAL_ID)) {
        res.writeHead(403).end(
          `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code>` +
            `<Message>User: arn:aws:sts::999999999999:assumed-role/importer/pod is not authorized to perform: sts:AssumeRole on resource: ${form.RoleArn}</Message>` +
            `</Error><RequestId>denied-1</RequestId></ErrorResponse>`,
        );
        return;
      }
      // The short-lived role's credentials are already inside the SDK's 5-minute refresh window.
      const expires = new Date(Date.now() + (form.RoleArn === SHORT ? 120_000 : 3_600_000)).toISOString();
      res.writeHead(200).end(
        `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>` +
          `<AccessKeyId>S3RVER</AccessKeyId><SecretAccessKey>S3RVER</SecretAccessKey><SessionToken>token-of-${form.RoleArn.split('/')[1]}</SessionToken>` +
          `<Expiration>${expires}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA:${form.RoleSessionName}</AssumedRoleId>` +
          `<Arn>${form.RoleArn}</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>ok-1</RequestId></ResponseMetadata></AssumeRoleResponse>`,
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const job = (id: string, s3?: Record<string, unknown>) => ({
  id, source: `s3://${BUCKET}/${id}/`, format: 'parquet', ...(s3 ? { s3 } : {}),
  model: { id, version: 'v1' }, schema: { predictionId: 'pid', predictionScore: 'score' },
});

describe('per-job AWS credentials', () => {
  let stack: Stack;
  let sts: Awaited<ReturnType<typeof startFakeSts>>;
  let daemon: Daemon | undefined;
  before(async () => {
    [stack, sts] = await Promise.all([startStack(), startFakeSts()]);
  });
  after(async () => {
    await daemon?.stop();
    await Promise.all([stack?.stop(), sts?.stop()]);
  });

  it('names the bad key of a role setting', () => {
    assert.throws(
      () => validateConfig({
        s3: { externalId: 'abc' },
        jobs: [
          { ...job('a', { roleArn: 'arn:aws:iam::12:role/x' }) },
          { ...job('b', { externalId: 'abc-ok' }) },
          { ...job('c', { roleArn: READER, externalId: 'has spaces' }) },
        ],
      }),
      {
        message: 'config has 4 errors:\n' +
          '  jobs[0].s3.roleArn: must be an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>\n' +
          '  jobs[2].s3.externalId: must be 2-1224 characters: letters, digits and _+=,.@:/-\n' +
          '  s3.externalId: is sent with AssumeRole: set s3.roleArn too\n' +
          '  jobs[1].s3.externalId: is sent with AssumeRole: set jobs[].s3.roleArn (or s3.roleArn) too',
      },
    );
  });

  it("signs each job's S3 calls with its assumed role, refreshes near expiry, and reports a refused AssumeRole on that job only", async () => {
    for (const id of ['plain', 'assumed', 'short', 'refused']) {
      const p = await writeFixture(join(stack.tmp.path, `${id}.parquet`), `SELECT '${id}-' || i AS pid, i / 4 AS score FROM range(0, 8) t(i)`, 'FORMAT parquet');
      await stack.s3.put(BUCKET, `${id}/part-0.parquet`, await readFile(p));
    }
    stack.s3.clearLog();
    const config = stack.config([
      job('plain'),
      job('assumed', { roleArn: READER, externalId: EXTERNAL_ID, stsEndpoint: sts.url }),
      job('short', { roleArn: SHORT, stsEndpoint: sts.url, sessionName: 'short-session' }),
      job('refused', { roleArn: DENIED, externalId: EXTERNAL_ID, stsEndpoint: sts.url }),
    ]);
    daemon = await runDaemon(config);
    const d = daemon;
    await waitFor('plain, assumed and short imported', async () => {
      const c = await Promise.all(['plain', 'assumed', 'short'].map((m) => counts(d, m)));
      return c.every((x) => x.p === 8);
    });
    const polls = await waitFor('a second poll of every job', async () => {
      const m = await d.metrics.registry.getSingleMetricAsString('importer_poll_errors_total');
      return /importer_poll_errors_total\{job="refused"\} [2-9]/.test(m) && stack.s3.requestLog.filter((r) => r.query.prefix === 'short/').length >= 2 && m;
    });
    // Every job's series starts at 0 (so alerts work from the start); only the refused job's moves.
    for (const job of ['plain', 'assumed', 'short']) assert.match(polls, new RegExp(`^importer_poll_errors_total\\{job="${job}"\\} 0$`, 'm'), `only the refused job has poll errors`);

    const byPrefix = (prefix: string) => stack.s3.requestLog.filter((r) => r.path.startsWith(`/${BUCKET}/${prefix}/`) || r.query.prefix === `${prefix}/`);
    assert.ok(byPrefix('assumed').length >= 3, 'listings and the download of the assumed job');
    assert.deepEqual([...new Set(byPrefix('assumed').map((r) => r.securityToken))], ['token-of-inference-reader']);
    assert.deepEqual([...new Set(byPrefix('short').map((r) => r.securityToken))], ['token-of-short-lived']);
    assert.deepEqual([...new Set(byPrefix('plain').map((r) => r.securityToken))], [undefined], 'the job without a role uses the credential chain');
    assert.equal(byPrefix('refused').length, 0, 'nothing is sent to S3 without the role');

    const of = (role: string) => sts.calls.filter((c) => c.RoleArn === role);
    assert.deepEqual(of(READER), [{ RoleArn: READER, ExternalId: EXTERNAL_ID, RoleSessionName: 'inference-importer' }], 'one AssumeRole, cached across requests and polls');
    assert.ok(of(SHORT).length >= 2, `credentials within the refresh window are renewed (${of(SHORT).length} AssumeRole calls)`);
    assert.deepEqual(of(SHORT)[0], { RoleArn: SHORT, ExternalId: undefined, RoleSessionName: 'short-session' });
    assert.ok(of(DENIED).length >= 1);
    assert.equal(of(DENIED)[0].ExternalId, EXTERNAL_ID);

    const redis = connectRedis(stack.redis.url, 'credentials-test');
    const status = (await lastPolls(redis, config).finally(() => redis.quit())).get('refused');
    assert.equal(status?.outcome, 'error');
    assert.equal(
      status?.error,
      `IMP_ERR_SOURCE_ACCESS: cannot list s3://${BUCKET}/refused/: AssumeRoleRefused: sts:AssumeRole of ${DENIED} (with external ID) failed: AccessDenied: ` +
        `User: arn:aws:sts::999999999999:assumed-role/importer/pod is not authorized to perform: sts:AssumeRole on resource: ${DENIED}; ` +
        "check the role's trust policy (principal and sts:ExternalId condition) and that the daemon's own identity may call sts:AssumeRole on it; " +
        "the job's other files wait until the role can be assumed",
    );
  });
});
