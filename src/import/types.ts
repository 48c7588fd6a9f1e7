import type { JobConfig } from '../config/index.ts';
import type { LocalFile, SourceRelation } from '../formats/index.ts';
import type { FileStatus, FileVersion, MatchedActuals } from '../store/store.ts';

/** Everything needed to import one downloaded file version. */
export interface ImportRequest {
  job: JobConfig;
  version: FileVersion;
  file: LocalFile;
  /** The file as a relation of the import engine (a format reader's output, with the job's select). */
  source: SourceRelation;
  importTime: Date;
  /** Imported in a transaction of its own, never grouped (a Delta table version: all of a table's rows). */
  alone?: boolean;
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
   * The rows were loaded first and checked after (a clean columnar file of predictions or of actuals), rather than
   * staged to compute each row's verdict before the load.
   */
  loadedFirst?: boolean;
  /**
   * A CSV or JSON file loaded from one parallel read, its rows numbered by a first read of their keys
   * (see `keySource`), rather than read into a table first.
   */
  keyed?: boolean;
}

/** Columns of the prediction rows the import hands a store (STRUCT columns follow the file: see `StructColumns`). */
export const PREDICTION_ROW_COLUMNS = [
  'model_version', 'batch_id', 'prediction_id', 'prediction_ts', 'prediction_label', 'prediction_score',
  'prediction_scores', 'threshold_scores', 'prediction_group_id', 'rank', 'source_file_id', 'source_row',
] as const;

/** Columns of the actual rows the import hands a store. */
export const ACTUAL_ROW_COLUMNS = [
  'prediction_id', 'actual_label', 'actual_score', 'actual_scores', 'actual_boxes', 'relevance_label', 'relevance_score', 'actual_ts', 'source_file_id', 'source_row',
] as const;

/** Columns of the rows of a file of SHAP values alone the import hands a store (`shap` as JSON: field → value). */
export const SHAP_ROW_COLUMNS = ['prediction_id', 'shap', 'source_file_id', 'source_row'] as const;

/** Columns of the rejected rows the import hands a store (`raw` is the source row as JSON). */
export const REJECTED_ROW_COLUMNS = ['row_number', 'column_name', 'code', 'message', 'raw'] as const;
