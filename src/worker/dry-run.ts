import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Config, JobConfig } from '../config/index.ts';
import { openMemoryEngine } from '../engine/index.ts';
import { describeError, ImporterError, type ErrorDetail } from '../errors.ts';
import { planMapping, type StructField } from '../schema/mapping.ts';
import { INTERNAL_COLUMNS } from '../schema/select.ts';
import { describeFile, rejectedRowsSql, stageFile } from '../schema/staged.ts';
import { describeTarget, eligibleObjects, listSource, objectUri, type ListedObject } from '../source/index.ts';
import { resolveFormat, type SourceRelation } from '../formats/index.ts';
import { fetchVersion } from './fetch-version.ts';

/** The dry-run report, in the shape the hosted importers use: a status, the file, and located errors. */
export interface DryRunReport {
  /**
   * ok: the file would import cleanly; invalid: some rows would be rejected; failed: the file would
   * not import; empty: the prefix holds no importable file yet (normal right after deploying, e.g. actuals).
   */
  status: 'ok' | 'invalid' | 'failed' | 'empty';
  job: string;
  /** What the job's source names, e.g. `folder s3://b/p/` or `object s3://b/p/x.parquet` (null when it could not be listed). */
  source: string | null;
  file: string | null;
  format: string | null;
  checks: { access: CheckState; schema: CheckState; records: CheckState };
  columns: Array<{ name: string; type: string }>;
  /**
   * What the file brings to each field group the job maps, by stored column (features, tags, shap,
   * embeddings, raw_inputs, named_predictions, prediction_boxes, llm): field → source column.
   * Groups the file brings nothing to are left out.
   */
  fields: Record<string, Record<string, string>>;
  /** The file holds SHAP values alone, matched to predictions by ID (set when its schema was checked). */
  shapOnly?: boolean;
  rows: { read: number; valid: number; rejected: number } | null;
  rejectedByCode: Record<string, number>;
  errors: ErrorDetail[];
  /** Things that import but look wrong (a score column holding labels); they do not change the status. */
  warnings: Array<{ code: 'SUSPICIOUS_SCORE' | 'SUSPICIOUS_LABEL'; column: string; message: string }>;
  /** Said instead of checked: why there was nothing to check. */
  note?: string;
}

type CheckState = 'ok' | 'failed' | 'skipped';

export interface DryRunOptions {
  /** A key to check instead of the first importable file under the prefix. */
  key?: string;
  /** How many row errors to list. @defaultValue 20 */
  maxErrors?: number;
}

/**
 * Checks one file of a job the way an import would — listing and reading access, file-level
 * schema checks, every row — and writes nothing: no store, no Redis. Reads happen in a private
 * in-memory DuckDB.
 */
