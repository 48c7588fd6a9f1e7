import type { FeatureType, FieldMapping, JobConfig } from '../config/index.ts';
import { ImporterError, type ErrorCode, type ErrorDetail } from '../errors.ts';
import { sqlIdent, sqlString, type SourceRelation } from '../formats/index.ts';
import { INTERNAL_COLUMNS } from './select.ts';

/** A column of a file as DuckDB describes it. */
export interface FileColumn {
  name: string;
  type: string;
}

/** A field of a stored STRUCT (a feature, tag, SHAP value or embedding): its name, source column, stored type and value SQL. */
export interface StructField {
  name: string;
  column: string;
  type: string;
  sql: string;
}

/**
 * The STRUCT columns of a model table, each holding the fields one file brings: features, tags,
 * SHAP values, embeddings, raw inputs (kept, not features), named predictions, an object-detection
 * model's predicted boxes and a generative model's prompt, response and token counts.
 */
export interface StructColumns {
  features: StructField[];
  tags: StructField[];
  shap: StructField[];
  embeddings: StructField[];
  raw_inputs: StructField[];
  named_predictions: StructField[];
  prediction_boxes: StructField[];
  llm: StructField[];
}

/** What each STRUCT column holds, as messages name it. */
export const STRUCT_FIELD_KINDS: Record<keyof StructColumns, string> = {
  features: 'feature', tags: 'tag', shap: 'SHAP value', embeddings: 'embedding', raw_inputs: 'raw input',
  named_predictions: 'prediction', prediction_boxes: 'bounding box field', llm: 'generative field',
};

/**
 * The per-file transformation, as SQL, plus what it produces. `rowsSql` yields the columns
 * source_row, prediction_id, model_version, batch_id, prediction_ts, prediction_label,
 * prediction_score, prediction_scores, threshold_scores, prediction_group_id, rank, actual_label,
 * actual_score, actual_scores, actual_boxes, relevance_label, relevance_score, the STRUCT columns
 * (see `StructColumns`), has_actual, reject_code, reject_column. A row's reject code is its first failed rule; duplicates of `uniqueKey` are
 * marked after staging (see `stageFile`), since finding them needs the whole file.
 */
export interface MappingPlan {
  rowsSql: string;
  /** Columns that identify a row: the last row of a file wins, earlier ones are rejected as duplicates. */
  uniqueKey: string[];
  /** The file's prediction ID column, named by duplicate rejections. */
  idColumn: string;
  hasPredictions: boolean;
  hasActuals: boolean;
  /** A file of SHAP values alone (no predictions, no actuals): its rows are matched to predictions by ID. */
  shapOnly: boolean;
  structs: StructColumns;
}

/** Longest prediction ID accepted, as on the hosted platforms. */
export const MAX_PREDICTION_ID_LENGTH = 128;
/** Highest rank accepted in a ranking group, as on the hosted platforms. */
export const MAX_RANK = 100;

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
const isList = (t: string) => /\[\d*\]$/.test(t);
const isNumeric = (t: string) => !isNested(t) && /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|REAL|DECIMAL)/i.test(t);
const isTimestamp = (t: string) => !isNested(t) && /^(TIMESTAMP|DATE)/i.test(t);
const isText = (t: string) => t.toUpperCase() === 'VARCHAR';
const ref = (c: FileColumn | string) => `src.${sqlIdent(typeof c === 'string' ? c : c.name)}`;

