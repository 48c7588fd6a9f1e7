import type { JobConfig } from '../config/index.ts';
import type { ErrorCode, ErrorLocation } from '../errors.ts';
import type { Engine, EngineReader } from '../engine/index.ts';
import type { ListedObject } from '../source/types.ts';
import type { StructColumns } from '../schema/mapping.ts';

/** Where a file version stands in the ledger. */
export type FileStatus =
  | 'pending' // discovered, waiting for (another) import attempt
  | 'succeeded'
  | 'partially_succeeded' // imported, some rows rejected
  | 'failed' // no attempts left; stays so until its ETag changes or someone retries it
  | 'superseded' // the object changed after it was listed; the newer version is imported instead
  | 'vanished'; // the object was deleted after it was listed

export type { ListedObject };

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

/** What an import of a file version recorded in the ledger. */
export interface FileOutcome {
  status: 'succeeded' | 'partially_succeeded' | 'failed';
  rowsRead: number;
  predictionsLoaded: number;
  actualsLoaded: number;
  rowsRejected: number;
  errorCode: string | null;
  errorMessage: string | null;
  errorColumn: string | null;
  errorRow: number | null;
}

/**
 * Rows inside the import engine (a relation of the engine's DuckDB, see `src/engine/`). The store
 * that shares the engine's database reads them in place; others pull them out with
 * `engine.writeCsv` into their own bulk load. Stores never build or change this SQL.
 */
export interface EngineRows {
  engine: Engine;
  sql: string;
}

/**
 * Rows of one or more file versions of a job, replacing what earlier versions of the same keys
 * contributed. Prediction rows have the columns of `PREDICTION_ROW_COLUMNS`, actual rows those of
 * `ACTUAL_ROW_COLUMNS` (both in `src/import/`); the store adds model, environment and load time.
 */
export interface RowsToLoad {
  /** Ledger IDs of the versions being loaded (the rows' `source_file_id`). */
  fileIds: number[];
  /** Object keys of those versions: every earlier version's rows of these keys go. */
  keys: string[];
  /** The rows, in batches of one shape each. */
  batches: EngineRows[];
  /** The key columns of the new rows, for finding keys other files hold; absent when `check` is given. */
  newKeys?: EngineRows;
  /**
   * Rows loaded before they were checked (see `src/import/strategy.ts`): called with the number
   * inserted, before anything reads them; throws to roll the import back.
   */
  check?: (inserted: number) => Promise<void>;
  /** The STRUCT fields the prediction rows carry (features, tags, SHAP, embeddings), per batch. */
  structs?: StructColumns[];
}

/** The store side of one import transaction (see `Store.runImport`). */
export interface ImportTransaction {
  /**
   * Locks the versions' keys in the ledger and says which versions may import: `live` (pending and
   * the key's current version), `superseded` (a newer version was discovered; recorded so) or
   * `done` (committed, failed, ended: nothing to do).
   */
  claim(versions: FileVersion[]): Promise<Map<number, 'live' | 'superseded' | 'done'>>;
  /** Loads prediction rows; returns how many were inserted. The current row of each key is the newest file's. */
  loadPredictions(rows: RowsToLoad): Promise<number>;
  /** Loads actual rows; returns how many were inserted. */
  loadActuals(rows: RowsToLoad): Promise<number>;
  /** Loads rows of SHAP files (columns of `SHAP_ROW_COLUMNS`), keyed by prediction ID like actuals; returns how many were inserted. */
  loadShap(rows: RowsToLoad): Promise<number>;
  /**
   * Actuals joined to a prediction by this import, per file: a file's actuals that found their
   * prediction, or the waiting actuals its predictions found (a pair whose both sides arrived in
   * this import counts once, for the actuals' file). Grouped by delay bucket.
   */
  matchedActuals(withActuals: number[], withPredictions: number[]): Promise<Map<number, MatchedActuals>>;
  /** Replaces the rejected rows of every version of these keys with the given files' rejected rows (columns of `REJECTED_ROW_COLUMNS`). */
  replaceRejected(keys: string[], files: Array<{ version: FileVersion; rows: EngineRows }>): Promise<void>;
  /** Records a version's outcome in the ledger. */
  finish(fileId: number, outcome: FileOutcome): Promise<void>;
}

/** What one import transaction writes to: a job's model in one environment. */
export interface ImportScope {
  jobId: string;
  modelId: string;
  environment: string;
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
   * Runs `fn` in one store transaction: rows, rejected rows and ledger rows commit together or not
   * at all. `engine` is the DuckDB to read, map and validate the files with: the store's own
   * database, or a private one whose rows the store loads in bulk. One import runs at a time per
   * store object; rejected promises roll back.
   */
  runImport<T>(scope: ImportScope, fn: (tx: ImportTransaction, engine: Engine) => Promise<T>): Promise<T>;
  /**
   * A connection of the import engine that reads a file while other imports hold the turn: tables
   * it makes in its `space` are read in place by the `engine` of a later `runImport`. Close it after.
   */
  openReader(): Promise<EngineReader>;
  /** Answers when the store does (readiness, metrics). */
  ping(): Promise<void>;
  /** Ledger counts of every job. */
  jobCounts(): Promise<Map<string, JobCounts>>;
  /** The current versions of a job's keys, newest discoveries first. */
  listFiles(jobId: string, options: { status?: FileStatus; limit: number; offset: number; errors: number }): Promise<FilePage>;
  /** Makes versions pending again, attempts reset: every failed current version of a job, every current version (`all`), or the current version of one key. */
  resetVersions(jobId: string, which: { failed: true } | { all: true } | { key: string }): Promise<FileVersion[]>;
  /**
   * Deletes, in one transaction, everything a job brought: the rows its files loaded (another
   * file's row for the same key becomes current again), its rejected rows and its ledger.
   */
  purgeJob(jobId: string): Promise<{ files: number; predictions: number; actuals: number }>;
  modelSummaries(): Promise<ModelSummary[]>;
  /**
   * Runs one user-supplied SELECT: refused unless it is a single SELECT statement reading no
   * table function; at most `limit` rows; interrupted after `timeoutMs`.
   */
  readOnlyQuery(sql: string, limit: number, timeoutMs: number): Promise<QueryResult>;
  /** Flushes and closes. */
  close(): Promise<void>;
}