export async function dryRun(config: Readonly<Config>, job: JobConfig, s3: S3Client, options: DryRunOptions = {}): Promise<DryRunReport> {
  const report: DryRunReport = {
    status: 'failed', job: job.id, source: null, file: null, format: null,
    checks: { access: 'skipped', schema: 'skipped', records: 'skipped' },
    columns: [], fields: {}, rows: null, rejectedByCode: {}, errors: [], warnings: [],
  };
  const fail = (err: unknown) => {
    report.errors.push(...(err instanceof ImporterError ? err.details : [{ code: describeError(err).code, message: describeError(err).message }]));
    return report;
  };
  let object: ListedObject | undefined;
  let where: string;
  let listedCount = 0;
  try {
    const { target, objects: listed } = await listSource(s3, job.source);
    report.source = describeTarget(target);
    where = `s3://${target.bucket}/${target.prefix}`;
    listedCount = listed.length;
    object = options.key ? listed.find((o) => o.key === options.key) : eligibleObjects(job, target.prefix, listed).sort((a, b) => a.key.localeCompare(b.key))[0];
  } catch (err) {
    report.checks.access = 'failed';
    return fail(err);
  }
  if (!object) {
    // The listing worked: access is fine, the finding is about what the source holds.
    report.checks.access = 'ok';
    if (options.key) return fail(new ImporterError('IMP_ERR_SOURCE_EMPTY', `${options.key} is not under ${where}; --file takes a key under the job's source`));
    // Normal right after deploying (actuals arrive days later): a note, not a failure; a mistyped source looks the same, so it says where it looked.
    report.status = 'empty';
    report.note = `IMP_ERR_SOURCE_EMPTY: no importable object under ${where} yet (${listedCount} object${listedCount === 1 ? '' : 's'} listed${listedCount ? `, none a file this job imports as format ${job.format}` : ''}): normal until the first file arrives, else check jobs[].source${listedCount ? ' and jobs[].format' : ''}`;
    return report;
  }
  report.file = objectUri(object);
  const dir = await mkdtemp(join(config.worker.tmpDir ?? tmpdir(), 'inference-importer-dry-run-'));
  // A private engine with the import's sandbox: it reads the downloaded files and nothing else.
  const engine = await openMemoryEngine({ readableDirectory: dir, memoryLimit: config.store.memoryLimit });
  try {
    const run = engine.run;
    const fetched = await fetchVersion(s3, config, job, object, dir, run);
    if (fetched.kind !== 'fetched') throw new ImporterError('IMP_ERR_SOURCE_ACCESS', `${report.file} changed or vanished while it was read; run the dry run again`);
    report.format = fetched.format;
    const { file, source } = fetched;
    report.checks.access = 'ok';

    report.checks.schema = 'failed';
    const columns = await describeFile(run, job, source, file);
    report.columns = columns.filter((c) => c.name !== source.rowNumberColumn && !INTERNAL_COLUMNS.has(c.name));
    const importTime = new Date();
    const plan = planMapping(job, source, columns, object.key, importTime);
    report.fields = Object.fromEntries(Object.entries(plan.structs).filter(([, fields]) => fields.length)
      .map(([group, fields]) => [group, Object.fromEntries((fields as StructField[]).map((f) => [f.name, f.column]))]));
    if (plan.shapOnly) report.shapOnly = true;
    report.checks.schema = 'ok';

    report.checks.records = 'failed';
    const stats = await stageFile(run, 'stage', plan, file);
    report.rows = { read: stats.rowsRead, valid: stats.rowsValid, rejected: stats.rowsRejected };
    report.rejectedByCode = stats.rejectedByCode;
    const rejected = await run(rejectedRowsSql('stage', source, options.maxErrors ?? 20));
    report.errors = rejected.map((r) => {
      const row = Number(r.row_number);
      const column = String(r.column_name);
      const code = r.code as ErrorDetail['code'];
      const message = code === 'IMP_ERR_ROW_TIMESTAMP_OUT_OF_RANGE' ? outOfWindow(job, importTime, row, column, r.raw) : String(r.message);
      return { code, message, row, column };
    });
    report.warnings = await suspiciousColumns(run, job, source);
    report.checks.records = stats.rowsRejected ? 'failed' : 'ok';
    report.status = stats.rowsRejected ? 'invalid' : 'ok';
    return report;
  } catch (err) {
    // Readers that convert a file while opening it (Arrow, Avro, SageMaker) fail inside fetchVersion:
    // the file was read, its contents are what is wrong.
    if (report.checks.access === 'skipped' && describeError(err).code === 'IMP_ERR_FORMAT_UNREADABLE') {
      report.format = resolveFormat(job.format, object.key);
      report.checks.access = 'ok';
      report.checks.schema = 'failed';
    }
    if (report.checks.access === 'skipped') report.checks.access = 'failed';
    return fail(err);
  } finally {
    engine.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A binary model's columns that import but probably hold the wrong field: a score column with
 * values that are not numbers or fall outside [0, 1], a label column holding only non-whole
 * numbers (the two columns swapped, typically).
 */
async function suspiciousColumns(run: (sql: string) => Promise<Array<Record<string, unknown>>>, job: JobConfig, source: SourceRelation): Promise<DryRunReport['warnings']> {
  if (job.model.type !== 'binary') return [];
  const out: DryRunReport['warnings'] = [];
  const { predictionScore: score, predictionLabel: label } = job.schema;
  const q = (c: string) => `"${c.replaceAll('"', '""')}"`;
  if (score) {
    const [r] = await run(`SELECT count(*) FILTER (WHERE ${q(score)} IS NOT NULL AND TRY_CAST(${q(score)} AS DOUBLE) IS NULL) AS text,
      count(*) FILTER (WHERE TRY_CAST(${q(score)} AS DOUBLE) NOT BETWEEN 0 AND 1) AS outside FROM (${source.sql})`);
    const text = Number(r.text);
    const outside = Number(r.outside);
    if (text) out.push({ code: 'SUSPICIOUS_SCORE', column: score, message: `predictionScore column "${score}" holds ${text} values that are not numbers: is it the label? (a binary model's score is a probability in [0, 1])` });
    else if (outside) out.push({ code: 'SUSPICIOUS_SCORE', column: score, message: `predictionScore column "${score}" holds ${outside} values outside [0, 1]: a binary model's score is a probability` });
  }
  if (label) {
    const [r] = await run(`SELECT count(${q(label)}) AS n, count(*) FILTER (WHERE TRY_CAST(${q(label)} AS DOUBLE) IS NOT NULL AND TRY_CAST(${q(label)} AS DOUBLE) <> round(TRY_CAST(${q(label)} AS DOUBLE))) AS floats,
      count(*) FILTER (WHERE ${q(label)} IS NOT NULL AND TRY_CAST(${q(label)} AS DOUBLE) IS NULL) AS words FROM (${source.sql})`);
    if (Number(r.n) > 0 && Number(r.words) === 0 && Number(r.floats) > 0) {
      out.push({ code: 'SUSPICIOUS_LABEL', column: label, message: `predictionLabel column "${label}" holds only numbers, ${r.floats} of them fractional: is it the score?` });
    }
  }
  return out;
}

/** A window length as an operator reads it: days, else hours, else minutes. */
const days = (ms: number) =>
  ms >= 86_400_000 ? `${Math.round(ms / 86_400_000)} days` : ms >= 3_600_000 ? `${Math.round(ms / 360_000) / 10} hours` : `${Math.round(ms / 60_000)} minutes`;

/** The window message with what an operator needs: the value, the window, and the key that moves it. */
function outOfWindow(job: JobConfig, importTime: Date, row: number, column: string, raw: unknown): string {
  let value: unknown;
  try {
    value = (typeof raw === 'string' ? JSON.parse(raw) : raw as Record<string, unknown>)?.[column];
  } catch {
    value = undefined;
  }
  const from = new Date(importTime.getTime() - job.timestamps.maxAge).toISOString();
  const to = new Date(importTime.getTime() + job.timestamps.maxAhead).toISOString();
  return `row ${row}, column "${column}": the timestamp ${JSON.stringify(value)} is outside the accepted window ${from} to ${to} `
    + `(${days(job.timestamps.maxAge)} back, ${days(job.timestamps.maxAhead)} ahead of the import time); to accept it, widen timestamps.maxAge (or timestamps.maxAhead) of job ${job.id}`;
}

/** The report as text for a terminal. */
export function formatDryRun(r: DryRunReport): string {
  const lines = [`dry run of job ${r.job}: ${r.file ?? '(no file)'}${r.format ? ` (${r.format})` : ''}`];
  if (r.source) lines.push(`  source   ${r.source}`);
  lines.push(`  access   ${r.checks.access}`);
  lines.push(`  schema   ${r.checks.schema}${r.checks.schema === 'ok' ? ` (${r.columns.length} columns)` : ''}`);
  for (const [group, fields] of Object.entries(r.fields)) {
    lines.push(`  fields   ${group}: ${Object.entries(fields).map(([name, column]) => (name === column ? name : `${name} (${column})`)).join(', ')}`);
  }
  if (r.shapOnly) lines.push('  fields   SHAP values alone, matched to predictions by prediction ID');
  lines.push(`  records  ${r.rows ? `${r.rows.read} rows, ${r.rows.valid} valid, ${r.rows.rejected} invalid` : r.checks.records}`);
  lines.push(`status: ${r.status}`);
  if (r.note) lines.push(`note: ${r.note}`);
  for (const w of r.warnings) lines.push(`warning: ${w.message}`);
  if (r.errors.length) {
    lines.push('errors:');
    // Row messages already start with their location; others get it in front, so it is said once.
    for (const e of r.errors) {
      const located = /^row \d+, column /.test(e.message);
      lines.push(`  ${e.code}${!located && e.row !== undefined ? ` row ${e.row}` : ''}${!located && e.column ? ` column "${e.column}"` : ''}: ${e.message}`);
    }
    const shown = r.errors.filter((e) => e.row !== undefined).length;
    if (r.rows && r.rows.rejected > shown) lines.push(`  ... and ${r.rows.rejected - shown} more invalid rows (${Object.entries(r.rejectedByCode).map(([c, n]) => `${c}: ${n}`).join(', ')})`);
  }
  return `${lines.join('\n')}\n`;
}
