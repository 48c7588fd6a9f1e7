import { readFile, writeFile } from 'node:fs/promises';
import { tableFromIPC, tableToIPC } from 'apache-arrow';
import { Compression, EnabledStatistics, Table as WasmTable, writeParquet, WriterPropertiesBuilder } from 'parquet-wasm';
import { describeError, ImporterError } from '../errors.ts';
import { readParquet } from './parquet.ts';
import type { FormatReader } from './types.ts';

const MAGIC = Buffer.from('ARROW1');

/**
 * Apache Arrow IPC (`.arrow`, `.feather` v2): the file format (`ARROW1` ... `ARROW1`) or the stream
 * format. The columns are converted to a parquet file next to the download (parquet-wasm, in
 * WebAssembly, column by column: no row passes through JavaScript), which DuckDB then reads like
 * any parquet file. The file format is first re-framed as a stream by apache-arrow (a copy of the
 * buffers, not a decode of the rows). Memory: about three times the file while converting.
 */
export const readArrow: FormatReader = async (file, context) => {
  const bytes = await readFile(file.path);
  const unreadable = (why: string, cause?: unknown) =>
    new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${file.key}: cannot be read as Arrow IPC: ${why}`, { location: { file: file.key }, permanent: true, cause });
  const isFileFormat = bytes.subarray(0, MAGIC.length).equals(MAGIC);
  if (isFileFormat && !bytes.subarray(bytes.length - MAGIC.length).equals(MAGIC)) {
    throw unreadable('the file is truncated (an Arrow IPC file ends with "ARROW1", this one does not); upload it again');
  }
  const target = `${file.path}.parquet`;
  try {
    const stream = isFileFormat ? tableToIPC(tableFromIPC(bytes), 'stream') : bytes;
    // writeParquet takes (and frees) the WASM table. Dictionaries and statistics off: the file is read
    // once, in full, and writing them made the conversion 4-6x slower.
    const properties = new WriterPropertiesBuilder().setCompression(Compression.UNCOMPRESSED).setDictionaryEnabled(false).setStatisticsEnabled(EnabledStatistics.None).build();
    const parquet = writeParquet(WasmTable.fromIPCStream(stream), properties);
    await writeFile(target, parquet);
  } catch (err) {
    throw unreadable(
      `${describeError(err).message.replace(/^Error: /, '')} (neither a complete Arrow IPC file nor stream; Feather v1 files must be rewritten as Feather v2)`,
      err,
    );
  }
  return readParquet({ path: target, key: file.key }, context);
};
