import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { describeError, ImporterError } from '../errors.ts';
import type { LocalFile } from './types.ts';

/** DuckDB's CSV causes worth naming, as an operator reads them (`line` is DuckDB's line number). */
const CSV_CAUSES: Array<[RegExp, (m: RegExpExecArray, line: string) => string]> = [
  [/Value with unterminated quote found/, (_m, line) => `the quote opened on line ${line} never closes: a broken row (inside a quoted value a quote is written "")`],
  [/Expected Number of Columns: (\d+) Found: (\d+)/, (m, line) => `line ${line} has ${Number(m[2]) > Number(m[1]) ? 'more' : 'fewer'} fields than the header's ${m[1]}: the rows are ragged`],
  [/Invalid unicode \(byte sequence mismatch\)/, (_m, line) => `line ${line} is not valid UTF-8 (readOptions.encoding names another encoding)`],
];
/** DuckDB reports the line (and size) of an over-long line wrongly ("Line: 1"), so the line is found separately. */
const LONG_LINE = /Maximum line size of (\d+) bytes exceeded\. Actual Size:\s*(\d+) bytes/;

/**
 * The error for a file DuckDB cannot read: DuckDB's first line, with the temp path replaced by the
 * object key (operators know the key, not our temp names), and the line when DuckDB names one.
 * CSV errors say what is wrong on which line instead of DuckDB's first line.
 */
export function unreadableError(file: LocalFile, err: unknown, longLine?: number): ImporterError {
  if (err instanceof ImporterError) return err;
  const full = describeError(err).message.replaceAll(file.path, file.key);
  const first = full.split('\n')[0];
  let what = first;
  let row = /line (\d+)/i.exec(first)?.[1];
  const csvLine = /CSV Error on Line: (\d+)/.exec(full)?.[1];
  const long = LONG_LINE.exec(full);
  if (long) {
    row = longLine === undefined ? undefined : String(longLine);
    what = `${longLine === undefined ? 'a line' : `line ${longLine}`} is longer than the maximum line size of ${long[1]} bytes (readOptions.max_line_size raises it)`;
  } else if (csvLine) {
    const cause = CSV_CAUSES.map(([re, say]) => [re.exec(full), say] as const).find(([m]) => m);
    if (cause) {
      what = cause[1](cause[0]!, csvLine);
      row = csvLine;
    }
  }
  return new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${file.key}: cannot be read: ${what}`, {
    location: { file: file.key, row: row ? Number(row) : undefined },
    // Running out of memory or disk says nothing about the file: those are retried.
    permanent: !/Out of Memory|No space left|Could not write|INTERRUPT/i.test(first),
    cause: err,
  });
}

/** `unreadableError` for a CSV, with the number of an over-long line found by reading the file. */
export async function csvFailure(file: LocalFile, err: unknown): Promise<ImporterError> {
  const long = LONG_LINE.exec(describeError(err).message);
  if (!long) return unreadableError(file, err);
  return unreadableError(file, err, await lineLongerThan(file, Number(long[1])).catch(() => undefined));
}

/** The 1-based number of the first line of the (decompressed) file longer than `limit` bytes. */
async function lineLongerThan(file: LocalFile, limit: number): Promise<number | undefined> {
  const raw = createReadStream(file.path);
  const stream = /\.gz$/i.test(file.path) ? raw.pipe(createGunzip()) : raw;
  let line = 1;
  let length = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let from = 0;
      for (let nl = chunk.indexOf(10, from); ; nl = chunk.indexOf(10, from)) {
        length += (nl < 0 ? chunk.length : nl) - from;
        if (length > limit) return line;
        if (nl < 0) break;
        line++;
        length = 0;
        from = nl + 1;
      }
    }
  } finally {
    raw.destroy();
  }
  return undefined;
}
