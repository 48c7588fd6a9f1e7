import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { Config, JobConfig } from '../config/index.ts';
import { extensionOf, isDeltaKey, resolveFormat, type LocalFile, type SourceRelation } from '../formats/index.ts';
import { applySelect, jobRelation } from '../schema/select.ts';
import { deltaSource } from './delta-import.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { downloadObject, downloadParts, objectUri, tooLarge } from '../source/index.ts';
import type { DownloadTracker } from './download-tracker.ts';
import type { Engine } from '../engine/index.ts';
import type { Importer, ImportResult } from '../import/index.ts';
import type { Store } from '../store/store.ts';

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
  const uri = objectUri(version);
  const maxBytes = job.maxFileBytes;
  if (version.size > maxBytes) throw tooLarge(uri, version.size, maxBytes);
  const delta = isDeltaKey(version.key);
  if (!delta) resolveFormat(job.format, version.key); // an unknown extension fails before the download

  // One private folder per import: the download, and whatever a reader derives from it.
  const dir = join(deps.tmpDir, `${fileId}-${randomUUID()}`);
  const started = performance.now();
  let downloadedAt = started;
  await mkdir(dir);
  try {
    let file: LocalFile;
    let source: SourceRelation;
    if (delta) {
      file = { path: dir, key: version.key };
      source = applySelect(job, await deltaSource(s3, deps.readEngine.run, version, dir, maxBytes, downloadParts(config)));
    } else {
      file = { path: join(dir, `file${extensionOf(version.key)}`), key: version.key };
      const download = () => downloadObject(s3, version, file.path, maxBytes, downloadParts(config));
      const downloaded = deps.downloads ? await deps.downloads.track(job.id, download) : await download();
      if (downloaded.kind !== 'downloaded') {
        const message = downloaded.kind === 'superseded' ? `${uri} changed after it was listed; the new version will be imported` : `${uri} was deleted after it was listed`;
        await store.recordOutcome(fileId, downloaded.kind, message);
        log.info({ job: job.id, key: version.key, etag: version.etag }, message);
        return { status: downloaded.kind };
      }
      metrics.bytesRead.inc({ job: job.id }, downloaded.bytes);
      downloadedAt = performance.now();
      source = await jobRelation(job, file);
      await deps.downloads?.siblings(job.id);
    }
    const waitedAt = performance.now();
    const imported = await deps.importer.importFile({ job, version, file, source, importTime: new Date() });
    // Where the time went, for the log line: download, waiting for sibling downloads, the import (its turn included).
    const result = { ...imported, ms: { download: Math.round(downloadedAt - started), wait: Math.round(waitedAt - downloadedAt), import: Math.round(performance.now() - waitedAt) } };
    if (result.status === 'succeeded' || result.status === 'partially_succeeded') {
      metrics.storeChanged();
      metrics.importLag.observe({ job: job.id }, Math.max(0, (Date.now() - version.lastModified.getTime()) / 1000));
      metrics.rowsLoaded.inc({ job: job.id, kind: 'prediction' }, result.predictionsLoaded);
      metrics.rowsLoaded.inc({ job: job.id, kind: 'actual' }, result.actualsLoaded);
    }
    for (const [reason, n] of Object.entries(result.rejectedByCode)) metrics.rowsRejected.inc({ job: job.id, reason }, n);
    if (result.matched?.count) {
      metrics.actualsMatched.inc({ job: job.id }, result.matched.count);
      // Observing each bucket's mean delay once per row keeps both the bucket counts and the sum exact.
      for (const g of result.matched.groups) for (let i = 0; i < g.count; i++) metrics.actualDelay.observe({ job: job.id }, g.meanSeconds);
    }
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
