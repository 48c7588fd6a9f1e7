import { setMaxListeners } from 'node:events';
import { createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, type ListObjectsV2CommandOutput, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { Config } from '../config/index.ts';
import { ImporterError } from '../errors.ts';
import type { SkippedRange } from './partitions.ts';
import type { ListedObject } from './types.ts';

/**
 * The settings of an S3 client: the default AWS credential chain (or the given credentials, e.g. an
 * assumed role's), optional custom endpoint, checksums only where S3 requires them.
 */
export function s3ClientConfig(s3: Pick<Config['s3'], 'region' | 'endpoint' | 'forcePathStyle' | 'maxAttempts'>, credentials?: S3ClientConfig['credentials']): S3ClientConfig {
  return {
    ...(credentials ? { credentials } : {}),
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: s3.forcePathStyle,
    maxAttempts: s3.maxAttempts,
    // S3-compatible stores (and the SDK's own streamed uploads to them) mishandle the newer default checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

/** Builds an S3 client from {@link s3ClientConfig}. */
export function createS3Client(s3: Pick<Config['s3'], 'region' | 'endpoint' | 'forcePathStyle' | 'maxAttempts'>, credentials?: S3ClientConfig['credentials']): S3Client {
  return new S3Client(s3ClientConfig(s3, credentials));
}

/** `s3://bucket/prefix/` → its parts. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!m) throw new ImporterError('IMP_ERR_CONFIG_INVALID', `not an s3:// URL: ${url}`, { permanent: true });
  return { bucket: m[1], prefix: m[2] };
}

/**
 * True for objects that are never data: folder markers, empty objects, and Hadoop/Spark side files
 * (`_SUCCESS`, `_temporary/`, `.crc`), i.e. any path part under the prefix starting with `_` or `.`.
 */
export function isSideFile(prefix: string, key: string, size: number): boolean {
  if (size === 0 || key.endsWith('/')) return true;
  return key
    .slice(prefix.length)
    .split('/')
    .some((part) => part.startsWith('_') || part.startsWith('.'));
}

const unquote = (etag: string | undefined) => (etag ?? '').replace(/^"|"$/g, '');

/** What the AWS SDK's default credential chain looks at, in its order, for the message when it finds nothing. */
function credentialChainTried(): string {
  const profile = process.env.AWS_PROFILE || 'default';
  return [
    'environment (AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY: not set)',
    `shared files (profile "${profile}" in ${process.env.AWS_SHARED_CREDENTIALS_FILE || '~/.aws/credentials'} and ${process.env.AWS_CONFIG_FILE || '~/.aws/config'}: none usable)`,
    `web identity / IRSA (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN: ${process.env.AWS_WEB_IDENTITY_TOKEN_FILE ? 'set, but no credentials came of it' : 'not set'})`,
    `container endpoint (AWS_CONTAINER_CREDENTIALS_*: ${process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI || process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI ? 'set, but it gave none' : 'not set'})`,
    `instance metadata (IMDS${process.env.AWS_EC2_METADATA_DISABLED === 'true' ? ': disabled by AWS_EC2_METADATA_DISABLED' : ': no answer'})`,
  ].join(', ');
}

function accessError(what: string, err: unknown): ImporterError {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name === 'CredentialsProviderError' || /Could not load credentials/i.test(e.message ?? '')) {
    return new ImporterError('IMP_ERR_SOURCE_ACCESS', `${what}: no AWS credentials: the default credential chain tried ${credentialChainTried()}; give the importer credentials in one of these ways (on Kubernetes: IRSA)`, {
      cause: err,
    });
  }
  const status = e.$metadata?.httpStatusCode;
  const hint =
    e.name === 'AssumeRoleRefused' ? 'the job\'s other files wait until the role can be assumed' : status === 403 ? 'check the credentials and the bucket policy' : status === 404 ? 'check the bucket name and region' : 'check s3.endpoint and the network';
  return new ImporterError('IMP_ERR_SOURCE_ACCESS', `${what}: ${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}; ${hint}`, {
    cause: err,
  });
}

/** How to list a prefix. */
export interface ListOptions {
  /**
   * The keys of an earlier listing of the same prefix, in listing order. Given enough of them, the
   * key space is cut into ranges at some of these keys and the ranges are listed in parallel.
   */
  previousKeys?: readonly string[];
  /** Parallel LIST requests at most. @defaultValue 1 */
  concurrency?: number;
  /** Called once per LIST request sent (for metrics and benchmarks). */
  onRequest?: () => void;
  /**
   * Key ranges (in S3's order, from an earlier full listing) to leave out: only the keys before,
   * between and after them are listed, those stretches in parallel. Keys inside them are not returned.
   */
  skip?: readonly SkippedRange[];
}

/** Keys per ListObjectsV2 page (S3's maximum). */
const PAGE_SIZE = 1000;

/**
 * Lists every object under the prefix, all pages, no delimiter (recursive). A large prefix is listed
 * as parallel key ranges (StartAfter one split key, stopping past the next), the split keys taken
 * from the previous listing: unlike splitting by "folders" with a delimiter this needs no knowledge
 * of the layout, works on stores whose delimiter listings are incomplete, and keeps the ranges even.
 */
export async function listObjects(client: S3Client, bucket: string, prefix: string, options: ListOptions = {}): Promise<ListedObject[]> {
  if (options.skip?.length) return listAround(client, bucket, prefix, options.skip, options);
  const known = options.previousKeys ?? [];
  const parts = Math.min(options.concurrency ?? 1, Math.floor(known.length / PAGE_SIZE));
  if (parts < 2) return listRange(client, bucket, prefix, undefined, undefined, options.onRequest);
  const splits = [...new Set(Array.from({ length: parts - 1 }, (_, i) => known[Math.floor(((i + 1) * known.length) / parts)]))];
  const ranges = await Promise.all(
    [undefined, ...splits].map((after, i) => listRange(client, bucket, prefix, after, splits[i] === undefined ? undefined : { key: splits[i], inclusive: true }, options.onRequest)),
  );
  return ranges.flat();
}

/** The stretches of the key space outside `skip`, listed `options.concurrency` at a time, in order. */
async function listAround(client: S3Client, bucket: string, prefix: string, skip: readonly SkippedRange[], options: ListOptions): Promise<ListedObject[]> {
  const stretches = [undefined, ...skip].map((s, i) => ({ after: s?.last, until: skip[i] ? { key: skip[i].first, inclusive: false } : undefined }));
  const out: ListedObject[][] = [];
  let next = 0;
  const lister = async () => {
    for (let i = next++; i < stretches.length; i = next++) out[i] = await listRange(client, bucket, prefix, stretches[i].after, stretches[i].until, options.onRequest);
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 1, stretches.length) }, lister));
  return out.flat();
}

