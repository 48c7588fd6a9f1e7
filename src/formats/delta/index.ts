import { latestVersionOf, parseLogListing } from './listing.ts';

export { replayDeltaLog } from './log.ts';
export { decodeDeltaPath } from './paths.ts';
export { deltaRelation } from './relation.ts';
export {
  decodeDeletionVector,
  decodeZ85,
  deletionVectorFilePath,
  deletionVectorRelativePath,
  deletionVectorUniqueId,
  parseRoaringBitmapArray,
} from './deletion-vector.ts';
export { checkReaderProtocol, SUPPORTED_READER_FEATURES, MAX_READER_VERSION } from './protocol.ts';
export { duckType } from './schema.ts';
export type {
  ColumnMappingMode,
  DeletionVectorDescriptor,
  DeltaArrayType,
  DeltaDataFile,
  DeltaFileAccess,
  DeltaMapType,
  DeltaProtocol,
  DeltaSnapshot,
  DeltaStructField,
  DeltaStructType,
  DeltaType,
  RunQuery,
} from './types.ts';

const LOG_DIR = '_delta_log';

/**
 * Every distinct Delta table root among object keys (relative or absolute): the part of a key before
 * its first `_delta_log/` path segment, with its trailing slash (`''` for a table at the prefix itself).
 * Sorted, so callers get a stable order.
 */
export function deltaTableRoots(keys: string[]): string[] {
  const roots = new Set<string>();
  for (const key of keys) {
    let from = 0;
    for (;;) {
      const at = key.indexOf(`${LOG_DIR}/`, from);
      if (at < 0) break;
      // Only a whole path segment counts (`x_delta_log/` is an ordinary folder).
      if (at === 0 || key[at - 1] === '/') {
        roots.add(key.slice(0, at));
        break;
      }
      from = at + 1;
    }
  }
  return [...roots].sort();
}

/**
 * The newest table version named by a `_delta_log/` listing (commit files and complete checkpoints),
 * or undefined when it names none. Entries may be bare names or keys ending in `_delta_log/<name>`.
 */
export function latestDeltaVersion(logFiles: string[]): number | undefined {
  return latestVersionOf(parseLogListing(logFiles));
}
