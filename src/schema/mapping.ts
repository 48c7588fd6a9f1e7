import type { FieldMapping, JobConfig } from '../config/index.ts';
import { ImporterError } from '../errors.ts';
import { sqlIdent, sqlString, type SourceRelation } from '../formats/index.ts';

/** A column of a file as DuckDB describes it. */
export interface FileColumn {
  name: string;
  type: string;
}

/** A feature or tag: the name it is stored under, the file column it comes from, and its stored type. */
export interface StructField {
  name: string;
  column: string;
  type: string;
}

/** The per-file transformation, as SQL, plus what it produces. */
export interface MappingPlan {
  /** SELECT producing the staged rows (see STAGE_COLUMNS) from the file. */
  stageSql: string;
  hasPredictions: boolean;
  hasActuals: boolean;
  features: StructField[];
  tags: StructField[];
}

/** Longest prediction ID accepted, as on the hosted platforms. */
export const MAX_PREDICTION_ID_LENGTH = 128;

/**
 * Features and tags are stored with few, wide types so files of one model agree: every integer
 * becomes BIGINT and every decimal/float DOUBLE (CSV sniffing picks INTEGER in one file and
 * BIGINT in the next).
 */
export function storedType(duckType: string): string {
  const t = duckType.toUpperCase();
  if (/^(TINYINT|SMALLINT|INTEGER|BIGINT|UTINYINT|USMALLINT|UINTEGER)$/.test(t)) return 'BIGINT';
  if (/^(HUGEINT|UBIGINT|UHUGEINT|FLOAT|DOUBLE|REAL)$/.test(t) || t.startsWith('DECIMAL')) return 'DOUBLE';
  if (t === 'TIMESTAMP' || t.startsWith('TIMESTAMP_') || t === 'DATE') return 'TIMESTAMP WITH TIME ZONE';
  return duckType;
}

const isNumeric = (t: string) => /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|REAL|DECIMAL)/i.test(t);
const isTimestamp = (t: string) => /^(TIMESTAMP|DATE)/i.test(t);

function selectColumns(
  selection: string | readonly string[] | undefined,
  columns: FileColumn[],
  taken: Set<string>,
  missing: string[],
  fallbackAll: boolean,
): StructField[] {
  if (selection === undefined) {
    if (!fallbackAll) return [];
    return columns.filter((c) => !taken.has(c.name)).map((c) => ({ name: c.name, column: c.name, type: storedType(c.type) }));
  }
  if (typeof selection === 'string') {
    return columns
      .filter((c) => c.name.startsWith(selection) && c.name.length > selection.length && !taken.has(c.name))
      .map((c) => ({ name: c.name.slice(selection.length), column: c.name, type: storedType(c.type) }));
  }
  const byName = new Map(columns.map((c) => [c.name, c]));
  const out: StructField[] = [];
  for (const name of selection) {
    const col = byName.get(name);
    if (!col) missing.push(name);
    else out.push({ name, column: name, type: storedType(col.type) });
  }
  return out;
}

function timestampSql(column: FileColumn | undefined, importTime: Date): string {
  if (!column) return `TIMESTAMPTZ ${sqlString(importTime.toISOString())}`;
  const c = `src.${sqlIdent(column.name)}`;
  if (isTimestamp(column.type)) return `CAST(${c} AS TIMESTAMPTZ)`;
  if (isNumeric(column.type)) return `to_timestamp(CAST(${c} AS DOUBLE))`;
  // Text: epoch seconds written as digits, or RFC 3339 / ISO 8601 (ICU parses offsets).
  return `CASE WHEN regexp_full_match(trim(CAST(${c} AS VARCHAR)), '-?[0-9]+(\\.[0-9]+)?') THEN to_timestamp(TRY_CAST(trim(CAST(${c} AS VARCHAR)) AS DOUBLE)) ELSE TRY_CAST(CAST(${c} AS VARCHAR) AS TIMESTAMPTZ) END`;
}

function structSql(fields: StructField[]): string {
  if (fields.length === 0) return 'NULL';
  return `struct_pack(${fields.map((f) => `${sqlIdent(f.name)} := CAST(src.${sqlIdent(f.column)} AS ${f.type})`).join(', ')})`;
}

/**
 * Builds the one SELECT that turns a file into staged rows: mapped, cast, and each row either
 * valid or carrying the code and column of its first problem. File-level problems (a mapped
 * column that is not in the file) are thrown, listing every missing column at once.
 */
