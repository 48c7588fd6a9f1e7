import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { Config, JobConfig } from '../config/index.ts';
import type { Engine } from '../engine/index.ts';
import type { Importer, ImportResult } from '../import/index.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { objectUri, tooLarge } from '../source/index.ts';
import { isSqlJob } from '../source/sql/index.ts';
import type { Store } from '../store/store.ts';
import type { DownloadTracker } from './download-tracker.ts';
import { fetchVersion } from './fetch-version.ts';
import { countImport } from './count-import.ts';
import { importWindow } from './import-window.ts';

export interface ImportDeps {
  config: Readonly<Config>;
  store: Store;
  /** The store-neutral import of downloaded files into `store`. */
  importer: Importer;
  /** A small private DuckDB for reading what a reader needs before the import (Delta logs and checkpoints). */
  readEngine: Engine;
  s3: S3Client;
  metrics: Metrics;
  log: Logger;
  /** Private temp folder of this process for downloads. */
  tmpDir: string;
  /** Downloads under way, so that files of a job downloaded together are imported together. */
  downloads?: DownloadTracker;
}

/**
 * The import of one file version: download exactly that version → read with DuckDB → map and
 * validate → load in one store transaction with its ledger row. Throws on anything retryable or
 * broken; the caller records the failure.
 */
export async function importFileVersion(deps: ImportDeps, job: JobConfig, fileId: number): Promise<ImportResult | { status: 'skipped' | 'superseded' | 'vanished' }> {
  const { config, store, s3, metrics, log } = deps;
  const version = await store.getVersion(fileId);
  if (!version || version.status !== 'pending') return { status: 'skipped' };
  if (isSqlJob(job)) return importWindow(deps, job, version);
  const uri = objectUri(version);
  if (version.size > job.maxFileBytes) throw tooLarge(uri, version.size, job.maxFileBytes);

  // One private folder per import: the download, and whatever a reader derives from it.
  const dir = join(deps.tmpDir, `${fileId}-${randomUUID()}`);
  const started = performance.now();
  await mkdir(dir);
  try {
    const track = <T>(download: () => Promise<T>) => (deps.downloads ? deps.downloads.track(job.id, download) : download());
    const fetched = await fetchVersion(s3, config, job, version, dir, deps.readEngine.run, track);
    if (fetched.kind !== 'fetched') {
      const message = fetched.kind === 'superseded' ? `${uri} changed after it was listed; the new version will be imported` : `${uri} was deleted after it was listed`;
      await store.recordOutcome(fileId, fetched.kind, message);
      log.info({ job: job.id, key: version.key, etag: version.etag }, message);
      return { status: fetched.kind };
    }
    const { file, source } = fetched;
    metrics.bytesRead.inc({ job: job.id }, fetched.bytes);
    const downloadedAt = performance.now();
    if (!fetched.alone) await deps.downloads?.siblings(job.id);
    const waitedAt = performance.now();
    const imported = await deps.importer.importFile({ job, version, file, source, importTime: new Date(), alone: fetched.alone });
    // Where the time went, for the log line: download, waiting for sibling downloads, the import (its turn included).
    const result = { ...imported, ms: { download: Math.round(downloadedAt - started), wait: Math.round(waitedAt - downloadedAt), import: Math.round(performance.now() - waitedAt) } };
    countImport(metrics, job, result, version.lastModified);
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

