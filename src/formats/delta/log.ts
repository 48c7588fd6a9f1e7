import { readFile } from 'node:fs/promises';
import { sqlString } from '../types.ts';
import { deletionVectorUniqueId } from './deletion-vector.ts';
import { mapLimit } from './concurrency.ts';
import { deltaUnreadable } from './errors.ts';
import { decodeDeltaPath, isAbsoluteUri } from './paths.ts';
import { parseLogListing, type CheckpointEntry } from './listing.ts';
import { checkReaderProtocol } from './protocol.ts';
import { columnMappingMode, parseSchema } from './schema.ts';
import type { DeletionVectorDescriptor, DeltaDataFile, DeltaFileAccess, DeltaProtocol, DeltaSnapshot, RunQuery } from './types.ts';

/** The `metaData` action fields the reader uses. */
interface MetaDataAction {
  schemaString: string;
  partitionColumns?: string[];
  configuration?: Record<string, string | null>;
  format?: { provider?: string };
}

/** Actions as they come out of a commit or checkpoint (only the fields used here). */
type RawAction = Record<string, unknown>;

/** The replay state: last protocol and metaData, and the active files keyed by path + DV id. */
class ReplayState {
  protocol?: DeltaProtocol;
  metaData?: MetaDataAction;
  readonly files = new Map<string, DeltaDataFile>();

  add(file: DeltaDataFile): void {
    this.files.set(fileKey(file.path, file.deletionVector), file);
  }

  remove(path: string, dv: DeletionVectorDescriptor | undefined): void {
    this.files.delete(fileKey(path, dv));
  }
}

/** Downloads at most this many log files at once (commits after a checkpoint, checkpoint parts, sidecars). */
const FETCH_CONCURRENCY = 8;

/**
 * Replays a Delta table's `_delta_log` to the snapshot at the newest version (or at `maxVersion`).
 *
 * It starts from the newest complete checkpoint found by listing (classic, multi-part with every part,
 * or v2 with its sidecars; `_last_checkpoint` is never trusted) and applies the JSON commits after it.
 * Only those files are fetched. A checkpoint that cannot be read is skipped for an older one, or for a
 * full JSON replay when every commit is still there; when no route is left, its error is rethrown as
 * is. Throws `IMP_ERR_FORMAT_UNREADABLE` when the log is incomplete (a commit missing, nothing at or
 * below `maxVersion`) or the table needs a reader feature this reader does not implement; errors of
 * `fetch` and `run` pass through unchanged.
 */
export async function replayDeltaLog(access: DeltaFileAccess, run: RunQuery, options: { maxVersion?: number } = {}): Promise<DeltaSnapshot> {
  const listing = parseLogListing(access.logFiles);
  const maxVersion = options.maxVersion ?? Number.POSITIVE_INFINITY;
  const commitVersions = [...listing.commits.keys()].filter((v) => v <= maxVersion).sort((a, b) => a - b);
  const checkpoints = listing.checkpoints.filter((c) => c.version <= maxVersion);
  const target = Math.max(commitVersions.at(-1) ?? -1, checkpoints[0]?.version ?? -1);
  if (target < 0) {
    throw deltaUnreadable(
      Number.isFinite(maxVersion) ? `the Delta log has no commit or checkpoint at or below version ${maxVersion}` : 'the Delta log has no commit or checkpoint',
    );
  }
  const hasCommits = (from: number) => {
    for (let v = from; v <= target; v++) if (!listing.commits.has(v)) return false;
    return true;
  };

  let state: ReplayState | undefined;
  let startAfter = -1;
  let checkpointError: unknown;
  for (const checkpoint of checkpoints) {
    // An older checkpoint needs even more commits, so a gap here rules them all out.
    if (!hasCommits(checkpoint.version + 1)) break;
    try {
      state = await readCheckpoint(checkpoint, access, run);
      startAfter = checkpoint.version;
      break;
    } catch (err) {
      checkpointError ??= err;
    }
  }
  if (!state) {
    if (!hasCommits(0)) {
      // The checkpoint's own error (a failed download stays retryable), else the gap in the log.
      if (checkpointError !== undefined) throw checkpointError;
      throw deltaUnreadable(`the Delta log cannot be replayed to version ${target}: no readable checkpoint and not every commit since version 0 is present`);
    }
    state = new ReplayState();
  }

  const commits = commitVersions.filter((v) => v > startAfter);
  const paths = await mapLimit(commits, FETCH_CONCURRENCY, (v) => access.fetch(`_delta_log/${listing.commits.get(v)}`));
  for (let i = 0; i < commits.length; i++) {
    for (const action of await readJsonActions(paths[i], `commit ${commits[i]}`)) applyCommitAction(state, action);
  }
  return toSnapshot(state, target, startAfter >= 0 ? startAfter : undefined);
}

