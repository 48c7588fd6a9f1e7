import crypto from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpDir } from './tmp.ts';

// s3rver ships no type declarations; describe the little we use.
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: http.Server;
}
type S3rverCtor = new (opts: {
  port: number;
  address: string;
  silent: boolean;
  directory: string;
  configureBuckets?: { name: string }[];
}) => S3rverInstance;
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverCtor;

/** Options for {@link startS3}. */
export interface S3HarnessOptions {
  /** Buckets to create before the server starts accepting requests. */
  buckets?: string[];
}

/**
 * A fault to inject at the proxy. It applies to the next `times` requests
 * that match `method` and `keyIncludes` (both optional; rules are checked in
 * registration order and the first match wins).
 */
export interface FaultRule {
  /** HTTP method to match, e.g. 'GET', 'PUT' (case-insensitive). */
  method?: string;
  /**
   * Substring of the decoded object key (the path after the bucket). Bucket
   * level requests such as ListObjectsV2 have the key '', so only rules
   * without `keyIncludes` (or with `keyIncludes: ''`) match them.
   */
  keyIncludes?: string;
  /**
   * Status to answer with instead of forwarding: 503 → SlowDown,
   * 403 → AccessDenied, 404 → NoSuchKey, 416 → InvalidRange, other 5xx → InternalError. If omitted,
   * the request is only delayed by `delayMs` and then forwarded.
   */
  status?: number;
  /** How many matching requests this rule still applies to. */
  times: number;
  /** Wait this long before answering (or forwarding). */
  delayMs?: number;
  /** Let this many matching requests through untouched first (e.g. the pages of a poll before the next poll's). */
  after?: number;
  /** Hold the request until this settles (then apply the rest of the rule): a hold the test releases, whatever the machine's load. */
  until?: Promise<unknown>;
  /** Answer a GET with the whole object (200), as a store without Range support does. */
  ignoreRange?: boolean;
  /** Answer a GET with this range of the object (`bytes=0-9`) whatever it asked for, as a store that caps ranges does. */
  answerRange?: string;
  /** Serve a GET or HEAD whatever its `If-Match` says, as a store without conditional reads does. */
  ignoreIfMatch?: boolean;
  /**
   * Match only ListObjectsV2 requests; `keyIncludes` is then matched against the listing's `prefix`
   * (so one job's listings can be targeted while another job lists on).
   */
  list?: boolean;
  /** Substring of the raw query string, e.g. `continuation-token` for the pages after the first. */
  queryIncludes?: string;
  /** Drop the connection without an answer (a connection reset). */
  reset?: boolean;
  /** Answer a GET with its status and full `Content-Length`, send half the body, then drop the connection. */
  truncate?: boolean;
}

/** One request as seen by the proxy. */
export interface LoggedRequest {
  method: string;
  /** Decoded path, e.g. `/bucket/a/b/c/file.csv`. */
  path: string;
  /** Query parameters, e.g. `{ 'list-type': '2', prefix: 'a/' }`. */
  query: Record<string, string>;
  /** The session token the request was signed with (`x-amz-security-token`), for temporary credentials. */
  securityToken?: string;
  /** The `If-Match` header as sent, when there was one. */
  ifMatch?: string;
  /** The `Range` header as sent, when there was one. */
  range?: string;
}

/** An object as returned by {@link S3Harness.list}. */
export interface ListedObject {
  key: string;
  /** ETag without surrounding quotes. */
  etag: string;
  size: number;
}

