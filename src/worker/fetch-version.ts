import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Config, JobConfig } from '../config/index.ts';
import type { RunQuery } from '../engine/index.ts';
import { extensionOf, isDeltaKey, resolveFormat, type LocalFile, type SourceRelation } from '../formats/index.ts';
import { applySelect, jobRelation } from '../schema/select.ts';
import { downloadObject, downloadParts, objectUri, tooLarge, type ListedObject } from '../source/index.ts';
import { gunzipBounded } from './decompress.ts';
import { deltaSource } from './delta-import.ts';

/** A listed version, downloaded and opened as a relation of the engine. */
export interface FetchedVersion {
  kind: 'fetched';
  file: LocalFile;
  source: SourceRelation;
  /** The format it was read as. */
  format: string;
  /** Bytes downloaded (0 for a Delta table, whose files are counted by their own downloads). */
  bytes: number;
  /**
   * Imported in a transaction of its own: a Delta table version replaces all the table's rows and
   * can be large, so it is never grouped with other files.
   */
  alone: boolean;
}

/**
 * Downloads exactly the listed version into `dir` and opens it with its format's reader and the
 * job's `select`. The one place that knows a listed entry may be a Delta table (a folder whose
 * "ETag" is its log version, see `eligibleObjects`) rather than a file: its log is replayed with
 * `run` and only the files of that snapshot are fetched. `superseded` / `vanished` when the file
 * changed or went away after it was listed.
 */
export async function fetchVersion(
  s3: S3Client,
  config: Readonly<Config>,
  job: JobConfig,
  version: ListedObject,
  dir: string,
  run: RunQuery,
  track: <T>(download: () => Promise<T>) => Promise<T> = (d) => d(),
): Promise<FetchedVersion | { kind: 'superseded' | 'vanished' }> {
  const maxBytes = job.maxFileBytes;
  if (isDeltaKey(version.key)) {
    const source = applySelect(job, await deltaSource(s3, run, version, dir, maxBytes, downloadParts(config)));
    return { kind: 'fetched', file: { path: dir, key: version.key }, source, format: 'delta', bytes: 0, alone: true };
  }
  const format = resolveFormat(job.format, version.key); // an unknown extension fails before the download
  if (version.size > maxBytes) throw tooLarge(objectUri(version), version.size, maxBytes);
  const file = { path: join(dir, `file${extensionOf(version.key)}`), key: version.key };
  const downloaded = await track(() => downloadObject(s3, version, file.path, maxBytes, downloadParts(config)));
  if (downloaded.kind !== 'downloaded') return { kind: downloaded.kind };
  if (/\.gz$/i.test(file.path) && (format === 'csv' || format === 'json')) {
    const plain = file.path.slice(0, -'.gz'.length);
    await gunzipBounded(file.path, plain, job.maxDecompressedBytes, objectUri(version));
    file.path = plain;
  }
  return { kind: 'fetched', file, source: await jobRelation(job, file, run), format, bytes: downloaded.bytes, alone: false };
}
