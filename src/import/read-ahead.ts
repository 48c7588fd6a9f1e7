import { randomUUID } from 'node:crypto';
import { describeFile, materialiseSource } from '../schema/staged.ts';
import type { Store } from '../store/store.ts';
import type { ImportRequest } from './types.ts';

/** A request whose file has been read ahead of its turn; `release` drops what the read left in the engine. */
export interface ReadAhead {
  request: ImportRequest;
  release(): Promise<void>;
}

/**
 * The first scan of a CSV or JSON file (sniffing, parsing, its columns), done before the import
 * waits for the store's turn, on a reader connection of the import engine: a file that takes
 * minutes to parse, or is refused after a long parse, holds up no other import. The rows land in a
 * table of the engine that the import then reads in place, as it did its own temp table.
 * Parquet is read straight from the file in the turn (loaded first), as before: materialising it
 * would cost the fast path a second write of every row.
 */
export async function readAhead(store: Store, request: ImportRequest): Promise<ReadAhead> {
  if (!request.source.ordered) return { request, release: async () => undefined };
  const reader = await store.openReader();
  const table = `${reader.space}.read_${randomUUID().replaceAll('-', '')}`;
  const release = async () => {
    // After a shutdown closed the reader, there is nothing left to drop.
    await reader.run(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    reader.close();
  };
  try {
    const source = await materialiseSource(reader.run, table, request.source, request.file, { temp: false });
    // The job's select binds here too: a file whose columns it cannot read fails before the turn.
    await describeFile(reader.run, request.job, source, request.file);
    return { request: { ...request, source }, release };
  } catch (err) {
    await release();
    throw err;
  }
}
