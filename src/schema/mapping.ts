import type { FieldMapping, JobConfig } from '../config/index.ts';
import { ImporterError, type ErrorCode, type ErrorDetail } from '../errors.ts';
import { sqlIdent, sqlString, type SourceRelation } from '../formats/index.ts';
import { INTERNAL_COLUMNS } from './select.ts';

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

/**
 * The per-file transformation, as SQL, plus what it produces. The staged rows have the columns
 * source_row, prediction_id, model_version, batch_id, prediction_ts, prediction_label,
 * prediction_score, actual_label, actual_score, features, tags, reject_code, reject_column.
 */
export interface MappingPlan {
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

const isNested = (t: string) => /^(STRUCT|MAP|UNION)|\[\d*\]$/i.test(t);
const isNumeric = (t: string) => !isNested(t) && /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|REAL|DECIMAL)/i.test(t);
const isTimestamp = (t: string) => !isNested(t) && /^(TIMESTAMP|DATE)/i.test(t);
const isText = (t: string) => t.toUpperCase() === 'VARCHAR';

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

/** SQL turning a timestamp column into TIMESTAMPTZ; naive values are read in the job's time zone. */
function timestampSql(job: JobConfig, column: FileColumn | undefined, importTime: Date): string {
  if (!column) return `TIMESTAMPTZ ${sqlString(importTime.toISOString())}`;
  const c = `src.${sqlIdent(column.name)}`;
  const tz = sqlString(job.timestamps.timeZone);
  const epoch = (x: string) => (job.timestamps.unit === 'ms' ? `to_timestamp(${x} / 1000.0)` : `to_timestamp(${x})`);
  if (/WITH TIME ZONE/i.test(column.type)) return c;
  if (isTimestamp(column.type)) return `timezone(${tz}, CAST(${c} AS TIMESTAMP))`;
  if (isNumeric(column.type)) return epoch(`CAST(${c} AS DOUBLE)`);
  // Text: epoch digits, or RFC 3339 / ISO 8601 with an offset (honoured) or without one (the job's zone).
  const t = `trim(CAST(${c} AS VARCHAR))`;
  return `CASE WHEN regexp_full_match(${t}, '-?[0-9]+(\\.[0-9]+)?') THEN ${epoch(`TRY_CAST(${t} AS DOUBLE)`)}
    WHEN regexp_matches(${t}, '([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)$') THEN TRY_CAST(${t} AS TIMESTAMPTZ)
    ELSE timezone(${tz}, TRY_CAST(${t} AS TIMESTAMP)) END`;
}

function structSql(fields: StructField[]): string {
  if (fields.length === 0) return 'NULL';
  return `struct_pack(${fields.map((f) => `${sqlIdent(f.name)} := CAST(src.${sqlIdent(f.column)} AS ${f.type})`).join(', ')})`;
}

/**
 * Builds the one SELECT that turns a file into staged rows: mapped, cast, and each row either
 * valid or carrying the code and column of its first problem. File-level problems (a mapped
 * column that is not in the file, a column whose type cannot serve its field) are all collected
 * and thrown together.
 */
