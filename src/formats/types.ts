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
  /**
   * True when the row numbers are physical (parquet's `file_row_number`) and reading a few columns
   * is cheap: the store may then read the file twice (verdicts first, then the rows to load)
   * rather than materialise it. Row numbers made by a window over a scan are not physical.
   */
  columnar?: boolean;
  /** Relations over several files (see `GroupReader`): the column with each row's 0-based file index. */
  fileIndexColumn?: string;
  /**
   * For files whose row number is a window over one scan (CSV, JSON), which reads the file on one
   * thread: `scanSql` is the same rows without a row number, read in parallel and in file order.
   * An import materialises it once (`materialiseSource`), numbers the rows by the temp table's row
   * IDs, and reads the relation `over` gives for that numbered table: columnar, like parquet.
   */
  ordered?: { scanSql: string; over: (numberedSql: string) => SourceRelation };
  /**
   * An ordered file read ahead as keys only (see `keySource`): `sql` reads its rows in parallel, in
   * any order, without row numbers, and `table` holds the hash of each row's unique key in file
   * order, `rows` of them, the first with row ID `firstRowId`; `columns` are those of `sql` (a
   * JSON file's every bind samples it for types). An import loads such a file from one read, each
   * row numbered by where its key hash stands (`keyedRowsSql`).
   */
  keyed?: { table: string; firstRowId: bigint; rows: number; columns: ReadonlyArray<{ name: string; type: string }> };
}

/** Options passed through to DuckDB's reader (`delim`, `quote`, `header`, `dateformat`, `types`, ...). */
export type ReadOptions = Readonly<Record<string, string | number | boolean | readonly string[] | Readonly<Record<string, string>>>>;

/** What a reader may use besides the file: the job's reader settings. */
export interface ReaderContext {
  /** Passed to DuckDB's reader as they are. */
  readOptions?: ReadOptions;
  /** SageMaker captures: names of the features of CSV and list payloads, in payload order. */
  featureNames?: readonly string[];
  /** A small private DuckDB (sandboxed to the downloads) for looking at a file before it is read (CSV's dialect). */
  run?: (sql: string) => Promise<unknown[]>;
}

/**
 * One reader per format, all of this shape: a local file (and the job's reader settings) in, a
 * DuckDB relation out. Readers that must first normalise a file (SageMaker captures) do it next
 * to the file, inside the download folder the store's sandbox allows.
 */
export type FormatReader = (file: LocalFile, context: ReaderContext) => SourceRelation | Promise<SourceRelation>;

/**
 * A reader of several files of one format and schema as one relation, which DuckDB scans in
 * parallel: how a group import loads small files together. Row numbers restart in every file.
 */
export type GroupReader = (files: LocalFile[], context: ReaderContext) => SourceRelation;

/** The name readers give the 1-based row number column. */
export const ROW_NUMBER_COLUMN = '__source_row';
/** The name group readers give the 0-based file index column. */
export const FILE_INDEX_COLUMN = '__file_index';

/**
 * The relation of a file read by a DuckDB table function that keeps file order (`scanSql`, a
 * SELECT): numbered by a window for one-off reads, materialisable for imports (see `ordered`).
 */
export function orderedRelation(scanSql: string): SourceRelation {
  return {
    sql: `(SELECT row_number() OVER () AS ${ROW_NUMBER_COLUMN}, * FROM (${scanSql}))`,
    rowNumberColumn: ROW_NUMBER_COLUMN,
    ordered: { scanSql, over: (numberedSql) => ({ sql: numberedSql, rowNumberColumn: ROW_NUMBER_COLUMN, columnar: true }) },
  };
}

/** Renders read options as `, name = literal` arguments of a DuckDB table function. */
export function readOptionsSql(options: ReadOptions | undefined): string {
  if (!options) return '';
  return Object.entries(options)
    .map(([name, value]) => {
      if (!/^[a-z_][a-z0-9_]*$/i.test(name)) throw new Error(`read option name ${JSON.stringify(name)} is not an identifier`);
      return `, ${name} = ${literal(value)}`;
    })
    .join('');
}

function literal(value: ReadOptions[string]): string {
  if (typeof value === 'string') return sqlString(value);
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'NULL';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (Array.isArray(value)) return `[${value.map((v) => sqlString(String(v))).join(', ')}]`;
  return `{${Object.entries(value as Record<string, string>).map(([k, v]) => `${sqlString(k)}: ${sqlString(v)}`).join(', ')}}`;
}

/** Quotes a string as a SQL literal. */
export function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** Quotes a SQL identifier. */
export function sqlIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
