import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Every temp folder of the importer starts with this; only such folders are ever removed. */
export const TEMP_PREFIX = 'inference-importer-';
/** The file in each temp folder naming the process that owns it. */
const OWNER_FILE = '.owner';

/**
 * The identity of a process: its PID and, on Linux, its start time, because PIDs are reused
 * (a restarted container's daemon usually gets the PID its killed predecessor had).
 */
function identity(pid: number): string | undefined {
  try {
    // Field 22 of /proc/<pid>/stat, counted after the command name (which may hold spaces).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return `${pid} ${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}`;
  } catch {
    return undefined;
  }
}

function alive(owner: string): boolean {
  const pid = Number(owner.split(' ')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const now = identity(pid);
  return now === undefined || !owner.includes(' ') || now === owner;
}

/** Creates `<parent>/inference-importer-<kind>XXXXXX` owned by this process. */
export async function ownedTempDir(parent: string, kind = ''): Promise<string> {
  const dir = await mkdtemp(join(parent, `${TEMP_PREFIX}${kind}`));
  await writeFile(join(dir, OWNER_FILE), identity(process.pid) ?? String(process.pid));
  return dir;
}

/**
 * Removes the temp folders under `parent` left by processes that ended without cleaning up
 * (SIGKILL, OOM kill, power loss): those whose owner is not running. Folders of running processes
 * (other daemons, dry runs) stay, and so do folders without an owner file (a folder being made
 * right now, or one of a running process of an earlier version).
 * Returns what was removed and its size.
 */
export async function removeAbandoned(parent: string): Promise<{ folders: string[]; bytes: number }> {
  const removed = { folders: [] as string[], bytes: 0 };
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(TEMP_PREFIX))) {
    const dir = join(parent, name);
    const owner = await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => undefined);
    // A folder without an owner file may belong to a running process of an earlier version: left alone.
    if (!owner?.trim() || alive(owner.trim())) continue;
    const bytes = await size(dir);
    await rm(dir, { recursive: true, force: true }).then(() => {
      removed.folders.push(dir);
      removed.bytes += bytes;
    }, () => undefined);
  }
  return removed;
}

async function size(path: string): Promise<number> {
  const s = await stat(path).catch(() => undefined);
  if (!s) return 0;
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const name of await readdir(path).catch(() => [] as string[])) total += await size(join(path, name));
  return total;
}