/** SQL turning a timestamp-like column into TIMESTAMPTZ; naive values are read in the job's time zone. */
function timestampSql(job: JobConfig, column: FileColumn): string {
  const c = ref(column);
  const tz = sqlString(job.timestamps.timeZone);
  // Epochs beyond ±1e11 s (years -1200..5100) are no timestamp anyone meant, and DuckDB's
  // to_timestamp fails the whole statement on them: NULL makes them the row's IMP_ERR_ROW_TIMESTAMP_INVALID.
  const epoch = (x: string) => {
    const seconds = job.timestamps.unit === 'ms' ? `(${x}) / 1000.0` : `(${x})`;
    return `(CASE WHEN abs(${seconds}) < 1e11 THEN to_timestamp(${seconds}) END)`;
  };
  if (/WITH TIME ZONE/i.test(column.type)) return c;
  if (isTimestamp(column.type)) return `timezone(${tz}, CAST(${c} AS TIMESTAMP))`;
  if (isNumeric(column.type)) return epoch(`CAST(${c} AS DOUBLE)`);
  // Text: RFC 3339 / ISO 8601 with an offset (honoured) or without one (the job's zone), or epoch digits.
  // A digit string is never a timestamp to DuckDB's casts, so the casts go first and the digit test
  // (a regular expression) runs only on what they did not read: most rows cost one cast.
  const raw = `CAST(${c} AS VARCHAR)`;
  const t = `trim(${raw})`;
  const digits = `CASE WHEN regexp_full_match(${t}, '-?[0-9]+(\\.[0-9]+)?') THEN ${epoch(`TRY_CAST(${t} AS DOUBLE)`)} END`;
  // In UTC a cast to TIMESTAMPTZ is the whole rule: it honours offsets and zone names, and reads a
  // value without one in the session's TimeZone, which every engine sets to UTC (src/engine).
  if (isUtc(job.timestamps.timeZone)) return `coalesce(TRY_CAST(${raw} AS TIMESTAMPTZ), TRY_CAST(${t} AS TIMESTAMPTZ), ${digits})`;
  // Elsewhere the text says whether it carries an offset: a cast to TIMESTAMP would drop it.
  return `CASE WHEN regexp_matches(${t}, '[T ][0-9:.]+\\s*([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)$') THEN TRY_CAST(${t} AS TIMESTAMPTZ)
    ELSE coalesce(timezone(${tz}, TRY_CAST(${t} AS TIMESTAMP)), TRY_CAST(${t} AS TIMESTAMPTZ), ${digits}) END`;
}

const isUtc = (zone: string) => /^(Etc\/)?(UTC|UCT|Universal|Zulu)$/i.test(zone);

function structSql(fields: StructField[]): string {
  if (fields.length === 0) return 'NULL';
  return `struct_pack(${fields.map((f) => `${sqlIdent(f.name)} := ${f.sql}`).join(', ')})`;
}

