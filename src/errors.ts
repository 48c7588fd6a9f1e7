/**
 * Every error the importer reports, with a stable code. Codes are what the ledger, the logs,
 * the API and the dry-run report show; messages may improve, codes do not change.
 */
export const ErrorCodes = {
  IMP_ERR_CONFIG_INVALID: 'the configuration has errors',
  IMP_ERR_CONFIG_READ: 'the configuration file cannot be read',
  IMP_ERR_SOURCE_ACCESS: 'the bucket or prefix cannot be listed or read',
  IMP_ERR_SOURCE_EMPTY: 'the source was listed fine but holds no object this job imports',
  IMP_ERR_SOURCE_TOO_LARGE: 'the file is larger than maxFileBytes',
  IMP_ERR_SOURCE_SUPERSEDED: 'the file changed after it was listed',
  IMP_ERR_SOURCE_VANISHED: 'the file was deleted after it was listed',
  IMP_ERR_FORMAT_UNREADABLE: 'the file cannot be read in its format',
  IMP_ERR_FORMAT_UNKNOWN: 'the file format cannot be told from its name',
  IMP_ERR_SCHEMA_MISSING_COLUMN: 'a mapped column is not in the file',
  IMP_ERR_SCHEMA_BAD_TYPE: 'a column has a type that cannot be used for its field',
  IMP_ERR_SCHEMA_FEATURE_CONFLICT: 'a feature changed type between files of the same model',
  IMP_ERR_ROW_PREDICTION_ID_MISSING: 'the prediction ID is null or empty',
  IMP_ERR_ROW_PREDICTION_ID_TOO_LONG: 'the prediction ID is longer than 128 characters',
  IMP_ERR_ROW_TIMESTAMP_INVALID: 'the timestamp cannot be parsed',
  IMP_ERR_ROW_TIMESTAMP_OUT_OF_RANGE: 'the timestamp is outside the accepted window (timestamps.maxAge / maxAhead)',
  IMP_ERR_ROW_SCORE_NOT_FINITE: 'the score is NaN or infinite',
  IMP_ERR_ROW_PREDICTION_MISSING: 'the row has no prediction (label, score, named prediction, bounding boxes or response)',
  IMP_ERR_ROW_ACTUAL_MISSING: 'the row has no actual (label, score, relevance or bounding boxes)',
  IMP_ERR_ROW_SHAP_MISSING: 'the row of a SHAP file has no SHAP value',
  IMP_ERR_ROW_BOUNDING_BOX: 'the bounding boxes are malformed: each box needs 4 finite coordinates [x_min, y_min, x_max, y_max] with min <= max, and one category (and score) per box',
  IMP_ERR_ROW_VALUE_INVALID: 'the value cannot be read as its type (a number, a boolean, a timestamp)',
  IMP_ERR_ROW_EMBEDDING_DIMENSION: 'the embedding vector has the wrong dimension',
  IMP_ERR_ROW_TENSOR_SHAPE: 'the tensor does not have the declared dimensions',
  IMP_ERR_ROW_GROUP_ID_MISSING: 'the ranking group ID is null or empty',
  IMP_ERR_ROW_RANK_OUT_OF_RANGE: 'the rank is not a whole number from 1 to 100',
  IMP_ERR_ROW_DUPLICATE_ID: 'the prediction ID appears again later in the same file',
  IMP_ERR_ROWS_INVALID: 'the file has invalid rows and the job says onInvalidRows: fail',
  IMP_ERR_SQL_REFUSED: 'the SQL was refused or failed',
  IMP_ERR_SQL_UNKNOWN_TABLE: 'the SQL names a table or view the store does not have',
  IMP_ERR_HTTP_UNAUTHORIZED: 'missing or wrong bearer token',
  IMP_ERR_HTTP_BAD_REQUEST: 'a parameter of the request is wrong',
  IMP_ERR_HTTP_NOT_FOUND: 'no such job, file or route',
  IMP_ERR_HTTP_CONFLICT: 'the request conflicts with the running config',
  IMP_ERR_REDIS_UNAVAILABLE: 'Redis (the work queue) does not answer; what needs it fails at once until it is back',
  IMP_ERR_STORE: 'the store failed',
  IMP_ERR_STORE_ROLE: 'this store cannot be shared between processes',
  IMP_ERR_IMPORT_INTERRUPTED: 'the import was interrupted too often (the process crashed or was killed)',
  IMP_ERR_INTERNAL: 'unexpected internal error',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** Where in a file an error was found; every field is optional because not every error has a place. */
export interface ErrorLocation {
  file?: string;
  column?: string;
  row?: number;
}

/** One problem among several found at once (e.g. every missing column of a file). */
export interface ErrorDetail {
  code: ErrorCode;
  message: string;
  column?: string;
  row?: number;
}

/** The one error class of the importer: a stable code, a message for the operator, and where. */
export class ImporterError extends Error {
  readonly code: ErrorCode;
  readonly location: ErrorLocation;
  /** True when retrying the same input cannot help (a broken file, a bad config). */
  readonly permanent: boolean;
  /** Every problem when several were found together; the message summarises them. */
  readonly details: ErrorDetail[];

  constructor(code: ErrorCode, message: string, opts: { location?: ErrorLocation; permanent?: boolean; cause?: unknown; details?: ErrorDetail[] } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ImporterError';
    this.code = code;
    this.location = opts.location ?? {};
    this.permanent = opts.permanent ?? false;
    this.details = opts.details ?? [{ code, message, column: this.location.column, row: this.location.row }];
  }
}

/** True for errors that retrying the same input cannot mend (BullMQ then fails the job at once). */
export function isPermanent(err: unknown): boolean {
  return err instanceof ImporterError && err.permanent;
}

/** Reduces anything thrown to a code and a message, for the ledger and the logs. */
export function describeError(err: unknown): { code: ErrorCode; message: string; location: ErrorLocation } {
  if (err instanceof ImporterError) return { code: err.code, message: err.message, location: err.location };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'IMP_ERR_INTERNAL', message, location: {} };
}
