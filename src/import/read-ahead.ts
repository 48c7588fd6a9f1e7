import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { planMapping } from '../schema/mapping.ts';
import { describeFile, keySource, materialiseSource, unnumberedSource } from '../schema/staged.ts';
import type { EngineReader } from '../engine/index.ts';
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
 * minutes to parse, or is refused after a long parse, holds up no other import. With `keys`, a
 * clean file is read as keys only (see `keySource`) and its rows are read once more in the turn,
 * straight into the store; any other file's rows land in a table of the engine that the import
 * then reads in place, as it did its own temp table. Parquet is read straight from the file in the
 * turn (loaded first), as before: materialising it would cost the fast path a second write of every row.
 */
export async function readAhead(store: Store, request: ImportRequest, { keys }: { keys: boolean }): Promise<ReadAhead> {
  if (!request.source.ordered) return { request, release: async () => undefined };
  const reader = await store.openReader();
  const table = `${reader.space}.read_${randomUUID().replaceAll('-', '')}`;
  const release = async () => {
    // After a shutdown closed the reader, there is nothing left to drop.
    await reader.run(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    reader.close();
  };
  try {
    const keyed = keys ? await readKeys(reader, table, request) : undefined;
    if (keyed) return { request: keyed, release };
    const source = await materialiseSource(reader.run, table, request.source, request.file, { temp: false });
    // The job's select binds here too: a file whose columns it cannot read fails before the turn.
    await describeFile(reader.run, request.job, source, request.file);
    return { request: { ...request, source }, release };
  } catch (err) {
    await release();
    throw err;
  }
}

/**
 * Whether the mapped rows can be read in any order: no window in the mapping (an embedding's
 * dimension taken from the file's first vector, a window in the job's `select`), which would order
 * the keys read by its own sort and see NULL row numbers, and no `select` reading the row number
 * (NULL in both reads).
 */
function keepsFileOrder(request: ImportRequest, rowsSql: string): boolean {
  return !/\bover\s*\(/i.test(rowsSql) && !(request.job.select ?? []).some((e) => /__source_row|__select_row/i.test(e));
}

/**
 * The request with its file read as keys only, or undefined when that does not apply: the file
 * holds predictions and actuals together or SHAP values alone (not loaded first), a select draws
 * random values, the mapping needs file order (`keepsFileOrder`), it is not a regular file (a pipe
 * is read once; this reads three times: columns, keys, rows), its mapping fails (the materialised
 * read reports that, as before), or a row is rejected or a key repeats (see `keySource`).
 */
async function readKeys(reader: EngineReader, table: string, request: ImportRequest): Promise<ImportRequest | undefined> {
  const unnumbered = unnumberedSource(request.source);
  if (!unnumbered || !(await stat(request.file.path)).isFile()) return undefined;
  const columns = await describeFile(reader.run, request.job, unnumbered, request.file);
  let plan;
  try {
    plan = planMapping(request.job, unnumbered, columns, request.file.key, request.importTime);
  } catch {
    return undefined;
  }
  if (plan.hasPredictions === plan.hasActuals || !keepsFileOrder(request, plan.rowsSql)) return undefined;
  const source = await keySource(reader.run, table, unnumbered, columns, plan, request.file);
  return source && { ...request, source };
}
