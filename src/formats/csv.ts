import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { describeError } from '../errors.ts';
import { csvFailure, unreadableError } from './errors.ts';
import { orderedRelation, readOptionsSql, sqlString, type FormatReader, type LocalFile, type ReadOptions } from './types.ts';

/**
 * CSV with a header row, plain or gzip (by the `.gz` name). Types are sniffed by DuckDB unless read
 * options say otherwise; the row number counts data rows from 1, in file order (DuckDB keeps
 * insertion order by default, also when it reads the file in parallel).
 *
 * The quote is RFC 4180's `"` unless read options set another: left to itself, DuckDB's sniffer
 * answers a quote that never closes by choosing no quote character at all, and the row's `"click`
 * is then loaded as data. With the quote fixed such a file, or one with ragged rows, fails to
 * sniff without saying where; a strict read with the header's width then names the line.
 */
export const readCsv: FormatReader = async (file, { readOptions, run }) => {
  const options: ReadOptions = { header: true, auto_detect: true, quote: '"', escape: '"', ...readOptions };
  if (run) await checkDialect(file, options, run);
  return orderedRelation(`SELECT * FROM read_csv(${sqlString(file.path)}${readOptionsSql(options)})`);
};

const NO_DIALECT = /not possible to automatically detect the CSV parsing dialect/i;
const DELIMITERS = [',', ';', '\t', '|'];

/**
 * Binds the read as the import will (DuckDB sniffs then). When no dialect fits, or the sniffer fell
 * back to one column although the header has several, a strict read with the header's width finds
 * the line that breaks it.
 */
type Run = (sql: string) => Promise<unknown[]>;

async function checkDialect(file: LocalFile, options: ReadOptions, run: Run): Promise<void> {
  const given = options.delim ?? options.sep;
  let columns: number;
  try {
    columns = (await run(`DESCRIBE SELECT * FROM read_csv(${sqlString(file.path)}${readOptionsSql(options)})`)).length;
  } catch (err) {
    const message = describeError(err).message;
    if (/CSV Error on Line/i.test(message)) throw await csvFailure(file, err);
    // Anything else (a read option DuckDB refuses, a gzip that is not one) the read itself reports.
    if (!NO_DIALECT.test(message)) return;
    await strictRead(run, file, options, typeof given === 'string' ? given : await headerDelimiter(file));
    throw unreadableError(file, err);
  }
  if (columns > 1 || given !== undefined) return;
  const delim = await headerDelimiter(file);
  await strictRead(run, file, options, delim);
}

/** Reads every line with the header's width and this delimiter, throwing the located error of the first line that breaks it. */
async function strictRead(run: Run, file: LocalFile, options: ReadOptions, delim: string): Promise<void> {
  const width = (await firstLine(file)).split(delim).length;
  if (width < 2) return;
  const columns = Object.fromEntries(Array.from({ length: width }, (_, i) => [`c${i}`, 'VARCHAR']));
  const { auto_detect: _a, sep: _s, types: _t, dtypes: _d, column_types: _c, ...rest } = options;
  try {
    await run(`SELECT count(*) FROM read_csv(${sqlString(file.path)}${readOptionsSql({ ...rest, auto_detect: false, delim, columns })})`);
  } catch (err) {
    throw await csvFailure(file, err);
  }
}

/** The delimiter the header line holds most of. */
async function headerDelimiter(file: LocalFile): Promise<string> {
  const header = await firstLine(file);
  return DELIMITERS.map((d) => [d, header.split(d).length] as const).sort((a, b) => b[1] - a[1])[0][0];
}

/** The file's first line (decompressed for `.gz`), up to 64 KiB of it, from the first MiB of the file. */
async function firstLine(file: LocalFile): Promise<string> {
  const raw = createReadStream(file.path, { end: 1 << 20 });
  const stream = /\.gz$/i.test(file.path) ? raw.pipe(createGunzip()) : raw;
  let text = '';
  try {
    for await (const chunk of stream) {
      text += (chunk as Buffer).toString('utf8');
      const end = text.search(/\r?\n/);
      if (end >= 0) return text.slice(0, end);
      if (text.length > 65_536) break;
    }
  } catch {
    // A truncated gzip still has its first line.
  } finally {
    raw.destroy();
  }
  return text.slice(0, 65_536);
}