/** Builds the snapshot, refusing tables this reader cannot read correctly. */
function toSnapshot(state: ReplayState, version: number, checkpointVersion: number | undefined): DeltaSnapshot {
  if (!state.protocol) throw deltaUnreadable(`the Delta log has no protocol action at version ${version}`);
  if (!state.metaData) throw deltaUnreadable(`the Delta log has no metaData action at version ${version}`);
  checkReaderProtocol(state.protocol);
  const provider = state.metaData.format?.provider ?? 'parquet';
  if (provider !== 'parquet') throw deltaUnreadable(`Delta data file format ${JSON.stringify(provider)} is not supported`);
  const configuration: Record<string, string> = {};
  for (const [k, v] of Object.entries(state.metaData.configuration ?? {})) if (v !== null && v !== undefined) configuration[k] = String(v);
  const files = [...state.files.values()].sort(
    (a, b) => (a.modificationTime ?? 0) - (b.modificationTime ?? 0) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
  );
  return {
    version,
    protocol: state.protocol,
    schema: parseSchema(state.metaData.schemaString),
    partitionColumns: state.metaData.partitionColumns ?? [],
    configuration,
    columnMappingMode: columnMappingMode(configuration),
    files,
    checkpointVersion,
  };
}

function applyCommitAction(state: ReplayState, action: RawAction): void {
  if (action.add) state.add(toDataFile(action.add as RawAction));
  else if (action.remove) {
    const remove = action.remove as RawAction;
    state.remove(decodeDeltaPath(String(remove.path)), toDeletionVector(remove.deletionVector));
  } else if (action.protocol) state.protocol = toProtocol(action.protocol as RawAction);
  else if (action.metaData) state.metaData = action.metaData as MetaDataAction;
}

/** Reads one checkpoint into a fresh state. Checkpoint `remove` actions are tombstones and are skipped. */
async function readCheckpoint(checkpoint: CheckpointEntry, access: DeltaFileAccess, run: RunQuery): Promise<ReplayState> {
  const state = new ReplayState();
  const local = await mapLimit(checkpoint.files, FETCH_CONCURRENCY, (f) => access.fetch(`_delta_log/${f}`));
  const sidecars: string[] = [];
  if (checkpoint.files[0].endsWith('.json')) {
    for (const action of await readJsonActions(local[0], `checkpoint ${checkpoint.files[0]}`)) {
      if (action.sidecar) sidecars.push(String((action.sidecar as RawAction).path));
      else if (!action.remove) applyCommitAction(state, action);
    }
  } else {
    const columns = await parquetColumns(local, run);
    const meta: string[] = [];
    for (const kind of ['protocol', 'metaData', 'sidecar'] as const) {
      if (columns.has(kind)) meta.push(`SELECT '${kind}' AS kind, CAST(to_json(${kind}) AS VARCHAR) AS j FROM cp WHERE ${kind} IS NOT NULL`);
    }
    if (meta.length) {
      const rows = await run(`WITH cp AS (SELECT * FROM ${readParquetSql(local)}) ${meta.join(' UNION ALL ')}`);
      for (const row of rows) {
        const value = JSON.parse(String(row.j)) as RawAction;
        if (row.kind === 'sidecar') sidecars.push(String(value.path));
        else applyCommitAction(state, { [String(row.kind)]: value });
      }
    }
    if (columns.has('add')) for (const file of await readParquetAdds(local, run)) state.add(file);
  }
  if (sidecars.length) {
    // Sidecar paths are relative to `_delta_log/_sidecars/` unless absolute.
    const sidecarLocal = await mapLimit(sidecars, FETCH_CONCURRENCY, (p) => {
      const path = decodeDeltaPath(p);
      return access.fetch(isAbsoluteUri(path) ? path : `_delta_log/_sidecars/${path}`);
    });
    if ((await parquetColumns(sidecarLocal, run)).has('add')) for (const file of await readParquetAdds(sidecarLocal, run)) state.add(file);
  }
  return state;
}

function readParquetSql(localPaths: string[]): string {
  return `read_parquet([${localPaths.map(sqlString).join(', ')}], union_by_name = true)`;
}

