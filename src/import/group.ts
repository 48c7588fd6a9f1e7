import type { JobConfig } from '../config/index.ts';
import type { Engine } from '../engine/index.ts';
import { ImporterError } from '../errors.ts';
import { planMapping, type FileColumn, type MappingPlan, type StructColumns, type StructField } from '../schema/mapping.ts';
import { jobRelationOfFiles } from '../schema/select.ts';
import { describeFile, firstRejectedSql, keyedRowsSql, materialiseSource, rejectedRowsSql, repeatedKeysSql, stageFile, stageFilesTogether, type StageStats } from '../schema/staged.ts';
import type { EngineRows, ImportTransaction, MatchedActuals, Store } from '../store/store.ts';
import { fileOutcome, type FirstRejected } from './outcome.ts';
import { ACTUAL_ROW_COLUMNS, PREDICTION_ROW_COLUMNS, SHAP_ROW_COLUMNS, type ImportRequest, type ImportResult } from './types.ts';

/**
 * A group loaded first turned out to hold a row that needs its verdict (a rejected row or a
 * repeated ID): it is imported again, staged (see `importChecked` in `importer.ts`).
 */
export class NeedsStaging extends Error {}

/** One file of a group import, as it goes through the transaction. */
interface GroupMember {
  request: ImportRequest;
  columns: FileColumn[];
  plan: MappingPlan;
  stage: string;
  result: ImportResult;
  stats?: StageStats;
  /** What `stage` names: the file's own stage table, or a view of a stage shared with the group (see stageFilesTogether); unset when loaded first. */
  stageKind?: 'table' | 'view';
  refuse?: boolean;
  predictionsLoaded?: number;
  actualsLoaded?: number;
  shapLoaded?: number;
}

let stageSeq = 0;
const nextStage = () => `stage_${++stageSeq}`;

const SKIPPED: ImportResult = { status: 'skipped', rowsRead: 0, predictionsLoaded: 0, actualsLoaded: 0, rowsRejected: 0, rejectedByCode: {} };

/** The fields (names and types) of a plan's STRUCT columns: files with equal shapes can be loaded by one INSERT. */
const structShape = (structs: StructColumns) =>
  JSON.stringify(Object.entries(structs).map(([column, fields]) => [column, (fields as StructField[]).map((f) => `${f.name} ${f.type}`)]));

/** The rows of a plan read together to load: those of files not refused, less the rows their stages rejected. */
function validTogether(plan: MappingPlan, live: GroupMember[]): string {
  const loading = live.flatMap((m, i) => (m.refuse ? [] : [i]));
  const rejected = live.flatMap((m, i) => (!m.refuse && m.stats!.rowsRejected ? [`SELECT ${i} AS file_index, source_row FROM ${m.stage} WHERE reject_code IS NOT NULL`] : []));
  const rows = `(SELECT * FROM (${plan.rowsSql}) WHERE file_index IN (${loading.join(', ')}))`;
  return rejected.length ? `${rows} ANTI JOIN (${rejected.join(' UNION ALL ')}) USING (file_index, source_row)` : rows;
}

/** The rows a group's insert reports must be the sum of what its files' stages say they load. */
function checkLoaded(inserted: number, perFile: number[], what: string): void {
  const expected = perFile.reduce((a, b) => a + b, 0);
  if (inserted !== expected) throw new ImporterError('IMP_ERR_INTERNAL', `inserted ${inserted} ${what} where the staged files hold ${expected}`);
}

/** A row list of the columns stores take, from staged rows: the file's ID as source_file_id, the rest by name. */
const rowColumns = (columns: readonly string[], sourceFileId: string, computed: Record<string, string> = {}) =>
  columns.map((c) => (c === 'source_file_id' ? `CAST(${sourceFileId} AS BIGINT) AS source_file_id` : computed[c] ? `${computed[c]} AS ${c}` : c)).join(', ');

/** Prediction rows of a relation, in the columns stores take (PREDICTION_ROW_COLUMNS and the STRUCT columns the file brings). */
function predictionRows(structs: StructColumns, sourceFileId: string, from: string): string {
  const structCols = Object.entries(structs).filter(([, fields]) => fields.length).map(([name]) => name);
  return `SELECT ${rowColumns(PREDICTION_ROW_COLUMNS, sourceFileId)}${structCols.map((c) => `, ${c}`).join('')} FROM ${from}`;
}

/**
 * Imports a group of one job's files in one store transaction: each file's ledger claim, its
 * reading, mapping and verdicts in the engine, one replacement of the group's rows per table, each
 * file's rejected rows and ledger outcome. `loadFirst` loads clean columnar files of predictions
 * or of actuals before checking them (throws NeedsStaging when a file needs its row verdicts after all).
 */