/** Row checks collected while mapping: a condition over the mapped row, its code and the file column it blames. */
type Check = [condition: string, code: ErrorCode, column: string];

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
  const badType = (field: string, c: FileColumn, want: string) =>
    problems.push({ code: 'IMP_ERR_SCHEMA_BAD_TYPE', column: c.name, message: `column "${c.name}" (${field}) is ${c.type}; it must be ${want}` });
  const expect = (field: string, c: FileColumn | undefined, ok: (t: string) => boolean, want: string) => {
    if (c && !ok(c.type)) badType(field, c, want);
  };
  // Extra mapped columns carrying raw values that row checks compare against; dropped before staging.
  const helpers: string[] = [];
  const checks: Check[] = [];

  const pid = col(m.predictionId);
  const ts = col(m.timestamp);
  const version = col(m.version);
  const batch = col(m.batchId);
  const predLabel = col(m.predictionLabel);
  const predScore = col(m.predictionScore);
  const actLabel = col(m.actualLabel);
  const actScore = col(m.actualScore);
  const groupId = col(m.predictionGroupId);
  const rank = col(m.rank);
  const relLabel = col(m.relevanceLabel);
  const relScore = col(m.relevanceScore);
  const thresholds = col(m.thresholdScores);
  const scalar = (t: string) => !isNested(t);
  const numberLike = (t: string) => isNumeric(t) || isText(t);
  const isMap = (t: string) => /^(MAP|STRUCT)/i.test(t);
  const multiclass = job.model.type === 'multiclass';
  const scoreMap = multiclass && predScore !== undefined && isMap(predScore.type);
  const actualScoreMap = multiclass && actScore !== undefined && isMap(actScore.type);
  expect('predictionId', pid, (t) => scalar(t) && !/^(FLOAT|DOUBLE|REAL|BOOLEAN)/i.test(t), 'text or an integer');
  expect('timestamp', ts, (t) => isTimestamp(t) || isNumeric(t) || isText(t), 'a timestamp, epoch number or RFC 3339 text');
  if (!scoreMap) expect('predictionScore', predScore, numberLike, multiclass ? 'a number or a map of class to score' : 'a number');
  if (!actualScoreMap) expect('actualScore', actScore, numberLike, multiclass ? 'a number or a map of class to score' : 'a number');
  expect('thresholdScores', thresholds, isMap, 'a map (or struct) of class to threshold');
  for (const [field, c] of [['rank', rank], ['relevanceScore', relScore]] as const) expect(field, c, numberLike, 'a number');
  for (const [field, c] of [['predictionLabel', predLabel], ['actualLabel', actLabel], ['version', version], ['batchId', batch], ['predictionGroupId', groupId], ['relevanceLabel', relLabel]] as const) {
    expect(field, c, scalar, 'a scalar (text, number or boolean)');
  }

  const hasPredictions = !!(m.predictionLabel ?? m.predictionScore ?? m.rank ?? m.predictions ?? m.predictionBoxes ?? m.prompt ?? m.response);
  const hasActuals = !!(m.actualLabel ?? m.actualScore ?? m.relevanceLabel ?? m.relevanceScore ?? m.actualBoxes);
  const taken = new Set(
    [m.predictionId, m.timestamp, m.version, m.batchId, m.predictionLabel, m.predictionScore, m.actualLabel, m.actualScore, m.predictionGroupId, m.rank, m.relevanceLabel, m.relevanceScore,
      m.thresholdScores, m.predictionBoxes?.coordinates, m.predictionBoxes?.categories, m.predictionBoxes?.scores, m.actualBoxes?.coordinates, m.actualBoxes?.categories, m.actualBoxes?.scores,
      m.prompt?.text, m.prompt?.vector, m.response?.text, m.response?.vector, m.tokenCounts?.prompt, m.tokenCounts?.response, m.tokenCounts?.total]
      .filter((x): x is string => !!x),
  );

  // Embeddings: a vector (list of numbers), optional raw data and link; the dimension is checked per row.
  const embeddings: StructField[] = [];
  for (const e of m.embeddings ?? []) {
    const vector = col(e.vector);
    const raw = col(e.rawData);
    const link = col(e.link);
    for (const c of [e.vector, e.rawData, e.link]) if (c) taken.add(c);
    if (!vector) continue;
    if (!isList(vector.type) || !isNumeric(vector.type.replace(/\[\d*\]$/, ''))) {
      badType(`embedding ${e.name}`, vector, 'a list of numbers');
      continue;
    }
    const dimension = e.dimension !== undefined
      ? String(e.dimension)
      // The first vector of each file sets its dimension (a relation over several files partitions by file).
      : `first_value(len(${ref(vector)}) IGNORE NULLS) OVER (${source.fileIndexColumn ? `PARTITION BY ${ref(source.fileIndexColumn)} ` : ''}ORDER BY ${ref(source.rowNumberColumn)} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)`;
    const flag = `__emb_${embeddings.length}`;
    helpers.push(`${ref(vector)} IS NOT NULL AND len(${ref(vector)}) <> ${dimension} AS ${flag}`);
    checks.push([flag, 'IMP_ERR_ROW_EMBEDDING_DIMENSION', vector.name]);
    embeddings.push({
      name: e.name,
      column: vector.name,
      type: 'STRUCT(vector DOUBLE[], raw_data VARCHAR, link VARCHAR)',
      sql: `struct_pack(vector := CAST(${ref(vector)} AS DOUBLE[]), raw_data := ${raw ? `CAST(${ref(raw)} AS VARCHAR)` : 'NULL::VARCHAR'}, link := ${link ? `CAST(${ref(link)} AS VARCHAR)` : 'NULL::VARCHAR'})`,
    });
  }

  const pick = (selection: string | readonly string[] | undefined, fallbackAll: boolean): Array<{ name: string; column: FileColumn }> => {
    if (selection === undefined) return fallbackAll ? visible.filter((c) => !taken.has(c.name)).map((c) => ({ name: c.name, column: c })) : [];
    if (typeof selection === 'string') {
      return visible
        .filter((c) => c.name.startsWith(selection) && c.name.length > selection.length && !taken.has(c.name))
        .map((c) => ({ name: c.name.slice(selection.length), column: c }));
    }
    return selection.flatMap((name) => {
      const c = col(name);
      return c ? [{ name, column: c }] : [];
    });
  };
  const plain = (p: { name: string; column: FileColumn }): StructField => {
    const type = storedType(p.column.type);
    return { name: p.name, column: p.column.name, type, sql: `CAST(${ref(p.column)} AS ${type})` };
  };

  const shap = pick(m.shapValues, false).map((p) => {
    if (!isNumeric(p.column.type)) badType(`SHAP value ${p.name}`, p.column, 'a number');
    return { name: p.name, column: p.column.name, type: 'DOUBLE', sql: `CAST(${ref(p.column)} AS DOUBLE)` };
  });
  for (const s of shap) taken.add(s.column);
  const tags = pick(m.tags, false).map(plain);
  for (const t of tags) taken.add(t.column);
  const rawInputs = pick(m.rawInputs, false).map(plain);
  for (const r of rawInputs) taken.add(r.column);
  // Aporia's predictions dict: a list of columns (types as in the file), or column → declared type (checked and cast like a feature's).
  const named = m.predictions === undefined ? []
    : Array.isArray(m.predictions) ? pick(m.predictions, false).map(plain)
      : pick(Object.keys(m.predictions), false).map((p) => typedFeature(job, p, (m.predictions as Record<string, FeatureType>)[p.name], helpers, checks, badType));
  for (const n of named) taken.add(n.column);
  for (const x of m.exclude ?? []) taken.add(x);
  const features = hasPredictions ? pick(m.features, true).map((p) => typedFeature(job, p, m.featureTypes?.[p.name], helpers, checks, badType)) : [];
  const boxes = (side: 'prediction' | 'actual', spec: FieldMapping['predictionBoxes']) =>
    spec && planBoxes(`${side}Boxes`, col(spec.coordinates), col(spec.categories), col(spec.scores), helpers, checks, badType);
  const predictionBoxes = boxes('prediction', m.predictionBoxes);
  const actualBoxes = boxes('actual', m.actualBoxes);
  const llm = planGenerative(m, col, helpers, checks, badType);

  if (missing.length) {
    const names = [...new Set(missing)];
    const have = visible.map((c) => `"${c.name}"`).join(', ');
    problems.unshift(...names.map((n) => ({ code: 'IMP_ERR_SCHEMA_MISSING_COLUMN' as ErrorCode, column: n, message: `mapped column "${n}" not found; the file has ${have}` })));
  }
  if (problems.length) {
    const first = problems[0];
    const onlyMissing = problems.every((p) => p.code === 'IMP_ERR_SCHEMA_MISSING_COLUMN');
    const message = problems.length === 1
      ? `${key}: ${first.message}`
      : onlyMissing
        ? `${key}: mapped columns ${problems.map((p) => `"${p.column}"`).join(', ')} not found; the file has ${visible.map((c) => `"${c.name}"`).join(', ')}`
        : `${key}: ${problems.length} problems: ${problems.map((p) => p.message).join('; ')}`;
    throw new ImporterError(first.code, message, { location: { file: key, column: first.column }, permanent: true, details: problems });
  }

  const constOr = (c: FileColumn | undefined, constant: string | undefined) =>
    c ? `COALESCE(CAST(${ref(c)} AS VARCHAR), ${constant === undefined ? 'NULL' : sqlString(constant)})` : constant === undefined ? 'NULL::VARCHAR' : sqlString(constant);
  const numberSql = (c: FileColumn | undefined) => (c ? (isNumeric(c.type) ? `CAST(${ref(c)} AS DOUBLE)` : `TRY_CAST(${ref(c)} AS DOUBLE)`) : 'NULL::DOUBLE');
  const textSql = (c: FileColumn | undefined) => (c ? `CAST(${ref(c)} AS VARCHAR)` : 'NULL::VARCHAR');
  const notANumber = (c: FileColumn | undefined, mappedName: string) => {
    if (c && !isNumeric(c.type)) {
      helpers.push(`${ref(c)} IS NOT NULL AND TRY_CAST(${ref(c)} AS DOUBLE) IS NULL AS ${sqlIdent(`__nan_${mappedName}`)}`);
      checks.push([sqlIdent(`__nan_${mappedName}`), 'IMP_ERR_ROW_VALUE_INVALID', c.name]);
    }
  };

  // Multiclass: a map (or struct) of class → score; the scalar score is the predicted (actual) class's, else the highest.
  const mapSql = (c: FileColumn | undefined) => !c
    ? 'NULL::MAP(VARCHAR, DOUBLE)'
    : /^MAP/i.test(c.type)
      ? `map_from_entries(list_transform(map_entries(${ref(c)}), e -> {'key': CAST(e.key AS VARCHAR), 'value': CAST(e.value AS DOUBLE)}))`
      : `map_from_entries(list_transform(json_keys(to_json(${ref(c)})), k -> {'key': k, 'value': CAST(json_extract(to_json(${ref(c)}), '$."' || k || '"') AS DOUBLE)}))`;
  const scoresSql = scoreMap ? mapSql(predScore) : mapSql(undefined);

  const earliest = sqlString(new Date(importTime.getTime() - job.timestamps.maxAge).toISOString());
  const latest = sqlString(new Date(importTime.getTime() + job.timestamps.maxAhead).toISOString());
  // Checked in this order; a row carries its first problem.
  const rowChecks: Check[] = [
    [`prediction_id IS NULL OR trim(prediction_id) = ''`, 'IMP_ERR_ROW_PREDICTION_ID_MISSING', m.predictionId],
    [`length(prediction_id) > ${MAX_PREDICTION_ID_LENGTH}`, 'IMP_ERR_ROW_PREDICTION_ID_TOO_LONG', m.predictionId],
  ];
  if (ts) {
    helpers.push(`${ref(ts)} IS NOT NULL AS __ts_given`);
    rowChecks.push([`__ts_given AND prediction_ts IS NULL`, 'IMP_ERR_ROW_TIMESTAMP_INVALID', ts.name]);
    rowChecks.push([`prediction_ts < TIMESTAMPTZ ${earliest} OR prediction_ts > TIMESTAMPTZ ${latest}`, 'IMP_ERR_ROW_TIMESTAMP_OUT_OF_RANGE', ts.name]);
  }
  if (!scoreMap) notANumber(predScore, 'prediction_score');
  if (!actualScoreMap) notANumber(actScore, 'actual_score');
  notANumber(relScore, 'relevance_score');
  notANumber(rank, 'rank');
  rowChecks.push(...checks.splice(0));
  if (predScore) rowChecks.push([scoreMap ? `list_bool_or(list_transform(map_values(prediction_scores), v -> isnan(v) OR isinf(v)))` : `isnan(prediction_score) OR isinf(prediction_score)`, 'IMP_ERR_ROW_SCORE_NOT_FINITE', predScore.name]);
  if (actScore) rowChecks.push([actualScoreMap ? `list_bool_or(list_transform(map_values(actual_scores), v -> isnan(v) OR isinf(v)))` : `isnan(actual_score) OR isinf(actual_score)`, 'IMP_ERR_ROW_SCORE_NOT_FINITE', actScore.name]);
  if (groupId) rowChecks.push([`prediction_group_id IS NULL OR trim(prediction_group_id) = ''`, 'IMP_ERR_ROW_GROUP_ID_MISSING', groupId.name]);
  if (rank) rowChecks.push([`rank IS NULL OR rank <> floor(rank) OR rank < 1 OR rank > ${MAX_RANK}`, 'IMP_ERR_ROW_RANK_OUT_OF_RANGE', rank.name]);
  if (thresholds) rowChecks.push([`list_bool_or(list_transform(map_values(threshold_scores), v -> isnan(v) OR isinf(v)))`, 'IMP_ERR_ROW_SCORE_NOT_FINITE', thresholds.name]);
  const shapOnly = !hasPredictions && !hasActuals;
  if (hasPredictions && !rank) {
    // Values beyond label and score that make a row a prediction: named predictions, boxes, a response.
    const others = [...named.map((n) => n.column), m.predictionBoxes?.coordinates, m.response?.text].filter((c): c is string => !!c && byName.has(c));
    if (others.length) helpers.push(`(${others.map((c) => `${ref(c)} IS NOT NULL`).join(' OR ')}) AS __prediction_given`);
    rowChecks.push([`prediction_label IS NULL AND prediction_score IS NULL${others.length ? ' AND NOT __prediction_given' : ''}`, 'IMP_ERR_ROW_PREDICTION_MISSING',
      (m.predictionLabel ?? m.predictionScore ?? m.response?.text ?? m.predictionBoxes?.coordinates ?? named[0]?.column)!]);
  } else if (hasActuals && !hasPredictions) {
    rowChecks.push([`actual_label IS NULL AND actual_score IS NULL AND relevance_label IS NULL AND relevance_score IS NULL AND actual_boxes IS NULL`, 'IMP_ERR_ROW_ACTUAL_MISSING',
      (m.actualLabel ?? m.actualScore ?? m.relevanceLabel ?? m.relevanceScore ?? m.actualBoxes?.coordinates)!]);
  } else if (shapOnly) {
    rowChecks.push([shap.length ? shap.map((f) => `shap.${sqlIdent(f.name)} IS NULL`).join(' AND ') : 'true', 'IMP_ERR_ROW_SHAP_MISSING', shap[0]?.column ?? m.shapValues!]);
  }
  const firstProblem = (part: 'code' | 'column') =>
    `CASE ${rowChecks.map(([cond, code, column]) => `WHEN ${cond} THEN ${sqlString(part === 'code' ? code : column)}`).join(' ')} END`;

  const structs: StructColumns = {
    features, tags, shap, embeddings, raw_inputs: rawInputs, named_predictions: named, prediction_boxes: predictionBoxes ?? [], llm,
  };
  // No coordinates, no boxes (a NULL, not a struct of NULLs): the row then has no actual.
  const fixedBoxes = (fields: StructField[] | undefined) => fields?.length
    ? `CASE WHEN ${fields[0].sql} IS NOT NULL THEN struct_pack(${['coordinates', 'categories', 'scores'].map((f) => `${f} := ${fields.find((x) => x.name === f)?.sql ?? 'NULL'}::${BOX_FIELD_TYPES[f]}`).join(', ')}) END`
    : `NULL::${BOXES_TYPE}`;
  const mapped = `SELECT
      CAST(${ref(source.rowNumberColumn)} AS BIGINT) AS source_row,
      ${textSql(pid)} AS prediction_id,
      ${constOr(version, job.model.version)} AS model_version,
      ${constOr(batch, job.model.batchId)} AS batch_id,
      ${ts ? `CASE WHEN ${ref(ts)} IS NULL THEN TIMESTAMPTZ ${sqlString(importTime.toISOString())} ELSE ${timestampSql(job, ts)} END` : `TIMESTAMPTZ ${sqlString(importTime.toISOString())}`} AS prediction_ts,
      ${textSql(predLabel)} AS prediction_label,
      ${scoreMap ? 'NULL::DOUBLE' : numberSql(predScore)} AS prediction_score,
      ${scoresSql} AS prediction_scores,
      ${mapSql(thresholds)} AS threshold_scores,
      ${textSql(groupId)} AS prediction_group_id,
      ${numberSql(rank)} AS rank,
      ${textSql(actLabel)} AS actual_label,
      ${actualScoreMap ? 'NULL::DOUBLE' : numberSql(actScore)} AS actual_score,
      ${actualScoreMap ? mapSql(actScore) : mapSql(undefined)} AS actual_scores,
      ${fixedBoxes(actualBoxes)} AS actual_boxes,
      ${textSql(relLabel)} AS relevance_label,
      ${numberSql(relScore)} AS relevance_score,
      ${Object.entries(structs).map(([name, fields]) => `${structSql(fields)} AS ${name}`).join(',\n      ')}
      ${helpers.map((h) => `, ${h}`).join('\n      ')}
      ${source.fileIndexColumn ? `, CAST(${ref(source.fileIndexColumn)} AS BIGINT) AS file_index` : ''}
    FROM ${source.sql} AS src`;
  const fromMap = (scalar: string, map: string, label: string) => `COALESCE(element_at(${map}, ${label})[1], list_max(map_values(${map}))) AS ${scalar}`;
  const replaced = [
    ...(scoreMap ? [fromMap('prediction_score', 'prediction_scores', 'prediction_label')] : []),
    ...(actualScoreMap ? [fromMap('actual_score', 'actual_scores', 'actual_label')] : []),
  ];
  const scored = replaced.length ? `SELECT * REPLACE (${replaced.join(', ')}) FROM (${mapped})` : mapped;
  const checked = `SELECT *, ${firstProblem('code')} AS __code, ${firstProblem('column')} AS __column FROM (${scored})`;
  const helperNames = helpers.map((h) => h.slice(h.lastIndexOf(' AS ') + 4));
  const rowsSql = `SELECT * EXCLUDE (rank, __code, __column${helperNames.map((h) => `, ${h}`).join('')}),
      CAST(rank AS INTEGER) AS rank,
      (actual_label IS NOT NULL OR actual_score IS NOT NULL OR relevance_label IS NOT NULL OR relevance_score IS NOT NULL OR actual_boxes IS NOT NULL) AS has_actual,
      __code AS reject_code, __column AS reject_column
    FROM (${checked})`;
  // A prediction is one (version, ID); a file of actuals only knows IDs.
  const uniqueKey = hasPredictions ? ['model_version', 'prediction_id'] : ['prediction_id'];
  return { rowsSql, uniqueKey, idColumn: m.predictionId, hasPredictions, hasActuals, shapOnly, structs };
}

