import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { ImporterError } from '../errors.ts';
import { ROW_NUMBER_COLUMN, sqlString, type FormatReader, type LocalFile } from './types.ts';

/**
 * SageMaker Data Capture and ground truth. Each line is one request/response envelope whose
 * `data` fields hold another format (CSV, JSON, JSON Lines, or any of these in BASE64). The
 * reader unpacks every line into one row per inference and writes them as NDJSON next to the
 * file, which DuckDB then reads like any other file. Columns:
 *
 * - `inference_id`: `eventMetadata.inferenceId`, else `eventId`; `<id>_<i>` (0-based, payload order)
 *   when one record holds several inferences
 * - `event_id`, `inference_time` (as written; an unparseable one is a row error when mapped)
 * - `feature/<name>`: input values, named by `capture.featureNames` for CSV and lists, else by
 *   position (`feature/0`, ...), or by key for name → value objects
 * - outputs: a bare number → `score`, a bare string → `predicted_label`, a list → `probabilities`,
 *   an object → its keys (`score`, `predicted_label`, `probabilities`, ...)
 * - ground truth (`groundTruthData`, also in merged records): a bare value → `label`, an object → its keys
 * - `source_line`: the line of the file
 */

type Payload = { data?: string; encoding?: string; observedContentType?: string };
type Row = Record<string, unknown>;

function decode(p: Payload | undefined, where: string): unknown[] {
  if (!p || p.data === undefined || p.data === null) return [];
  const encoding = String(p.encoding ?? 'JSON').toUpperCase();
  const text = encoding === 'BASE64' ? Buffer.from(p.data, 'base64').toString('utf8') : p.data;
  const type = String(p.observedContentType ?? '').toLowerCase();
  const csv = encoding === 'CSV' || type.includes('csv');
  const jsonLines = type.includes('jsonlines') || type.includes('x-ndjson');
  if (csv) {
    return parseCsv(text, where).map((cells) => (cells.length === 1 ? cells[0] : cells));
  }
  if (encoding === 'BASE64' && !type.includes('json')) {
    throw new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${where}: content type "${p.observedContentType}" (BASE64) is not CSV or JSON and cannot be read as rows`, { permanent: true });
  }
  try {
    if (jsonLines) return text.split(/\r?\n/).filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
    const value = JSON.parse(text);
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      for (const k of ['instances', 'predictions', 'probabilities', 'inputs', 'outputs']) if (Array.isArray(value[k])) return value[k];
    }
    return Array.isArray(value) ? value : [value];
  } catch (err) {
    throw new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${where}: ${p.observedContentType ?? 'JSON'} data does not parse: ${(err as Error).message}`, { permanent: true });
  }
}

/**
 * The records of a CSV payload as RFC 4180 reads them: commas and line breaks inside double quotes
 * belong to the cell, `""` inside quotes is one `"`. Quoted cells stay text; unquoted ones become
 * numbers when they are numbers. Blank lines are skipped.
 */
export function parseCsv(text: string, where: string): Array<Array<string | number>> {
  const records: Array<Array<string | number>> = [];
  let cells: Array<string | number> = [];
  let i = 0;
  const n = text.length;
  const endRecord = () => {
    if (!(cells.length === 1 && cells[0] === '')) records.push(cells);
    cells = [];
  };
  while (i <= n) {
    while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
    if (text[i] === '"') {
      const start = i;
      let value = '';
      i++;
      for (;;) {
        const close = text.indexOf('"', i);
        if (close < 0) {
          throw new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${where}: CSV data has a quote opened at character ${start + 1} and never closed`, { permanent: true });
        }
        value += text.slice(i, close);
        if (text[close + 1] === '"') {
          value += '"';
          i = close + 2;
        } else {
          i = close + 1;
          break;
        }
      }
      while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
      if (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') {
        throw new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${where}: CSV data has text after the closing quote at character ${i + 1}; a quote inside a quoted cell is written ""`, { permanent: true });
      }
      cells.push(value);
    } else {
      let end = i;
      while (end < n && text[end] !== ',' && text[end] !== '\n' && text[end] !== '\r') end++;
      cells.push(scalar(text.slice(i, end).trim()));
      i = end;
    }
    if (i >= n) {
      endRecord();
      break;
    }
    if (text[i] === ',') {
      i++;
      continue;
    }
    i += text[i] === '\r' && text[i + 1] === '\n' ? 2 : 1;
    endRecord();
  }
  return records;
}