export async function importGroup(store: Store, requests: ImportRequest[], options: { loadFirst: boolean }): Promise<ImportResult[]> {
  const { job } = requests[0];
  const scope = { jobId: job.id, modelId: job.model.id, environment: job.model.environment };
  return store.runImport(scope, async (tx, engine) => {
    const stages: Array<{ name: string; kind: 'table' | 'view' }> = [];
    try {
      return await importIn(tx, engine, job, requests, options, stages);
    } finally {
      for (const s of stages.reverse()) await engine.run(`DROP ${s.kind.toUpperCase()} IF EXISTS ${s.name}`).catch(() => undefined);
    }
  });
}

async function importIn(
  tx: ImportTransaction,
  engine: Engine,
  job: JobConfig,
  requests: ImportRequest[],
  options: { loadFirst: boolean },
  stages: Array<{ name: string; kind: 'table' | 'view' }>,
): Promise<ImportResult[]> {
  const run = engine.run;
  // One import time for the group: a file's verdicts and the rows loaded from a scan of the group must agree on it.
  const { importTime } = requests[0];
  const members: GroupMember[] = [];
  // CSV and JSON files read ahead as keys are loaded from one more read when every file of the group
  // was (all are loaded first); otherwise every CSV and JSON file is read into a temp table here, in
  // parallel, and its rows are then read like parquet's.
  const keyed = options.loadFirst && requests.every((r) => r.source.keyed);
  for (const read of requests) {
    const table = nextStage();
    if (read.source.ordered && !keyed) stages.push({ name: table, kind: 'table' });
    const request = { ...read, source: keyed ? read.source : await materialiseSource(run, table, read.source, read.file) };
    const { keyed: keys } = request.source;
    // A keyed file was described when read as keys (and its select checked).
    const columns = keys ? [...keys.columns] : await describeFile(run, job, request.source, request.file);
    const mapped = planMapping(job, request.source, columns, request.file.key, importTime);
    const plan = keys ? { ...mapped, rowsSql: keyedRowsSql(mapped, keys) } : mapped;
    members.push({ request, columns, plan, stage: nextStage(), result: SKIPPED });
  }
  const claims = await tx.claim(members.map((m) => m.request.version));
  const live: GroupMember[] = [];
  for (const m of members) {
    const claim = claims.get(m.request.version.fileId);
    if (claim === 'superseded') m.result = { ...SKIPPED, status: 'superseded' };
    // A version twice in one group imports once (the Importer already keeps a second run of it waiting).
    if (claim === 'live' && !live.some((l) => l.request.version.fileId === m.request.version.fileId)) live.push(m);
  }

  // Columnar files of one schema are read together, in parallel: verdicts in one scan, rows in another.
  const together = live.length > 1 ? await planTogether(engine, job, live, importTime) : undefined;
  const loadFirst = options.loadFirst && live.length > 0 && (live.length === 1 || together !== undefined || keyed)
    // Files of predictions or of actuals; a file of both keeps its staged path (one ID may carry several versions).
    && live.every((m) => (m.request.source.columnar === true || keyed) && m.plan.hasPredictions !== m.plan.hasActuals);
  // Keyed files are read as keys only when they are loaded first (see readKeys): staging needs their rows numbered in a table.
  if (keyed && !loadFirst && live.length > 0) throw new NeedsStaging();
  if (together && !loadFirst) {
    const groupStage = nextStage();
    stages.push({ name: groupStage, kind: 'table' });
    const stats = await stageFilesTogether(run, groupStage, together, live.map((m) => m.request.file));
    for (const [i, m] of live.entries()) {
      m.stats = stats[i];
      m.stageKind = 'view';
      stages.push({ name: m.stage, kind: 'view' });
      await run(`CREATE TEMP VIEW ${m.stage} AS SELECT * EXCLUDE (file_index) FROM ${groupStage} WHERE file_index = ${i}`);
    }
  }
  for (const m of loadFirst ? [] : live) {
    if (!m.stats) {
      // Columnar files are read twice (verdicts, then the rows to load); others are materialised once.
      m.stageKind = 'table';
      stages.push({ name: m.stage, kind: 'table' });
      m.stats = await stageFile(run, m.stage, m.plan, m.request.file, { keysOnly: m.request.source.columnar === true });
    }
    // onInvalidRows: fail loads nothing of a file with a bad row; its rejected rows are still recorded.
    m.refuse = m.stats.rowsRejected > 0 && job.onInvalidRows === 'fail';
  }
  const rows = (sql: string): EngineRows => ({ engine, sql });
  const rowsOf = (m: GroupMember) => (m.request.source.columnar === true || keyed ? `(${m.plan.rowsSql})` : m.stage);
  const validOf = (m: GroupMember) =>
    loadFirst ? 'reject_code IS NULL'
      : m.stats!.rowsRejected === 0 ? 'true'
      : m.request.source.columnar === true ? `source_row NOT IN (SELECT source_row FROM ${m.stage} WHERE reject_code IS NOT NULL)` : 'reject_code IS NULL';
  const loading = live.filter((m) => !m.refuse);
  const keysOf = (ms: GroupMember[]) => ms.map((m) => m.request.version.key);

  const withPredictions = loading.filter((m) => m.plan.hasPredictions);
  if (withPredictions.length) {
    const selects = together
      ? [predictionRows(together.structs, `CASE file_index ${live.map((m, i) => `WHEN ${i} THEN ${m.request.version.fileId}`).join(' ')} END`,
          loadFirst ? `(${together.rowsSql}) WHERE reject_code IS NULL` : validTogether(together, live))]
      : withPredictions.map((m) => predictionRows(m.plan.structs, String(m.request.version.fileId), `${rowsOf(m)} WHERE ${validOf(m)}`));
    // Files whose STRUCT columns have the same fields load in one statement; otherwise each keeps its own shape.
    const shapes = new Set(withPredictions.map((m) => structShape(m.plan.structs)));
    const loaded = await tx.loadPredictions({
      fileIds: withPredictions.map((m) => m.request.version.fileId),
      keys: keysOf(withPredictions),
      batches: (shapes.size === 1 ? [selects.join(' UNION ALL ')] : selects).map(rows),
      structs: together ? [together.structs] : withPredictions.map((m) => m.plan.structs),
      ...(loadFirst
        ? { check: (inserted: number) => checkLoadedFirst(engine, inserted, live) }
        : { newKeys: rows(withPredictions.map((m) => `SELECT model_version, prediction_id FROM ${m.stage} WHERE reject_code IS NULL`).join(' UNION ALL ')) }),
    });
    for (const m of withPredictions) m.predictionsLoaded = m.stats!.rowsValid;
    checkLoaded(loaded, withPredictions.map((m) => m.predictionsLoaded!), 'predictions');
  }
  const withActuals = loading.filter((m) => m.plan.hasActuals);
  if (withActuals.length) {
    const selects = withActuals.map((m) => {
      // A file of predictions and actuals may hold one ID under several versions: its last actual wins.
      const actualRows = `SELECT * FROM ${rowsOf(m)} WHERE ${validOf(m)} AND has_actual
                          ${m.plan.hasPredictions ? 'QUALIFY row_number() OVER (PARTITION BY prediction_id ORDER BY source_row DESC) = 1' : ''}`;
      return `SELECT ${rowColumns(ACTUAL_ROW_COLUMNS, String(m.request.version.fileId), { actual_ts: 'prediction_ts' })} FROM (${actualRows})`;
    });
    const loaded = await tx.loadActuals({
      fileIds: withActuals.map((m) => m.request.version.fileId),
      keys: keysOf(withActuals),
      batches: [rows(selects.join(' UNION ALL '))],
      ...(loadFirst
        ? { check: (inserted: number) => checkLoadedFirst(engine, inserted, live) }
        : { newKeys: rows(withActuals.map((m) => `SELECT prediction_id FROM ${m.stage} WHERE reject_code IS NULL AND has_actual`).join(' UNION ALL ')) }),
    });
    for (const m of withActuals) {
      // Loaded first: a file of actuals only, every row valid (the check passed), each row one actual.
      if (loadFirst) {
        m.actualsLoaded = m.stats!.rowsValid;
        continue;
      }
      const [{ n }] = await run(`SELECT count(${m.plan.hasPredictions ? 'DISTINCT prediction_id' : '*'}) AS n FROM ${m.stage} WHERE reject_code IS NULL AND has_actual`);
      m.actualsLoaded = Number(n);
    }
    checkLoaded(loaded, withActuals.map((m) => m.actualsLoaded!), 'actuals');
  }
  // Files of SHAP values alone: rows keyed by prediction ID like actuals, matched to predictions whichever arrives first.
  const withShap = loading.filter((m) => m.plan.shapOnly);
  if (withShap.length) {
    const loaded = await tx.loadShap({
      fileIds: withShap.map((m) => m.request.version.fileId),
      keys: keysOf(withShap),
      batches: [rows(withShap.map((m) => `SELECT ${rowColumns(SHAP_ROW_COLUMNS, String(m.request.version.fileId), { shap: 'to_json(shap)' })} FROM ${rowsOf(m)} WHERE ${validOf(m)}`).join(' UNION ALL '))],
      newKeys: rows(withShap.map((m) => `SELECT prediction_id FROM ${m.stage} WHERE reject_code IS NULL`).join(' UNION ALL ')),
    });
    for (const m of withShap) m.shapLoaded = m.stats!.rowsValid;
    checkLoaded(loaded, withShap.map((m) => m.shapLoaded!), 'SHAP rows');
  }
  const ids = (ms: GroupMember[]) => ms.map((m) => m.request.version.fileId);
  const matched = loading.length
    ? await tx.matchedActuals(ids(loading.filter((m) => m.plan.hasActuals)), ids(loading.filter((m) => m.plan.hasPredictions)))
    : new Map<number, MatchedActuals>();

  if (live.length) {
    const rejecting = live.filter((m) => m.stats!.rowsRejected > 0);
    await tx.replaceRejected(keysOf(live), rejecting.map((m) => ({ version: m.request.version, rows: rows(rejectedRowsSql(m.stage, m.request.source)) })));
  }
  for (const m of live) {
    const { version, file } = m.request;
    const stats = m.stats!;
    let first: FirstRejected | undefined;
    if (stats.rowsRejected > 0) {
      const [r] = await run(firstRejectedSql(m.stage));
      first = { row: Number(r.row_number), column: (r.column_name as string | null) ?? null, code: String(r.code), message: String(r.message) };
    }
    const outcome = fileOutcome(file.key, stats, { predictions: (m.predictionsLoaded ?? 0) + (m.shapLoaded ?? 0), actuals: m.actualsLoaded ?? 0 }, m.refuse === true, first);
    await tx.finish(version.fileId, outcome);
    m.result = {
      status: outcome.status, rowsRead: stats.rowsRead, predictionsLoaded: outcome.predictionsLoaded, actualsLoaded: outcome.actualsLoaded,
      rowsRejected: stats.rowsRejected, rejectedByCode: stats.rejectedByCode,
      matched: m.refuse ? undefined : (matched.get(version.fileId) ?? { count: 0, groups: [] }),
      filesInTransaction: live.length,
      loadedFirst: loadFirst,
      keyed,
    };
  }
  return members.map((m) => m.result);
}