/**
 * A feature, cast to its declared type when the job declares one: numeric → DOUBLE, string and
 * categorical → VARCHAR, boolean → BOOLEAN, datetime → TIMESTAMPTZ, tensor → DOUBLE[] of the
 * declared shape. Values that do not cast are row errors on the feature's column; a column that
 * can never cast (a struct declared numeric) is a file-level error.
 */
function typedFeature(
  job: JobConfig,
  p: { name: string; column: FileColumn },
  declared: FeatureType | undefined,
  helpers: string[],
  checks: Check[],
  badType: (field: string, c: FileColumn, want: string) => void,
): StructField {
  const c = p.column;
  const base = { name: p.name, column: c.name };
  const flag = sqlIdent(`__feat_${helpers.length}`);
  const failsWhen = (cast: string, code: ErrorCode = 'IMP_ERR_ROW_VALUE_INVALID') => {
    helpers.push(`${ref(c)} IS NOT NULL AND (${cast}) IS NULL AS ${flag}`);
    checks.push([flag, code, c.name]);
  };
  if (declared === undefined) {
    const type = storedType(c.type);
    return { ...base, type, sql: `CAST(${ref(c)} AS ${type})` };
  }
  if (typeof declared === 'object') {
    const dims = declared.tensor.dimensions;
    const size = dims.reduce((a, b) => a * b, 1);
    if (!isList(c.type)) {
      badType(`feature ${p.name}, tensor`, c, `a list of numbers of shape [${dims.join(', ')}]`);
      return { ...base, type: 'DOUBLE[]', sql: 'NULL' };
    }
    const flat = dims.length > 1 && /\]\[\d*\]$/.test(c.type) ? `flatten(${ref(c)})` : ref(c);
    const sql = `TRY_CAST(${flat} AS DOUBLE[])`;
    helpers.push(`${ref(c)} IS NOT NULL AND (${sql} IS NULL OR len(${sql}) <> ${size}) AS ${flag}`);
    checks.push([flag, 'IMP_ERR_ROW_TENSOR_SHAPE', c.name]);
    return { ...base, type: 'DOUBLE[]', sql };
  }
  if (isNested(c.type) && declared !== 'string' && declared !== 'categorical') {
    badType(`feature ${p.name}, ${declared}`, c, declared === 'datetime' ? 'a timestamp, epoch number or text' : `a ${declared} value`);
    return { ...base, type: 'VARCHAR', sql: 'NULL' };
  }
  switch (declared) {
    case 'numeric': {
      const sql = `TRY_CAST(${ref(c)} AS DOUBLE)`;
      if (!isNumeric(c.type)) failsWhen(sql);
      return { ...base, type: 'DOUBLE', sql };
    }
    case 'boolean': {
      const sql = `TRY_CAST(${ref(c)} AS BOOLEAN)`;
      if (!/^BOOLEAN$/i.test(c.type)) failsWhen(sql);
      return { ...base, type: 'BOOLEAN', sql };
    }
    case 'datetime': {
      const sql = timestampSql(job, c);
      if (!isTimestamp(c.type)) failsWhen(sql);
      return { ...base, type: 'TIMESTAMP WITH TIME ZONE', sql };
    }
    default:
      return { ...base, type: 'VARCHAR', sql: `CAST(${ref(c)} AS VARCHAR)` };
  }
}

