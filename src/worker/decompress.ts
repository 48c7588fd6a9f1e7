import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { ImporterError } from '../errors.ts';

/**
 * Expands a downloaded `.gz` file to `to`, stopping as soon as it passes `maxBytes`: a 5 MB gzip
 * bomb expanding to gigabytes fails here, having written at most `maxBytes`, instead of filling
 * the disk (DuckDB would expand it without bound, and spill as much again). DuckDB then reads the
 * plain file. Returns the expanded size.
 */
export async function gunzipBounded(from: string, to: string, maxBytes: number, uri: string): Promise<number> {
  let total = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _enc, done) {
      total += chunk.length;
      if (total > maxBytes) done(new ImporterError('IMP_ERR_SOURCE_TOO_LARGE', `${uri} expands to more than maxDecompressedBytes ${maxBytes} bytes when decompressed; raise jobs[].maxDecompressedBytes (or defaults.maxDecompressedBytes) if the file is genuine`, { location: { file: uri }, permanent: true }));
      else done(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(from), createGunzip(), limit, createWriteStream(to));
  } catch (err) {
    await rm(to, { force: true });
    if (err instanceof ImporterError) throw err;
    throw new ImporterError('IMP_ERR_FORMAT_UNREADABLE', `${uri}: cannot be read: the gzip data is broken (${(err as Error).message})`, { location: { file: uri }, permanent: true, cause: err });
  } finally {
    await rm(from, { force: true });
  }
  return total;
}