async function parquetColumns(localPaths: string[], run: RunQuery): Promise<Set<string>> {
  const rows = await run(`SELECT column_name FROM (DESCRIBE SELECT * FROM ${readParquetSql(localPaths)})`);
  return new Set(rows.map((r) => String(r.column_name)));
}

/**
 * The `add` actions of checkpoint parquet files. Going through JSON keeps the query valid whatever
 * fields a writer put in its checkpoint schema (no `deletionVector`, `stats_parsed` only, …), and
 * returns only the fields the reader needs.
 */
async function readParquetAdds(localPaths: string[], run: RunQuery): Promise<DeltaDataFile[]> {
  const rows = await run(`WITH a AS (SELECT to_json(add) AS j FROM ${readParquetSql(localPaths)} WHERE add IS NOT NULL)
    SELECT j->>'$.path' AS path,
      CAST(j->'$.partitionValues' AS VARCHAR) AS partition_values,
      j->>'$.size' AS size,
      j->>'$.modificationTime' AS modification_time,
      CAST(j->'$.deletionVector' AS VARCHAR) AS deletion_vector,
      coalesce(j->>'$.stats_parsed.numRecords',
        CASE WHEN json_valid(j->>'$.stats') THEN json_extract_string(j->>'$.stats', '$.numRecords') END) AS num_records
    FROM a WHERE j->>'$.path' IS NOT NULL`);
  return rows.map((r) =>
    toDataFile({
      path: r.path,
      partitionValues: r.partition_values == null ? {} : JSON.parse(String(r.partition_values)),
      size: r.size,
      modificationTime: r.modification_time,
      deletionVector: r.deletion_vector == null ? undefined : JSON.parse(String(r.deletion_vector)),
      numRecords: r.num_records,
    }),
  );
}

/** Parses a newline-delimited JSON log file (commit or v2 checkpoint). */
async function readJsonActions(localPath: string, what: string): Promise<RawAction[]> {
  const text = await readFile(localPath, 'utf8');
  const actions: RawAction[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (!line.trim()) continue;
    try {
      actions.push(JSON.parse(line) as RawAction);
    } catch (err) {
      throw deltaUnreadable(`Delta ${what}: line ${i + 1} is not valid JSON`, err);
    }
  }
  return actions;
}

function toProtocol(raw: RawAction): DeltaProtocol {
  return {
    minReaderVersion: Number(raw.minReaderVersion),
    minWriterVersion: raw.minWriterVersion == null ? undefined : Number(raw.minWriterVersion),
    readerFeatures: Array.isArray(raw.readerFeatures) ? raw.readerFeatures.map(String) : undefined,
    writerFeatures: Array.isArray(raw.writerFeatures) ? raw.writerFeatures.map(String) : undefined,
  };
}

/** An `add` action (from JSON, or a checkpoint row in the same shape) as an active file. */
function toDataFile(add: RawAction): DeltaDataFile {
  if (typeof add.path !== 'string' || !add.path) throw deltaUnreadable('a Delta add action has no path');
  const partitionValues: Record<string, string | null> = {};
  for (const [k, v] of Object.entries((add.partitionValues as Record<string, unknown> | null) ?? {})) partitionValues[k] = v == null ? null : String(v);
  const file: DeltaDataFile = { path: decodeDeltaPath(add.path), partitionValues, size: Number(add.size ?? 0) };
  const numRecords = add.numRecords ?? statsNumRecords(add.stats);
  if (numRecords != null && numRecords !== '') file.numRecords = Number(numRecords);
  if (add.modificationTime != null) file.modificationTime = Number(add.modificationTime);
  const dv = toDeletionVector(add.deletionVector);
  if (dv) file.deletionVector = dv;
  return file;
}

function statsNumRecords(stats: unknown): unknown {
  if (typeof stats !== 'string') return undefined;
  try {
    return (JSON.parse(stats) as { numRecords?: unknown }).numRecords;
  } catch {
    return undefined; // stats are optional; unreadable stats only lose the count
  }
}

function toDeletionVector(raw: unknown): DeletionVectorDescriptor | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const dv = raw as RawAction;
  if (dv.storageType == null || dv.pathOrInlineDv == null) return undefined;
  return {
    storageType: String(dv.storageType),
    pathOrInlineDv: String(dv.pathOrInlineDv),
    ...(dv.offset == null ? {} : { offset: Number(dv.offset) }),
    sizeInBytes: Number(dv.sizeInBytes),
    cardinality: Number(dv.cardinality),
  };
}

function fileKey(path: string, dv: DeletionVectorDescriptor | undefined): string {
  return `${path}\u0000${deletionVectorUniqueId(dv)}`;
}
