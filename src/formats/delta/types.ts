/**
 * Shapes shared by the Delta Lake reader: how it reaches the table's files, how it runs SQL, and
 * the snapshot that log replay produces.
 */

/**
 * Runs one SQL statement on a DuckDB connection and returns its rows as plain objects.
 * The reader casts everything it reads back to VARCHAR, so values may come back as JS values or as
 * JSON-converted values: either works.
 */
export type RunQuery = (sql: string) => Promise<Array<Record<string, unknown>>>;

/** Access to one Delta table. */
export interface DeltaFileAccess {
  /**
   * Names of the files directly under `_delta_log/` (e.g. `00000000000000000010.checkpoint.parquet`,
   * `00000000000000000003.json`, `_last_checkpoint`). Entries in subfolders (`_sidecars/x.parquet`,
   * `.tmp/…`, `_autostats/…`) may be listed or not; only exact commit and checkpoint names count.
   */
  logFiles: string[];
  /**
   * Returns a local path of the file (downloading it first if needed). The argument is a path relative
   * to the table root (`_delta_log/00000000000000000003.json`, `part=1/part-0.parquet`), already
   * URL-decoded; or an absolute URI (`s3://…`, `file:/…`) for files a table stores elsewhere
   * (absolute `add.path`, `p` deletion vectors, absolute sidecar paths).
   */
  fetch(relPath: string): Promise<string>;
}

/** A deletion vector descriptor, as in `add.deletionVector`. */
export interface DeletionVectorDescriptor {
  /** `u` (file named by a base85 UUID), `i` (inline, Z85), `p` (absolute path). */
  storageType: string;
  pathOrInlineDv: string;
  /** Byte offset of the DV in its file (file-stored DVs only). */
  offset?: number;
  /** Size of the serialized bitmap in bytes. */
  sizeInBytes: number;
  /** Number of deleted rows. */
  cardinality: number;
}

/** One active data file of a snapshot. */
export interface DeltaDataFile {
  /** The real (URL-decoded) path, relative to the table root, or an absolute URI. */
  path: string;
  /** Partition values as written in the log, keyed by physical column name; null for a null partition. */
  partitionValues: Record<string, string | null>;
  size: number;
  /** `stats.numRecords` (physical rows, before deletion vectors), when the log has stats. */
  numRecords?: number;
  /** `add.modificationTime` (ms since the epoch), when present; used to order files. */
  modificationTime?: number;
  deletionVector?: DeletionVectorDescriptor;
}

export interface DeltaProtocol {
  minReaderVersion: number;
  minWriterVersion?: number;
  readerFeatures?: string[];
  writerFeatures?: string[];
}

/** A Delta data type as in `schemaString`: a primitive name (`long`, `decimal(10,2)`, …) or a nested type. */
export type DeltaType = string | DeltaStructType | DeltaArrayType | DeltaMapType;

export interface DeltaStructField {
  name: string;
  type: DeltaType;
  nullable?: boolean;
  metadata?: Record<string, unknown>;
}

export interface DeltaStructType {
  type: 'struct';
  fields: DeltaStructField[];
}

export interface DeltaArrayType {
  type: 'array';
  elementType: DeltaType;
  containsNull?: boolean;
}

export interface DeltaMapType {
  type: 'map';
  keyType: DeltaType;
  valueType: DeltaType;
  valueContainsNull?: boolean;
}

export type ColumnMappingMode = 'none' | 'name' | 'id';

/** The state of a Delta table at one version, after replaying its log. */
export interface DeltaSnapshot {
  version: number;
  protocol: DeltaProtocol;
  /** The parsed `metaData.schemaString`: logical names, with column-mapping metadata on each field. */
  schema: DeltaStructType;
  /** Logical names of the partition columns. */
  partitionColumns: string[];
  configuration: Record<string, string>;
  columnMappingMode: ColumnMappingMode;
  /** Active files, ordered by modification time then path (the order rows are numbered in). */
  files: DeltaDataFile[];
  /** The checkpoint the replay started from, when it used one. */
  checkpointVersion?: number;
}
