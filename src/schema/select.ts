import type { JobConfig } from '../config/index.ts';
import { ImporterError, type ErrorDetail } from '../errors.ts';
import { FILE_INDEX_COLUMN, groupReaderFor, readerFor, resolveFormat, ROW_NUMBER_COLUMN, sqlString, type LocalFile, type SourceRelation } from '../formats/index.ts';
import type { RunQuery } from './staged.ts';

/** Row number column of a relation wrapped by a job's `select`. */
const SELECT_ROW_COLUMN = '__select_row';

// Functions that draw a new value per row (uuid, uuidv4, uuidv7 and the like).
const VOLATILE_FUNCTION = /\b(random|uuid\w*|gen_random_uuid|setseed)\s*\(/i;

/** Columns the pipeline adds to every relation; never data. */
export const INTERNAL_COLUMNS: ReadonlySet<string> = new Set([ROW_NUMBER_COLUMN, SELECT_ROW_COLUMN, FILE_INDEX_COLUMN]);

/**
 * The relation an import reads: the format's reader with the job's read options, then the job's
 * `select` expressions (like Aporia's select_expr) applied to it.
 */
export async function jobRelation(job: JobConfig, file: LocalFile, run?: RunQuery): Promise<SourceRelation> {
  return applySelect(job, await readerFor(resolveFormat(job.format, file.key))(file, { readOptions: job.readOptions, featureNames: job.capture?.featureNames, run }));
}

/**
 * Several files of a job as one relation, read in one scan (see `GroupReader`), with the job's
 * `select` applied; undefined when their format has no group reader. The caller makes sure the
 * files share one schema (and that a `select` means the same over several files as over one).
 */
export function jobRelationOfFiles(job: JobConfig, files: LocalFile[]): SourceRelation | undefined {
  const formats = new Set(files.map((f) => resolveFormat(job.format, f.key)));
  const reader = formats.size === 1 ? groupReaderFor([...formats][0]) : undefined;
  return reader && applySelect(job, reader(files, { readOptions: job.readOptions }));
}

/** Wraps a relation in the job's `select` expressions, when it has any. */
export function applySelect(job: JobConfig, base: SourceRelation): SourceRelation {
  if (!job.select) return base;
  return {
    sql: `(SELECT src.${base.rowNumberColumn} AS ${SELECT_ROW_COLUMN}, ${base.fileIndexColumn ? `src.${base.fileIndexColumn}, ` : ''}${job.select.join(', ')} FROM ${base.sql} AS src)`,
    rowNumberColumn: SELECT_ROW_COLUMN,
    fileIndexColumn: base.fileIndexColumn,
    // Two reads must see the same values: expressions drawing random values force one materialised read.
    columnar: base.columnar && !job.select.some((e) => VOLATILE_FUNCTION.test(e)),
    ordered: base.ordered && { scanSql: base.ordered.scanSql, over: (numberedSql) => applySelect(job, base.ordered!.over(numberedSql)) },
  };
}

/**
 * Each `select` entry must parse, on its own, as exactly one expression: no subqueries, no second
 * statement smuggled in. (What an expression may read is bounded by the store's sandbox anyway:
 * DuckDB can reach only the download folder.)
 */
export async function checkSelect(run: RunQuery, job: JobConfig): Promise<void> {
  const problems: ErrorDetail[] = [];
  for (const [i, expr] of (job.select ?? []).entries()) {
    const [row] = await run(`SELECT json_serialize_sql(${sqlString(`SELECT ${expr}`)}) AS j`);
    const tree = JSON.parse(String(row.j));
    const statement = tree.statements?.[0]?.node;
    const why = tree.error
      ? `does not parse: ${tree.error_message}`
      : tree.statements.length !== 1 || statement?.select_list?.length !== 1 || statement?.from_table?.type !== 'EMPTY'
        ? 'must be a single expression (use one list entry per column)'
        : /"SUBQUERY"/.test(String(row.j))
          ? 'must not contain a subquery'
          : undefined;
    if (why) problems.push({ code: 'IMP_ERR_CONFIG_INVALID', column: expr, message: `jobs.${job.id}.select[${i}] ${JSON.stringify(expr)} ${why}` });
  }
  if (problems.length) {
    throw new ImporterError('IMP_ERR_CONFIG_INVALID', problems.map((p) => p.message).join('; '), { permanent: true, details: problems });
  }
}