/** A running s3rver with a fault-injecting proxy in front of it. */
export interface S3Harness {
  /** Proxy URL (`http://127.0.0.1:PORT`): point code under test here. */
  endpoint: string;
  /** s3rver's own URL, bypassing If-Match emulation, faults and the log. */
  directEndpoint: string;
  /** Path-style client for {@link endpoint} with the s3rver credentials. */
  client: S3Client;
  /** Fault rules applied by the proxy. */
  faults: {
    add(rule: FaultRule): void;
    clear(): void;
    /** Rules that still have `times` left. */
    readonly pending: readonly FaultRule[];
  };
  /** Every request that reached the proxy, in arrival order. */
  readonly requestLog: readonly LoggedRequest[];
  clearLog(): void;
  // The helpers below talk to s3rver directly, so test setup neither consumes
  // faults nor shows up in requestLog.
  createBucket(name: string): Promise<void>;
  /** Uploads `body` and returns its ETag without quotes. */
  put(bucket: string, key: string, body: Buffer | string | Uint8Array): Promise<string>;
  /** Uploads a local file and returns its ETag without quotes. */
  putFile(bucket: string, key: string, localPath: string): Promise<string>;
  del(bucket: string, key: string): Promise<void>;
  /** Uploads `parts` as one multipart upload; returns the ETag without quotes. */
  putMultipart(bucket: string, key: string, parts: Buffer[]): Promise<string>;
  /** Sets an object's LastModified (s3rver takes it from its file's mtime), e.g. to a multipart upload's start. */
  setLastModified(bucket: string, key: string, at: Date): Promise<void>;
  /**
   * Keys per ListObjectsV2 page the proxy asks s3rver for (the listing is then forwarded unsigned,
   * with `max-keys` replaced), to get many pages out of few objects; undefined leaves requests as sent.
   */
  listPageSize: number | undefined;
  /** Lists all objects under `prefix`, following every page. */
  list(bucket: string, prefix?: string): Promise<ListedObject[]>;
  /** Stops proxy and s3rver and deletes the data directory. */
  stop(): Promise<void>;
}

/** s3rver's fixed credentials, as the daemon (which uses the default AWS credential chain) reads them. */
export function useS3rverCredentials(): void {
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  process.env.AWS_REGION = 'us-east-1';
}

/** Builds a path-style S3 client for s3rver's fixed credentials. */
export function makeClient(endpoint: string, maxAttempts?: number): S3Client {
  return new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    // s3rver predates the SDK's default CRC32 checksums; keep requests plain.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts,
  });
}

/**
 * Starts s3rver in-process on a fresh temp directory and an HTTP proxy in
 * front of it. The proxy exists because s3rver ignores `If-Match` on GET (real
 * S3 answers 412) and because tests need to inject faults and count requests.
 *
 * Requires `node --openssl-legacy-provider`: s3rver encrypts ListObjectsV2
 * continuation tokens with DES.
 */