export function planMapping(job: JobConfig, source: SourceRelation, columns: FileColumn[], key: string, importTime: Date): MappingPlan {
  const m: FieldMapping = job.schema;
  const visible = columns.filter((c) => c.name !== source.rowNumberColumn && !INTERNAL_COLUMNS.has(c.name));
  const byName = new Map(visible.map((c) => [c.name, c]));
  const missing: string[] = [];
  const problems: ErrorDetail[] = [];
  const col = (name: string | undefined): FileColumn | undefined => {
    if (name === undefined) return undefined;
    const found = byName.get(name);
    if (!found) missing.push(name);
    return found;
  };
  const expect = (field: string, c: FileColumn | undefined, ok: (t: string) => boolean, want: string) => {
    if (c && !ok(c.type)) {
      problems.push({ code: 'IMP_ERR_SCHEMA_BAD_TYPE', column: c.name, message: `column "${c.name}" (${field}) is ${c.type}; it must be ${want}` });
    }
  };

  const pid = col(m.predictionId);
  const ts = col(m.timestamp);
  const version = col(m.version);
  const batch = col(m.batchId);
  const predLabel = col(m.predictionLabel);
  const predScore = col(m.predictionScore);
  const actLabel = col(m.actualLabel);
  const actScore = col(m.actualScore);
  const scalar = (t: string) => !isNested(t);
  expect('predictionId', pid, (t) => scalar(t) && !/^(FLOAT|DOUBLE|REAL|BOOLEAN)/i.test(t), 'text or an integer');
  expect('timestamp', ts, (t) => isTimestamp(t) || isNumeric(t) || isText(t), 'a timestamp, epoch number or RFC 3339 text');
  for (const [field, c] of [['predictionScore', predScore], ['actualScore', actScore]] as const) expect(field, c, (t) => isNumeric(t) || isText(t), 'a number');
  for (const [field, c] of [['predictionLabel', predLabel], ['actualLabel', actLabel], ['version', version], ['batchId', batch]] as const) expect(field, c, scalar, 'a scalar (text, number or boolean)');

  const taken = new Set([m.predictionId, m.timestamp, m.version, m.batchId, m.predictionLabel, m.predictionScore, m.actualLabel, m.actualScore].filter((x): x is string => !!x));
  const tags = selectColumns(m.tags, visible, taken, missing, false);
  for (const t of tags) taken.add(t.column);
  for (const x of m.exclude ?? []) taken.add(x);
  const hasPredictions = !!(m.predictionLabel ?? m.predictionScore);
  const hasActuals = !!(m.actualLabel ?? m.actualScore);
  const features = hasPredictions ? selectColumns(m.features, visible, taken, missing, true) : [];

  if (missing.length) {
    const names = [...new Set(missing)];
    const have = visible.map((c) => `"${c.name}"`).join(', ');
    problems.unshift(...names.map((n) => ({ code: 'IMP_ERR_SCHEMA_MISSING_COLUMN' as ErrorCode, column: n, message: `mapped column "${n}" not found; the file has ${have}` })));
  }
  if (problems.length) {
    const first = problems[0];
    const message = problems.length === 1 ? `${key}: ${first.message}` : `${key}: ${problems.length} problems: ${problems.map((p) => p.message).join('; ')}`;
    const summary = missing.length > 1 && problems.length === missing.length
      ? `${key}: mapped columns ${[...new Set(missing)].map((n) => `"${n}"`).join(', ')} not found; the file has ${visible.map((c) => `"${c.name}"`).join(', ')}`
      : message;
    throw new ImporterError(first.code, summary, { location: { file: key, column: first.column }, permanent: true, details: problems });
  }

  const ref = (c: FileColumn) => `src.${sqlIdent(c.name)}`;
  const constOr = (c: FileColumn | undefined, constant: string | undefined) =>
    c ? `COALESCE(CAST(${ref(c)} AS VARCHAR), ${constant === undefined ? 'NULL' : sqlString(constant)})` : constant === undefined ? 'NULL::VARCHAR' : sqlString(constant);
  const numberSql = (c: FileColumn | undefined) => (c ? (isNumeric(c.type) ? `CAST(${ref(c)} AS DOUBLE)` : `TRY_CAST(${ref(c)} AS DOUBLE)`) : 'NULL::DOUBLE');
  const textSql = (c: FileColumn | undefined) => (c ? `CAST(${ref(c)} AS VARCHAR)` : 'NULL::VARCHAR');
  const rawSql = (c: FileColumn | undefined) => (c ? `CAST(${ref(c)} AS VARCHAR)` : 'NULL::VARCHAR');

  const earliest = sqlString(new Date(importTime.getTime() - job.timestamps.maxAge).toISOString());
  const latest = sqlString(new Date(importTime.getTime() + job.timestamps.maxAhead).toISOString());
  // Checked in this order; a row carries its first problem.
  const checks: Array<[condition: string, code: ErrorCode, column: string]> = [
    [`prediction_id IS NULL OR trim(prediction_id) = ''`, 'IMP_ERR_ROW_PREDICTION_ID_MISSING', m.predictionId],
    [`length(prediction_id) > ${MAX_PREDICTION_ID_LENGTH}`, 'IMP_ERR_ROW_PREDICTION_ID_TOO_LONG', m.predictionId],
  ];
  if (ts) {
    checks.push([`__raw_ts IS NOT NULL AND prediction_ts IS NULL`, 'IMP_ERR_ROW_TIMESTAMP_INVALID', ts.name]);
    checks.push([`prediction_ts < TIMESTAMPTZ ${earliest} OR prediction_ts > TIMESTAMPTZ ${latest}`, 'IMP_ERR_ROW_TIMESTAMP_OUT_OF_RANGE', ts.name]);
  }
  for (const [c, name] of [[predScore, 'prediction_score'], [actScore, 'actual_score']] as const) {
    if (!c) continue;
    if (!isNumeric(c.type)) checks.push([`${sqlIdent(`__raw_${name}`)} IS NOT NULL AND ${name} IS NULL`, 'IMP_ERR_ROW_VALUE_INVALID', c.name]);
    checks.push([`isnan(${name}) OR isinf(${name})`, 'IMP_ERR_ROW_SCORE_NOT_FINITE', c.name]);
  }
  if (hasPredictions) {
    checks.push([`prediction_label IS NULL AND prediction_score IS NULL`, 'IMP_ERR_ROW_PREDICTION_MISSING', (m.predictionLabel ?? m.predictionScore)!]);
  } else {
    checks.push([`actual_label IS NULL AND actual_score IS NULL`, 'IMP_ERR_ROW_ACTUAL_MISSING', (m.actualLabel ?? m.actualScore)!]);
  }
  const firstProblem = (part: 'code' | 'column') =>
    `CASE ${checks.map(([cond, code, column]) => `WHEN ${cond} THEN ${sqlString(part === 'code' ? code : column)}`).join(' ')} END`;

  const mapped = `SELECT
      CAST(src.${sqlIdent(source.rowNumberColumn)} AS BIGINT) AS source_row,
      ${textSql(pid)} AS prediction_id,
      ${constOr(version, job.model.version ?? '')} AS model_version,
      ${constOr(batch, job.model.batchId)} AS batch_id,
      ${timestampSql(job, ts, importTime)} AS prediction_ts,
      ${rawSql(ts)} AS __raw_ts,
      ${textSql(predLabel)} AS prediction_label,
      ${numberSql(predScore)} AS prediction_score,
      ${predScore && !isNumeric(predScore.type) ? rawSql(predScore) : 'NULL'} AS __raw_prediction_score,
      ${textSql(actLabel)} AS actual_label,
      ${numberSql(actScore)} AS actual_score,
      ${actScore && !isNumeric(actScore.type) ? rawSql(actScore) : 'NULL'} AS __raw_actual_score,
      ${structSql(features)} AS features,
      ${structSql(tags)} AS tags
    FROM ${source.sql} AS src`;
  const checked = `SELECT *, ${firstProblem('code')} AS __code, ${firstProblem('column')} AS __column FROM (${mapped})`;
  // The last row of a prediction ID wins; earlier valid ones are rejected as duplicates.
  const dupKey = hasPredictions ? 'model_version, prediction_id' : 'prediction_id';
  const isDuplicate = `__code IS NULL AND row_number() OVER (PARTITION BY __code IS NULL, ${dupKey} ORDER BY source_row DESC) > 1`;
  const stageSql = `SELECT * EXCLUDE (__code, __column, __raw_ts, __raw_prediction_score, __raw_actual_score),
      CASE WHEN ${isDuplicate} THEN 'IMP_ERR_ROW_DUPLICATE_ID' ELSE __code END AS reject_code,
      CASE WHEN ${isDuplicate} THEN ${sqlString(m.predictionId)} ELSE __column END AS reject_column
    FROM (${checked})`;

  return { stageSql, hasPredictions, hasActuals, features, tags };
}
