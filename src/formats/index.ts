import { ImporterError } from '../errors.ts';
import type { SourceFormat } from '../config/index.ts';
import { readArrow } from './arrow.ts';
import { readAvro } from './avro.ts';
import { readCsv } from './csv.ts';
import { readJson } from './json.ts';
import { readParquet, readParquetFiles } from './parquet.ts';
import { readSageMaker } from './sagemaker.ts';
import type { FormatReader, GroupReader, LocalFile } from './types.ts';

export { unreadableError } from './errors.ts';
export type { FormatReader, GroupReader, LocalFile, ReaderContext, SourceRelation } from './types.ts';
export { sqlIdent, sqlString, FILE_INDEX_COLUMN, ROW_NUMBER_COLUMN, type ReadOptions } from './types.ts';

/** Formats read from one file (Delta tables are read by `formats/delta/`, from many). */
export type ConcreteFormat = Exclude<SourceFormat, 'auto' | 'delta'>;

/** The registry: adding a format is one reader file and one line here. */
const READERS: Record<ConcreteFormat, FormatReader> = {
  parquet: readParquet,
  csv: readCsv,
  json: readJson,
  arrow: readArrow,
  avro: readAvro,
  'sagemaker-capture': readSageMaker,
  'sagemaker-ground-truth': readSageMaker,
};

const EXTENSIONS: Array<[RegExp, ConcreteFormat]> = [
  [/\.(parquet|pq)$/i, 'parquet'],
  [/\.csv(\.gz)?$/i, 'csv'],
  [/\.(json|jsonl|ndjson)(\.gz)?$/i, 'json'],
  [/\.(arrow|feather|arrows|ipc)$/i, 'arrow'],
  [/\.avro$/i, 'avro'],
];

/** The format of a key by its extension, or undefined when `auto` would not import it. */
export function formatFromKey(key: string): ConcreteFormat | undefined {
  return EXTENSIONS.find(([re]) => re.test(key))?.[1];
}

/** The format to read a key with under a job's configured format. */
export function resolveFormat(configured: SourceFormat, key: string): ConcreteFormat {
  if (configured !== 'auto' && configured !== 'delta') return configured;
  const found = formatFromKey(key);
  if (!found) {
    throw new ImporterError('IMP_ERR_FORMAT_UNKNOWN', `cannot tell the format of ${key} from its name; set the job's format`, {
      location: { file: key },
      permanent: true,
    });
  }
  return found;
}

/** The file extension a temp copy must keep so DuckDB detects the format's compression. */
export function extensionOf(key: string): string {
  const m = /(\.[A-Za-z0-9]+)?(\.gz)?$/i.exec(key.split('/').pop() ?? '');
  return m?.[0] ?? '';
}

export function readerFor(format: ConcreteFormat): FormatReader {
  return READERS[format];
}

/** Formats whose files can be read together in one scan. */
const GROUP_READERS: Partial<Record<ConcreteFormat, GroupReader>> = { parquet: readParquetFiles };

/** The group reader of a format, if it has one. */
export function groupReaderFor(format: ConcreteFormat): GroupReader | undefined {
  return GROUP_READERS[format];
}

/** Ledger key of a Delta table: its root folder (ending in `/`); its "ETag" is the table version. */
export const isDeltaKey = (key: string) => key.endsWith('/');
export const deltaEtag = (version: number) => `v${version}`;