/**
 * The fields of a model's STRUCT column (features, tags, SHAP, embeddings) once a file's fields
 * join those stored: new fields are added, a BIGINT field that arrives as DOUBLE is widened, a
 * DOUBLE that arrives as BIGINT stays DOUBLE, any other type change fails the file naming the field.
 */
export function mergeStructFields(modelId: string, column: string, stored: Array<[string, string]>, fields: StructField[]): { merged: Map<string, string>; changed: boolean } {
  const merged = new Map(stored);
  let changed = false;
  for (const f of fields) {
    const old = merged.get(f.name);
    if (old === undefined) {
      merged.set(f.name, f.type);
      changed = true;
    } else if (old !== f.type) {
      if (old === 'BIGINT' && f.type === 'DOUBLE') {
        merged.set(f.name, 'DOUBLE');
        changed = true;
      } else if (!(old === 'DOUBLE' && f.type === 'BIGINT')) {
        const what = STRUCT_FIELD_KINDS[column as keyof StructColumns] ?? column;
        throw new ImporterError(
          'IMP_ERR_SCHEMA_FEATURE_CONFLICT',
          `${what} "${f.name}" (column "${f.column}") is ${f.type} in this file but ${old} in model "${modelId}"; cast it in the producer or rename it`,
          { location: { column: f.column }, permanent: true },
        );
      }
    }
  }
  return { merged, changed };
}

