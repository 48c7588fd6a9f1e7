/** A downloaded file, ready for a reader. */
export interface LocalFile {
  /** Absolute path of the temp file; its name keeps the object's extension (DuckDB detects compression by it). */
  path: string;
  /** The object key it came from, for messages. */
  key: string;
}

/**
 * What a reader returns: a DuckDB table-function expression usable after FROM, and the name of a
 * column with the 1-based row number in the file (every reader provides one, so errors can name rows).
 */
export interface SourceRelation {
  sql: string;
  rowNumberColumn: string;
}

/** One reader per format, all of this shape: a local file in, a DuckDB relation out. */
export type FormatReader = (file: LocalFile) => SourceRelation;

/** Quotes a string as a SQL literal. */
export function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** Quotes a SQL identifier. */
export function sqlIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
