import type { JobConfig } from '../config/index.ts';
import type { ErrorCode, ErrorLocation } from '../errors.ts';
import type { LocalFile, SourceRelation } from '../formats/index.ts';

/** Where a file version stands in the ledger. */
export type FileStatus =
  | 'pending' // discovered, waiting for (another) import attempt
  | 'succeeded'
  | 'partially_succeeded' // imported, some rows rejected
  | 'failed' // no attempts left; stays so until its ETag changes or someone retries it
  | 'superseded' // the object changed after it was listed; the newer version is imported instead
  | 'vanished'; // the object was deleted after it was listed

/** One object version as listed from S3. */
export interface ListedObject {
  bucket: string;
  key: string;
  etag: string;
  size: number;
  lastModified: Date;
}

/** A ledger row: one (job, key, etag). */
export interface FileVersion extends ListedObject {
  fileId: number;
  jobId: string;
  status: FileStatus;
  attempts: number;
  discoveredAt: Date;
  finishedAt: Date | null;
  rowsRead: number | null;
  predictionsLoaded: number | null;
  actualsLoaded: number | null;
  rowsRejected: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  errorColumn: string | null;
  errorRow: number | null;
}

/** Ledger counts of one job: latest version per key, by status, and rows. */
export interface JobCounts {
  files: Partial<Record<FileStatus, number>>;
  rowsLoaded: number;
  rowsRejected: number;
}

/** A rejected row as shown to operators. */
export interface RowErrorView {
  code: string;
  message: string;
  row: number | null;
  column: string | null;
}

/** A page of a job's files: the current version of each key, its earlier versions, its first errors. */
export interface FilePage {
  total: number;
  files: Array<FileVersion & { previousVersions: Array<Pick<FileVersion, 'etag' | 'status' | 'discoveredAt' | 'finishedAt'>>; firstErrors: RowErrorView[] }>;
}

/** Predictions, actuals and their join for one model and environment. */
export interface ModelSummary {
  modelId: string;
  environment: string;
  predictions: number;
  actuals: number;
  joined: number;
  /** joined / predictions, 0 when there are no predictions. */
  matchRate: number;
  /** Actuals whose prediction has not arrived. */
  actualsWaiting: number;
  /** Seconds from prediction to actual over the joined rows. */
  delayP50: number | null;
  delayP90: number | null;
}

/** The result of a read-only query. */
export interface QueryResult {
  columns: string[];
  rows: Array<Record<string, unknown>>;
  truncated: boolean;
}

/** Bucket bounds (seconds) of the prediction → actual delay histogram: a minute to a month. */
export const ACTUAL_DELAY_BUCKETS = [60, 300, 900, 3600, 6 * 3600, 86_400, 3 * 86_400, 7 * 86_400, 30 * 86_400];

/** Actuals that met their predictions in one import, grouped by delay bucket (for the delay histogram). */
export interface MatchedActuals {
  count: number;
  /** Per delay bucket: how many, and their mean delay in seconds. */
  groups: Array<{ count: number; meanSeconds: number }>;
}

/** What an import of one file did. */
export interface ImportResult {
  status: FileStatus | 'skipped';
  rowsRead: number;
  predictionsLoaded: number;
  actualsLoaded: number;
  rowsRejected: number;
  rejectedByCode: Record<string, number>;
  /** Actuals joined to a prediction by this import (either side may arrive second). */
  matched?: MatchedActuals;
  /** Files committed in the same transaction as this one (files of a job that waited together are imported together). */
  filesInTransaction?: number;
  /**
   * The rows were loaded first and checked after (a clean parquet file of predictions), rather than
   * staged to compute each row's verdict before the load.
   */
  loadedFirst?: boolean;
}

/** Everything the store needs to import one downloaded file. */
export interface ImportRequest {
  job: JobConfig;
  version: FileVersion;
  file: LocalFile;
  source: SourceRelation;
  importTime: Date;
}

/**
 * The inference store: the ledger of files plus the predictions, actuals and their join.
 * Implementations live one per file; the pipeline never knows which one it talks to.
 */
export interface Store {
  readonly kind: string;
  /** Creates tables and views when missing. */
  init(): Promise<void>;
  /** The newest ledger version of every key of a job, or of the given keys only. */
  latestVersions(jobId: string, keys?: readonly string[]): Promise<Map<string, FileVersion>>;
  /**
   * Records listed objects as pending versions (new rows, or an older version of the key made
   * current again) and returns their ledger rows.
   */
  recordDiscovered(jobId: string, objects: ListedObject[]): Promise<FileVersion[]>;
  getVersion(fileId: number): Promise<FileVersion | undefined>;
  /** Records a failed attempt; `final` makes the version failed, otherwise it stays pending. */
  recordFailure(fileId: number, attempts: number, error: { code: ErrorCode; message: string; location: ErrorLocation }, final: boolean): Promise<void>;
  /** Ends a version without importing it (superseded, vanished). */
  recordOutcome(fileId: number, status: 'superseded' | 'vanished', message: string): Promise<void>;
  /**
   * Imports one file in one transaction: replaces what earlier versions of the key contributed,
   * upserts predictions and/or actuals, records rejected rows and the ledger row. Skips versions
   * already committed or no longer current.
   */
  importFile(request: ImportRequest): Promise<ImportResult>;
  /** Runs a query of the importer's own (tests, admin). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Ledger counts of every job. */
  jobCounts(): Promise<Map<string, JobCounts>>;
  /** The current versions of a job's keys, newest discoveries first. */
  listFiles(jobId: string, options: { status?: FileStatus; limit: number; offset: number; errors: number }): Promise<FilePage>;
  /** Makes versions pending again, attempts reset: every failed current version of a job, or the current version of one key. */
  resetVersions(jobId: string, which: { failed: true } | { key: string }): Promise<FileVersion[]>;
  modelSummaries(): Promise<ModelSummary[]>;
  /**
   * Runs one user-supplied SELECT: refused unless it is a single SELECT statement reading no
   * table function; at most `limit` rows; interrupted after `timeoutMs`.
   */
  readOnlyQuery(sql: string, limit: number, timeoutMs: number): Promise<QueryResult>;
  /** Flushes and closes. */
  close(): Promise<void>;
}