/** Stored types of the bounding-box fields: one entry per box. */
const BOX_FIELD_TYPES: Record<string, string> = { coordinates: 'DOUBLE[][]', categories: 'VARCHAR[]', scores: 'DOUBLE[]' };
/** The type of a row's bounding boxes where they have a column of their own (actuals). */
export const BOXES_TYPE = `STRUCT(${Object.entries(BOX_FIELD_TYPES).map(([f, t]) => `${f} ${t}`).join(', ')})`;

/**
 * An object-detection model's bounding boxes: coordinates (a list of 4-number lists), categories
 * (one per box) and scores (one per box, optional), as fields. Each row is checked: every box
 * has 4 finite coordinates with min <= max, and as many categories (and scores) as boxes.
 */
function planBoxes(
  field: string,
  coordinates: FileColumn | undefined,
  categories: FileColumn | undefined,
  scores: FileColumn | undefined,
  helpers: string[],
  checks: Check[],
  badType: (field: string, c: FileColumn, want: string) => void,
): StructField[] {
  const listOf = (t: string, depth: number) => (/(\[\d*\])+$/.exec(t)?.[0].split('[').length ?? 1) - 1 === depth;
  const numbers = (t: string, depth: number) => listOf(t, depth) && isNumeric(t.replace(/(\[\d*\])+$/, ''));
  if (coordinates && !numbers(coordinates.type, 2)) badType(`${field}.coordinates`, coordinates, 'a list of [x_min, y_min, x_max, y_max] lists of numbers');
  if (categories && !listOf(categories.type, 1)) badType(`${field}.categories`, categories, 'a list of labels, one per box');
  if (scores && !numbers(scores.type, 1)) badType(`${field}.scores`, scores, 'a list of numbers, one per box');
  if (!coordinates || !categories) return [];
  const c = ref(coordinates);
  const n = helpers.length;
  const badBox = `b IS NULL OR len(b) <> 4 OR list_bool_or(list_transform(b, x -> x IS NULL OR isnan(x) OR isinf(x))) OR b[1] > b[3] OR b[2] > b[4]`;
  helpers.push(`${c} IS NOT NULL AND coalesce(list_bool_or(list_transform(CAST(${c} AS DOUBLE[][]), b -> ${badBox})), false) AS __box_${n}`);
  checks.push([`__box_${n}`, 'IMP_ERR_ROW_BOUNDING_BOX', coordinates.name]);
  helpers.push(`len(${c}) IS DISTINCT FROM len(${ref(categories)}) AS __box_categories_${n}`);
  checks.push([`__box_categories_${n}`, 'IMP_ERR_ROW_BOUNDING_BOX', categories.name]);
  if (scores) {
    helpers.push(`${ref(scores)} IS NOT NULL AND len(${c}) IS DISTINCT FROM len(${ref(scores)}) AS __box_scores_${n}`);
    checks.push([`__box_scores_${n}`, 'IMP_ERR_ROW_BOUNDING_BOX', scores.name]);
  }
  const fields: StructField[] = [
    { name: 'coordinates', column: coordinates.name, type: BOX_FIELD_TYPES.coordinates, sql: `CAST(${c} AS DOUBLE[][])` },
    { name: 'categories', column: categories.name, type: BOX_FIELD_TYPES.categories, sql: `CAST(${ref(categories)} AS VARCHAR[])` },
  ];
  if (scores) fields.push({ name: 'scores', column: scores.name, type: BOX_FIELD_TYPES.scores, sql: `CAST(${ref(scores)} AS DOUBLE[])` });
  return fields;
}