function scalar(cell: string): string | number {
  const n = Number(cell);
  return cell !== '' && Number.isFinite(n) ? n : cell;
}

function inputColumns(value: unknown, names: readonly string[] | undefined): Row {
  const out: Row = {};
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const v = value as Row;
    if (Array.isArray(v.features)) return inputColumns(v.features, names);
    for (const [k, x] of Object.entries(v)) out[`feature/${k}`] = x;
    return out;
  }
  const list = Array.isArray(value) ? value : [value];
  list.forEach((x, i) => (out[`feature/${names?.[i] ?? i}`] = x));
  return out;
}

function outputColumns(value: unknown, bare: string): Row {
  if (value && typeof value === 'object' && !Array.isArray(value)) return { ...(value as Row) };
  if (Array.isArray(value)) return { probabilities: value };
  if (typeof value === 'number') return { [bare === 'label' ? 'label' : 'score']: value };
  return { [bare]: value };
}

/** Unpacks one capture / ground-truth line into its inference rows. */
export function unpackRecord(record: Row, featureNames: readonly string[] | undefined, where: string): Row[] {
  const meta = (record.eventMetadata ?? {}) as Row;
  const id = String(meta.inferenceId ?? meta.eventId ?? '');
  const capture = record.captureData as { endpointInput?: Payload; endpointOutput?: Payload } | undefined;
  const truth = record.groundTruthData as Payload | undefined;
  const inputs = decode(capture?.endpointInput, `${where} endpointInput`);
  const outputs = decode(capture?.endpointOutput, `${where} endpointOutput`);
  const labels = decode(truth, `${where} groundTruthData`);
  const n = Math.max(inputs.length, outputs.length, labels.length);
  const rows: Row[] = [];
  for (let i = 0; i < n; i++) {
    rows.push({
      inference_id: id === '' ? null : n > 1 ? `${id}_${i}` : id,
      event_id: meta.eventId ?? null,
      inference_time: meta.inferenceTime ?? null,
      ...(i < inputs.length ? inputColumns(inputs[i], featureNames) : {}),
      ...(i < outputs.length ? outputColumns(outputs[i], 'predicted_label') : {}),
      ...(i < labels.length ? outputColumns(labels[i], 'label') : {}),
    });
  }
  return rows;
}

async function normalise(file: LocalFile, featureNames: readonly string[] | undefined): Promise<{ path: string; rows: number }> {
  const target = `${file.path}.rows.ndjson`;
  const out = await open(target, 'w');
  try {
    const lines = createInterface({ input: createReadStream(file.path, 'utf8'), crlfDelay: Infinity });
    let lineNo = 0;
    let count = 0;
    let buffer = '';
    for await (const line of lines) {
      lineNo++;
      if (line.trim() === '') continue;
      let record: Row;
      try {
        record = JSON.parse(line);
      } catch (err) {
        throw new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${file.key}: line ${lineNo} is not JSON: ${(err as Error).message}`, { location: { file: file.key, row: lineNo }, permanent: true });
      }
      for (const row of unpackRecord(record, featureNames, `${file.key}: line ${lineNo}`)) {
        buffer += `${JSON.stringify({ source_line: lineNo, ...row })}\n`;
        count++;
      }
      if (buffer.length > 1 << 20) {
        await out.write(buffer);
        buffer = '';
      }
    }
    await out.write(buffer);
    return { path: target, rows: count };
  } finally {
    await out.close();
  }
}

/** Capture and ground-truth files share the reader: the columns present tell them apart. */
export const readSageMaker: FormatReader = async (file, { featureNames }) => {
  const rows = await normalise(file, featureNames);
  if (rows.rows === 0) {
    return { sql: `(SELECT NULL::BIGINT AS ${ROW_NUMBER_COLUMN}, NULL::VARCHAR AS inference_id, NULL::VARCHAR AS event_id, NULL::VARCHAR AS inference_time WHERE false)`, rowNumberColumn: ROW_NUMBER_COLUMN };
  }
  return {
    // Text columns stay text (IDs like "7" must not turn into numbers); inference_time is read by the mapping.
    sql: `(SELECT row_number() OVER () AS ${ROW_NUMBER_COLUMN}, * FROM read_json(${sqlString(rows.path)}, format = 'newline_delimited',
            sample_size = -1))`,
    rowNumberColumn: ROW_NUMBER_COLUMN,
  };
};