export function planMapping(job: JobConfig, source: SourceRelation, columns: FileColumn[], key: string, importTime: Date): MappingPlan {
  const m: FieldMapping = job.schema;
  const visible = columns.filter((c) => c.name !== source.rowNumberColumn);
  const byName = new Map(visible.map((c) => [c.name, c]));
  const missing: string[] = [];
  const col = (name: string | undefined): FileColumn | undefined => {
    if (name === undefined) return undefined;
    const found = byName.get(name);
    if (!found) missing.push(name);
    return found;
  };

  const pid = col(m.predictionId);
  const ts = col(m.timestamp);
  const version = col(m.version);
  const predLabel = col(m.predictionLabel);
  const predScore = col(m.predictionScore);
  const actLabel = col(m.actualLabel);
  const actScore = col(m.actualScore);

  const taken = new Set([m.predictionId, m.timestamp, m.version, m.predictionLabel, m.predictionScore, m.actualLabel, m.actualScore].filter((x): x is string => !!x));
  const tags = selectColumns(m.tags, visible, taken, missing, false);
  for (const t of tags) taken.add(t.column);
  const hasPredictions = !!(m.predictionLabel ?? m.predictionScore);
  const features = hasPredictions ? selectColumns(m.features, visible, taken, missing, true) : [];

  if (missing.length) {
    const names = [...new Set(missing)];
    throw new ImporterError(
      'IMP_ERR_SCHEMA_MISSING_COLUMN',
      `${key}: mapped column${names.length > 1 ? 's' : ''} ${names.map((n) => `"${n}"`).join(', ')} not found; the file has ${visible.map((c) => `"${c.name}"`).join(', ')}`,
      { location: { file: key, column: names[0] }, permanent: true },
    );
  }

  const ref = (c: FileColumn) => `src.${sqlIdent(c.name)}`;
  const pidSql = `CAST(${ref(pid!)} AS VARCHAR)`;
  const versionSql = version ? `COALESCE(CAST(${ref(version)} AS VARCHAR), ${sqlString(job.model.version ?? '')})` : sqlString(job.model.version ?? '');
  const numberSql = (c: FileColumn | undefined) => (c ? (isNumeric(c.type) ? `CAST(${ref(c)} AS DOUBLE)` : `TRY_CAST(${ref(c)} AS DOUBLE)`) : 'NULL::DOUBLE');
  const textSql = (c: FileColumn | undefined) => (c ? `CAST(${ref(c)} AS VARCHAR)` : 'NULL::VARCHAR');

  const checks: Array<[condition: string, code: string, column: string]> = [
    [`prediction_id IS NULL OR trim(prediction_id) = ''`, 'IMP_ERR_ROW_PREDICTION_ID_MISSING', m.predictionId],
    [`length(prediction_id) > ${MAX_PREDICTION_ID_LENGTH}`, 'IMP_ERR_ROW_PREDICTION_ID_TOO_LONG', m.predictionId],
  ];
  if (ts) checks.push([`__ts_raw IS NOT NULL AND prediction_ts IS NULL`, 'IMP_ERR_ROW_TIMESTAMP_INVALID', ts.name]);
  for (const [c, name] of [[predScore, 'prediction_score'], [actScore, 'actual_score']] as const) {
    if (c && !isNumeric(c.type)) checks.push([`${sqlIdent(`__raw_${name}`)} IS NOT NULL AND ${name} IS NULL`, 'IMP_ERR_ROW_VALUE_INVALID', c.name]);
  }
  const firstProblem = (part: 1 | 2) =>
    `CASE ${checks.map(([cond, code, column]) => `WHEN ${cond} THEN ${sqlString(part === 1 ? code : column)}`).join(' ')} END`;

  // The last row of a prediction ID wins; earlier ones are rejected as duplicates.
  const dupKey = hasPredictions ? 'model_version, prediction_id' : 'prediction_id';
  const mapped = `SELECT
      CAST(src.${sqlIdent(source.rowNumberColumn)} AS BIGINT) AS source_row,
      ${pidSql} AS prediction_id,
      ${versionSql} AS model_version,
      ${timestampSql(ts, importTime)} AS prediction_ts,
      ${ts ? `CAST(${ref(ts)} AS VARCHAR)` : 'NULL'} AS __ts_raw,
      ${textSql(predLabel)} AS prediction_label,
      ${numberSql(predScore)} AS prediction_score,
      ${predScore && !isNumeric(predScore.type) ? `CAST(${ref(predScore)} AS VARCHAR)` : 'NULL'} AS __raw_prediction_score,
      ${textSql(actLabel)} AS actual_label,
      ${numberSql(actScore)} AS actual_score,
      ${actScore && !isNumeric(actScore.type) ? `CAST(${ref(actScore)} AS VARCHAR)` : 'NULL'} AS __raw_actual_score,
      ${structSql(features)} AS features,
      ${structSql(tags)} AS tags
    FROM ${source.sql} AS src`;
  const checked = `SELECT *, ${firstProblem(1)} AS reject_code, ${firstProblem(2)} AS reject_column FROM (${mapped})`;
  const stageSql = `SELECT * EXCLUDE (reject_code, reject_column, __ts_raw, __raw_prediction_score, __raw_actual_score),
      CASE WHEN reject_code IS NULL AND row_number() OVER (PARTITION BY reject_code IS NULL, ${dupKey} ORDER BY source_row DESC) > 1
           THEN 'IMP_ERR_ROW_DUPLICATE_ID' ELSE reject_code END AS reject_code,
      CASE WHEN reject_code IS NULL AND row_number() OVER (PARTITION BY reject_code IS NULL, ${dupKey} ORDER BY source_row DESC) > 1
           THEN ${sqlString(m.predictionId)} ELSE reject_column END AS reject_column
    FROM (${checked})`;

  return { stageSql, hasPredictions, hasActuals: !!(m.actualLabel ?? m.actualScore), features, tags };
}