/**
 * The verdicts of files loaded first: every row loaded (a file never loads more rows than it
 * has, so equal totals mean every file loaded all of its rows) and no ID repeated within a file
 * (equal keys have equal hashes; the file's key columns are re-read, which is cheaper than reading
 * them back from the table just written). Sets each file's counts; throws NeedsStaging otherwise.
 */
async function checkLoadedFirst(engine: Engine, inserted: number, members: GroupMember[]): Promise<void> {
  let rows = 0;
  for (const m of members) {
    const { keyed } = m.request.source;
    // A keyed file's keys were counted when read (no repeated hash, every row valid); its rows must all have loaded.
    const [{ n, repeats }] = keyed ? [{ n: keyed.rows, repeats: 0 }]
      : await engine.run(`SELECT count(*) AS n, ${repeatedKeysSql(m.plan.uniqueKey)} AS repeats FROM (${m.plan.rowsSql})`);
    if (Number(repeats) > 0) throw new NeedsStaging();
    m.stats = { rowsRead: Number(n), rowsValid: Number(n), rowsRejected: 0, rejectedByCode: {} };
    rows += Number(n);
  }
  if (rows !== inserted) throw new NeedsStaging();
}

/**
 * The plan of several columnar files of one schema read as one relation: DuckDB scans all their
 * row groups in parallel, where one statement per file (or a UNION ALL of per-file scans) reads
 * one small file after another. Rows carry their file's index in the group. Undefined when the
 * files cannot be read together (other formats, different columns).
 */
async function planTogether(engine: Engine, job: JobConfig, ms: GroupMember[], importTime: Date): Promise<MappingPlan | undefined> {
  // A job's select may use window functions, which would then span files; and it hides the file's own columns from the check below.
  if (job.select) return undefined;
  const shape = JSON.stringify(ms[0].columns);
  if (ms.some((m) => m.request.source.columnar !== true || JSON.stringify(m.columns) !== shape)) return undefined;
  // A data column of that name would hide DuckDB's virtual file_index column.
  if (ms[0].columns.some((c) => c.name === 'file_index')) return undefined;
  const source = jobRelationOfFiles(job, ms.map((m) => m.request.file));
  if (!source) return undefined;
  const first = ms[0].request.file;
  return planMapping(job, source, await describeFile(engine.run, job, source, first), first.key, importTime);
}