export async function startS3(opts: S3HarnessOptions = {}): Promise<S3Harness> {
  assertDesAvailable();
  const dir = await tmpDir('s3rver-');
  const s3rver = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory: dir.path,
    configureBuckets: (opts.buckets ?? []).map((name) => ({ name })),
  });
  const { port: s3Port } = await s3rver.run();
  const directEndpoint = `http://127.0.0.1:${s3Port}`;

  let rules: FaultRule[] = [];
  let log: LoggedRequest[] = [];
  const agent = new http.Agent({ keepAlive: true });

  let listPageSize: number | undefined;
  const takeFault = (method: string, key: string, url: URL): FaultRule | undefined => {
    const isList = method === 'GET' && key === '' && url.searchParams.get('list-type') === '2';
    const rule = rules.find(
      (r) =>
        r.times > 0 &&
        (r.method === undefined || r.method.toUpperCase() === method) &&
        (r.list === undefined || r.list === isList) &&
        (r.keyIncludes === undefined || (r.list ? url.searchParams.get('prefix') ?? '' : key).includes(r.keyIncludes)) &&
        (r.queryIncludes === undefined || url.search.includes(r.queryIncludes)),
    );
    if (rule?.after) {
      rule.after--;
      return undefined;
    }
    if (rule) rule.times--;
    rules = rules.filter((r) => r.times > 0);
    return rule;
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://proxy');
    const path = safeDecode(url.pathname);
    const key = path.split('/').slice(2).join('/'); // path is /bucket/key...
    const sent = (name: string, as: string) => (typeof req.headers[name] === 'string' ? { [as]: req.headers[name] as string } : {});
    log.push({ method, path, query: Object.fromEntries(url.searchParams), ...sent('x-amz-security-token', 'securityToken'), ...sent('if-match', 'ifMatch'), ...sent('range', 'range') });

    const fault = takeFault(method, key, url);
    if (fault?.delayMs) await sleep(fault.delayMs);
    if (fault?.until) await fault.until.catch(() => undefined);
    if (fault?.reset) {
      req.resume();
      req.socket.destroy();
      return;
    }
    if (fault?.status !== undefined) {
      const [code, message] = errorFor(fault.status);
      return sendError(req, res, fault.status, code, message);
    }

    const ifMatch = req.headers['if-match'];
    if ((method === 'GET' || method === 'HEAD') && key && ifMatch && !fault?.ignoreIfMatch) {
      const etag = await headEtag(s3Port, url.pathname);
      // A missing object falls through: s3rver answers 404 NoSuchKey itself.
      if (etag !== undefined && !etagMatches(ifMatch, etag)) {
        return sendError(
          req,
          res,
          412,
          'PreconditionFailed',
          'At least one of the pre-conditions you specified did not hold',
          '<Condition>If-Match</Condition>',
        );
      }
    }
    // The Range header is signed, so it cannot be dropped on the way: fetch the whole object anonymously.
    if ((fault?.ignoreRange || fault?.answerRange) && method === 'GET') {
      return forward(req, res, s3Port, agent, { path: url.pathname, headers: fault.answerRange ? { range: fault.answerRange } : {} });
    }
    // max-keys is signed too: a listing with another page size goes unsigned.
    if (listPageSize !== undefined && method === 'GET' && key === '' && url.searchParams.get('list-type') === '2') {
      const query = new URLSearchParams(url.searchParams);
      query.set('max-keys', String(listPageSize));
      return forward(req, res, s3Port, agent, { path: `${url.pathname}?${query}`, headers: {} });
    }
    forward(req, res, s3Port, agent, undefined, fault?.truncate && method === 'GET');
  };

  const proxy = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`s3 test proxy: ${String(err)}`);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

  const client = makeClient(endpoint);
  const direct = makeClient(directEndpoint);

  const put = async (bucket: string, key: string, body: Buffer | string | Uint8Array) => {
    // Always a Buffer: streamed bodies get aws-chunked framing, which s3rver
    // stores verbatim, corrupting the object.
    const out = await direct.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from(body) }),
    );
    return unquote(out.ETag ?? '');
  };

  return {
    endpoint,
    directEndpoint,
    client,
    faults: {
      add: (rule) => void rules.push({ ...rule }),
      clear: () => void (rules = []),
      get pending() {
        return rules;
      },
    },
    get requestLog() {
      return log;
    },
    clearLog: () => void (log = []),
    async createBucket(name) {
      await direct.send(new CreateBucketCommand({ Bucket: name }));
    },
    put,
    putFile: async (bucket, key, localPath) => put(bucket, key, await readFile(localPath)),
    async del(bucket, key) {
      await direct.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
    async putMultipart(bucket, key, parts) {
      const { UploadId } = await direct.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
      const done = [];
      for (const [i, body] of parts.entries()) {
        const { ETag } = await direct.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: i + 1, Body: body }));
        done.push({ ETag, PartNumber: i + 1 });
      }
      const out = await direct.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: done } }));
      return unquote(out.ETag ?? '');
    },
    async setLastModified(bucket, key, at) {
      const parts = key.split('/');
      await utimes(join(dir.path, bucket, ...parts.slice(0, -1), `${parts.at(-1)}._S3rver_object`), at, at);
    },
    get listPageSize() {
      return listPageSize;
    },
    set listPageSize(n) {
      listPageSize = n;
    },
    async list(bucket, prefix) {
      const objects: ListedObject[] = [];
      let token: string | undefined;
      do {
        const page = await direct.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const o of page.Contents ?? []) {
          objects.push({ key: o.Key ?? '', etag: unquote(o.ETag ?? ''), size: o.Size ?? 0 });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return objects;
    },
    async stop() {
      client.destroy();
      direct.destroy();
      // Drop keep-alive sockets so close() does not wait for them to time out.
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      agent.destroy();
      s3rver.httpServer?.closeAllConnections();
      await s3rver.close().catch(() => {}); // rejects with "Not running" on a second stop()
      await dir.cleanup();
    },
  };
}