/** S3 orders keys by their UTF-8 bytes, which JavaScript's string comparison does not always match. */
const utf8Compare = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Lists the keys after `after` (exclusive) up to `until`; either end may be open. */
async function listRange(
  client: S3Client, bucket: string, prefix: string, after: string | undefined, until: { key: string; inclusive: boolean } | undefined, onRequest?: () => void,
): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  let token: string | undefined;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      onRequest?.();
      page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, StartAfter: token ? undefined : after }));
    } catch (err) {
      throw accessError(`cannot list s3://${bucket}/${prefix}`, err);
    }
    for (const o of page.Contents ?? []) {
      if (!o.Key) continue;
      if (until && utf8Compare(o.Key, until.key) >= (until.inclusive ? 1 : 0)) return out;
      out.push({ bucket, key: o.Key, etag: unquote(o.ETag), size: Number(o.Size ?? 0), lastModified: o.LastModified ?? new Date(0) });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** What a job's source names: a folder (every object under `prefix`, which ends with `/` unless it is the whole bucket) or one object (exactly the key `prefix`). */
export interface SourceTarget {
  bucket: string;
  prefix: string;
  kind: 'folder' | 'object';
}

/** A source's target and what it holds now. */
export interface SourceListing {
  target: SourceTarget;
  objects: ListedObject[];
}

/** The target as an operator reads it, e.g. `folder s3://b/p/` or `object s3://b/p/x.parquet`. */
export const describeTarget = (t: SourceTarget) => `${t.kind} s3://${t.bucket}/${t.prefix}`;

/**
 * Lists what a source names, never a raw string prefix: `s3://b/predictions` must not read
 * `predictions-archive/`. A source ending in `/` (or the bare bucket) is a folder. Without the slash
 * it is the folder `predictions/` when that holds anything, else the object whose key is exactly
 * `predictions` when there is one (a HEAD: a LIST would return the neighbours too, and some
 * S3-compatible stores do not sort the key before the keys it prefixes), else the empty folder `predictions/`.
 */
export async function listSource(client: S3Client, url: string, options: ListOptions = {}): Promise<SourceListing> {
  const { bucket, prefix } = parseS3Url(url);
  if (prefix === '' || prefix.endsWith('/')) return { target: { bucket, prefix, kind: 'folder' }, objects: await listObjects(client, bucket, prefix, options) };
  const folder: SourceTarget = { bucket, prefix: `${prefix}/`, kind: 'folder' };
  const objects = await listObjects(client, bucket, folder.prefix, options);
  // Skipped ranges come from a listing of the folder that held objects.
  if (objects.length > 0 || options.skip?.length) return { target: folder, objects };
  let head: { ETag?: string; ContentLength?: number; LastModified?: Date };
  try {
    head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: prefix }));
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return { target: folder, objects: [] };
    throw accessError(`cannot read s3://${bucket}/${prefix}`, err);
  }
  return {
    target: { bucket, prefix, kind: 'object' },
    objects: [{ bucket, key: prefix, etag: unquote(head.ETag), size: Number(head.ContentLength ?? 0), lastModified: head.LastModified ?? new Date(0) }],
  };
}