/**
 * A generative model's prompt and response (text, optional embedding vector) and token counts, as
 * fields of its `llm` column. Token counts must be whole numbers from 0; others are row errors.
 */
function planGenerative(
  m: FieldMapping,
  col: (name: string | undefined) => FileColumn | undefined,
  helpers: string[],
  checks: Check[],
  badType: (field: string, c: FileColumn, want: string) => void,
): StructField[] {
  const fields: StructField[] = [];
  for (const [name, spec] of [['prompt', m.prompt], ['response', m.response]] as const) {
    if (!spec) continue;
    const text = col(spec.text);
    const vector = col(spec.vector);
    if (text) {
      if (isNested(text.type)) badType(`${name}.text`, text, 'text');
      else fields.push({ name, column: text.name, type: 'VARCHAR', sql: `CAST(${ref(text)} AS VARCHAR)` });
    }
    if (vector) {
      if (!isList(vector.type) || !isNumeric(vector.type.replace(/\[\d*\]$/, ''))) badType(`${name}.vector`, vector, 'a list of numbers');
      else fields.push({ name: `${name}_vector`, column: vector.name, type: 'DOUBLE[]', sql: `CAST(${ref(vector)} AS DOUBLE[])` });
    }
  }
  for (const [name, column] of Object.entries(m.tokenCounts ?? {})) {
    const c = col(column);
    if (!c) continue;
    if (!isNumeric(c.type) && !isText(c.type)) {
      badType(`tokenCounts.${name}`, c, 'a whole number');
      continue;
    }
    const value = `TRY_CAST(${ref(c)} AS DOUBLE)`;
    const flag = `__tokens_${name}`;
    helpers.push(`${ref(c)} IS NOT NULL AND (${value} IS NULL OR ${value} < 0 OR ${value} <> floor(${value})) AS ${flag}`);
    checks.push([flag, 'IMP_ERR_ROW_VALUE_INVALID', c.name]);
    fields.push({ name: `${name}_tokens`, column: c.name, type: 'BIGINT', sql: `TRY_CAST(${value} AS BIGINT)` });
  }
  return fields;
}