/** Streams the request to s3rver unchanged and the response back (with `truncate`, half the body and then a dropped connection). */
function forward(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  port: number,
  agent: http.Agent,
  replace?: { path: string; headers: http.OutgoingHttpHeaders },
  truncate = false,
): void {
  // Headers go through untouched (Host included): they are covered by the
  // client's SigV4 signature, which s3rver verifies.
  const upstream = http.request(
    { host: '127.0.0.1', port, method: req.method, path: replace?.path ?? req.url, headers: replace?.headers ?? req.headers, agent },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      const length = Number(up.headers['content-length'] ?? 0);
      if (!truncate || length < 2) return void up.pipe(res);
      let sent = 0;
      up.on('data', (chunk: Buffer) => {
        if (sent >= length / 2) return;
        const part = chunk.subarray(0, Math.ceil(length / 2) - sent);
        sent += part.length;
        res.write(part);
        if (sent >= length / 2) {
          up.destroy();
          // Flushed, then cut: the client has the headers and half the body, and never the rest.
          res.socket?.end(() => res.socket?.destroy());
        }
      });
    },
  );
  upstream.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`s3 test proxy: ${String(err)}`);
  });
  req.pipe(upstream);
}

/** ETag of an object via an anonymous HEAD on s3rver, or undefined if missing. */
function headEtag(port: number, path: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const head = http.request({ host: '127.0.0.1', port, method: 'HEAD', path }, (res) => {
      res.resume();
      const etag = res.headers.etag;
      resolve(res.statusCode === 200 && etag ? etag : undefined);
    });
    head.on('error', reject);
    head.end();
  });
}

/** Answers with an S3-style XML error (no body for HEAD, like S3). */
function sendError(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  status: number,
  code: string,
  message: string,
  extra = '',
): void {
  req.resume(); // discard any request body
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<Error><Code>${code}</Code><Message>${message}</Message>${extra}</Error>`;
  res.writeHead(status, {
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** S3 error code and message for an injected status. */
function errorFor(status: number): [code: string, message: string] {
  if (status === 503) return ['SlowDown', 'Please reduce your request rate.'];
  if (status === 403) return ['AccessDenied', 'Access Denied'];
  if (status === 404) return ['NoSuchKey', 'The specified key does not exist.'];
  if (status === 416) return ['InvalidRange', 'The requested range is not satisfiable'];
  if (status >= 500) return ['InternalError', 'We encountered an internal error. Please try again.'];
  return ['InvalidRequest', 'Injected fault'];
}

/** If-Match may be `*` or a comma-separated list of (quoted) ETags. */
function etagMatches(ifMatch: string, etag: string): boolean {
  const wanted = unquote(etag);
  return ifMatch.split(',').some((t) => t.trim() === '*' || unquote(t) === wanted);
}

function unquote(etag: string): string {
  return etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Fails fast with a clear message instead of s3rver's 500s on the 2nd list page. */
function assertDesAvailable(): void {
  try {
    crypto.createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
  } catch {
    throw new Error(
      's3rver needs the DES cipher for ListObjectsV2 pagination: run node with --openssl-legacy-provider',
    );
  }
}