/** The `s3://bucket/key` an operator knows an object by, for messages. */
export const objectUri = (object: Pick<ListedObject, 'bucket' | 'key'>) => `s3://${object.bucket}/${object.key}`;

/** How a download ended when it did not produce a file. */
export type DownloadOutcome = { kind: 'downloaded'; bytes: number } | { kind: 'superseded' } | { kind: 'vanished' };

/** How a large object is fetched: in byte ranges of `partBytes`, `concurrency` of them at a time. */
export interface DownloadParts {
  /** Objects up to this size are fetched in one GET; 0 always fetches in one GET. */
  partBytes: number;
  concurrency: number;
}

/** The download settings of `s3` in the config (AWS's guidance for ranged GETs is 8–16 MB a part). */
export const downloadParts = (config: Pick<Config, 's3'>): DownloadParts => ({ partBytes: config.s3.downloadPartSize, concurrency: config.s3.downloadConcurrency });

/** The endpoint answered a ranged GET with the whole object or with other bytes than asked (it does not support Range, or caps it). */
class RangeIgnored extends Error {}

/**
 * Downloads exactly the listed version (`If-Match` on its ETag) to `path`. A rewrite since the
 * listing answers 412 (superseded), a delete 404 (vanished); neither is an error of the file.
 * Objects larger than one part are fetched in byte ranges, several at a time, each written at its
 * offset: one HTTP stream is limited by one connection's throughput (on S3 roughly 100 MB/s) and,
 * here, by the SDK's per-chunk work on one socket.
 */
export async function downloadObject(client: S3Client, object: ListedObject, path: string, maxBytes: number, parts: DownloadParts): Promise<DownloadOutcome> {
  const uri = objectUri(object);
  if (parts.partBytes > 0 && object.size > parts.partBytes && object.size <= maxBytes) {
    try {
      return await downloadRanges(client, object, path, parts);
    } catch (err) {
      await rm(path, { force: true });
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416) return rangeRefused(client, object, err);
      if (!(err instanceof RangeIgnored)) return downloadFailure(uri, err);
      // An S3-compatible store without Range support: fetch the object in one GET below.
    }
  }
  let body: Readable;
  try {
    const res = await client.send(new GetObjectCommand({ Bucket: object.bucket, Key: object.key, IfMatch: `"${object.etag}"` }));
    // If-Match pins the version; the answer's own ETag guards stores that ignore If-Match (the ranged path checks the size).
    if (res.ETag !== undefined && unquote(res.ETag) !== object.etag) {
      (res.Body as Readable | undefined)?.destroy();
      return { kind: 'superseded' };
    }
    const length = Number(res.ContentLength ?? 0);
    if (length > maxBytes) {
      (res.Body as Readable | undefined)?.destroy();
      throw tooLarge(uri, length, maxBytes);
    }
    body = res.Body as Readable;
  } catch (err) {
    return downloadFailure(uri, err);
  }
  let bytes = 0;
  body.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > maxBytes) body.destroy(tooLarge(uri, bytes, maxBytes));
  });
  try {
    await pipeline(body, createWriteStream(path));
  } catch (err) {
    await rm(path, { force: true });
    if (err instanceof ImporterError) throw err;
    throw accessError(`download of ${uri} broke off`, err);
  }
  return { kind: 'downloaded', bytes };
}

/** A failed GET: superseded (412) and vanished (404) are outcomes, anything else an error naming the object. */
function downloadFailure(uri: string, err: unknown): DownloadOutcome {
  if (err instanceof ImporterError) throw err;
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (e.$metadata?.httpStatusCode === 412 || e.name === 'PreconditionFailed') return { kind: 'superseded' };
  if (e.$metadata?.httpStatusCode === 404 || e.name === 'NoSuchKey') return { kind: 'vanished' };
  throw accessError(`cannot download ${uri}`, err);
}

