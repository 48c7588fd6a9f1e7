/**
 * What a `_delta_log/` listing holds: commits and checkpoints, by version. Everything else (`.crc`
 * files, `_last_checkpoint`, hidden files, `.tmp/`, `_autostats/`, compacted logs) is ignored.
 */

/** One complete checkpoint: every file it consists of (relative to `_delta_log/`). */
export interface CheckpointEntry {
  version: number;
  kind: 'classic' | 'multipart' | 'v2';
  /** The checkpoint files: one, or every part of a multi-part checkpoint in part order. */
  files: string[];
}

export interface LogListing {
  /** Commit file name by version. */
  commits: Map<number, string>;
  /** Complete checkpoints, newest first. */
  checkpoints: CheckpointEntry[];
}

const COMMIT = /^(\d{20})\.json$/;
const CLASSIC = /^(\d{20})\.checkpoint\.parquet$/;
const MULTIPART = /^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$/;
const V2 = /^(\d{20})\.checkpoint\.[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\.(json|parquet)$/;

/** Accepts bare names and keys that still carry their `…/_delta_log/` prefix. */
function nameInLog(entry: string): string {
  const at = entry.lastIndexOf('_delta_log/');
  return at >= 0 && (at === 0 || entry[at - 1] === '/') ? entry.slice(at + '_delta_log/'.length) : entry;
}

/** Sorts a `_delta_log/` listing into commits and complete checkpoints. */
export function parseLogListing(logFiles: readonly string[]): LogListing {
  const commits = new Map<number, string>();
  const checkpoints: CheckpointEntry[] = [];
  const parts = new Map<string, { version: number; count: number; files: Map<number, string> }>();
  for (const entry of logFiles) {
    const name = nameInLog(entry);
    let m: RegExpExecArray | null;
    if ((m = COMMIT.exec(name))) commits.set(Number(m[1]), name);
    else if ((m = CLASSIC.exec(name))) checkpoints.push({ version: Number(m[1]), kind: 'classic', files: [name] });
    else if ((m = V2.exec(name))) checkpoints.push({ version: Number(m[1]), kind: 'v2', files: [name] });
    else if ((m = MULTIPART.exec(name))) {
      const key = `${m[1]}/${m[3]}`;
      const group = parts.get(key) ?? { version: Number(m[1]), count: Number(m[3]), files: new Map<number, string>() };
      group.files.set(Number(m[2]), name);
      parts.set(key, group);
    }
  }
  // A multi-part checkpoint counts only when every part is there (a writer may have died mid-way).
  for (const group of parts.values()) {
    if (group.count < 1) continue;
    const files: string[] = [];
    for (let i = 1; i <= group.count; i++) {
      const file = group.files.get(i);
      if (file) files.push(file);
    }
    if (files.length === group.count) checkpoints.push({ version: group.version, kind: 'multipart', files });
  }
  // Newest first; at one version prefer classic, then v2, then multi-part (fewest files to fetch).
  const rank = { classic: 0, v2: 1, multipart: 2 } as const;
  checkpoints.sort((a, b) => b.version - a.version || rank[a.kind] - rank[b.kind] || a.files[0].localeCompare(b.files[0]));
  return { commits, checkpoints };
}

/** The newest version a listing names (commit or complete checkpoint), or undefined for an empty log. */
export function latestVersionOf(listing: LogListing): number | undefined {
  let latest: number | undefined;
  for (const v of listing.commits.keys()) if (latest === undefined || v > latest) latest = v;
  for (const c of listing.checkpoints) if (latest === undefined || c.version > latest) latest = c.version;
  return latest;
}
