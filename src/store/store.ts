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

/** What an import of one file did. */
export interface ImportResult {
  status: FileStatus | 'skipped';
  rowsRead: number;
  predictionsLoaded: number;
  actualsLoaded: number;
  rowsRejected: number;
  rejectedByCode: Record<string, number>;
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
  /** The newest ledger version of every key of a job. */
  latestVersions(jobId: string): Promise<Map<string, FileVersion>>;
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
  /** Reads the file's columns (names and types), without loading it. */
  describe(source: SourceRelation): Promise<Array<{ name: string; type: string }>>;
  /**
   * Imports one file in one transaction: replaces what earlier versions of the key contributed,
   * upserts predictions and/or actuals, records rejected rows and the ledger row. Skips versions
   * already committed or no longer current.
   */
  importFile(request: ImportRequest): Promise<ImportResult>;
  /** Runs a read-only query (tests, CLI, admin). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Flushes and closes. */
  close(): Promise<void>;
}