/**
 * A range inside the listed size refused as not satisfiable (416): the object is shorter now, so it
 * changed since the listing (a store that ignores If-Match, or one caught mid-rewrite). A HEAD tells:
 * if the object still has the listed ETag, the endpoint's listing and its objects disagree, which no
 * retry (and no re-listing) mends, so that is a permanent error rather than a version to re-import.
 */
async function rangeRefused(client: S3Client, object: ListedObject, err: unknown): Promise<DownloadOutcome> {
  const uri = objectUri(object);
  let head;
  try {
    head = await client.send(new HeadObjectCommand({ Bucket: object.bucket, Key: object.key, IfMatch: `"${object.etag}"` }));
  } catch (headErr) {
    return downloadFailure(uri, headErr);
  }
  if (unquote(head.ETag) !== object.etag) return { kind: 'superseded' };
  throw new ImporterError(
    'IMP_ERR_SOURCE_ACCESS',
    `${uri} was listed with ${object.size} bytes and still has ETag ${object.etag} (${head.ContentLength ?? '?'} bytes), but a byte range inside that size was refused (HTTP 416); the endpoint's listing and its objects disagree: check the S3-compatible store, or set s3.downloadPartSize to 0 for one GET per object`,
    { location: { file: uri }, permanent: true, cause: err },
  );
}

/** The listed version in ranges of `parts.partBytes`; the first failing part aborts the others. */
async function downloadRanges(client: S3Client, object: ListedObject, path: string, parts: DownloadParts): Promise<DownloadOutcome> {
  const uri = objectUri(object);
  const abort = new AbortController();
  // Every range in flight listens on this one signal (up to 64 with s3.downloadConcurrency); it lives for one download, so no leak to warn of.
  setMaxListeners(0, abort.signal);
  const file = await open(path, 'w');
  let next = 0;
  const fetchParts = async () => {
    while (next < object.size && !abort.signal.aborted) {
      const start = next;
      const end = Math.min(object.size, start + parts.partBytes) - 1;
      next = end + 1;
      const res = await client.send(
        new GetObjectCommand({ Bucket: object.bucket, Key: object.key, IfMatch: `"${object.etag}"`, Range: `bytes=${start}-${end}` }),
        { abortSignal: abort.signal },
      );
      const body = res.Body as Readable;
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.ContentRange ?? '');
      // If-Match pins the version; a different total guards stores that ignore If-Match.
      if (range && range[3] !== '*' && Number(range[3]) !== object.size) {
        body.destroy();
        throw Object.assign(new Error(`${uri} is ${range[3]} bytes now, ${object.size} when listed`), { name: 'PreconditionFailed' });
      }
      // No range, or not the one asked for (a store that caps or ignores ranges): one plain GET instead.
      if (!range || Number(range[1]) !== start || Number(range[2]) !== end) {
        body.destroy();
        throw new RangeIgnored();
      }
      let position = start;
      try {
        for await (const chunk of body) {
          const buffer = chunk as Buffer;
          // A short write (a full disk) must not leave a hole in the file.
          for (let done = 0; done < buffer.length; ) done += (await file.write(buffer, done, buffer.length - done, position + done)).bytesWritten;
          position += buffer.length;
        }
      } catch (err) {
        throw accessError(`download of ${uri} broke off`, err);
      }
      if (position !== end + 1) throw accessError(`download of ${uri} broke off`, new Error(`bytes ${start}-${end} ended at ${position}`));
    }
  };
  let failure: { err: unknown } | undefined;
  const fetchers = Array.from({ length: Math.min(parts.concurrency, Math.ceil(object.size / parts.partBytes)) }, () =>
    fetchParts().catch((err) => {
      failure ??= { err };
      abort.abort();
    }),
  );
  // Every part has stopped writing before the file is closed (the others end with the abort).
  await Promise.all(fetchers);
  await file.close();
  if (failure) throw failure.err;
  return { kind: 'downloaded', bytes: object.size };
}

export function tooLarge(uri: string, size: number, max: number): ImporterError {
  return new ImporterError('IMP_ERR_SOURCE_TOO_LARGE', `${uri} is ${size} bytes, above maxFileBytes ${max}; raise maxFileBytes for this job or split the file`, {
    location: { file: uri },
    permanent: true,
  });
}
