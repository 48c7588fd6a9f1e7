import type { JobConfig } from '../config/index.ts';
import { deltaTableRoots, latestDeltaVersion } from '../formats/delta/index.ts';
import { deltaEtag, formatFromKey } from '../formats/index.ts';
import { isSideFile } from './s3.ts';
import type { ListedObject } from './types.ts';

/**
 * What a job imports from a listing: every Delta table (a folder holding `_delta_log/`) as one
 * entry whose key is the table root and whose ETag is the table version, for `auto` and `delta`
 * jobs; and, except for `delta` jobs, every other file that is not a side file (for `auto`, by
 * known extension). Files inside a Delta table are never imported as plain files.
 */
export function eligibleObjects(job: JobConfig, prefix: string, objects: ListedObject[]): ListedObject[] {
  const tables = job.format === 'auto' || job.format === 'delta' ? deltaTableRoots(objects.map((o) => o.key)) : [];
  const out: ListedObject[] = [];
  for (const root of tables) {
    const log = objects.filter((o) => o.key.startsWith(`${root}_delta_log/`));
    const version = latestDeltaVersion(log.map((o) => o.key.slice(root.length + '_delta_log/'.length)));
    if (version === undefined) continue;
    const lastModified = new Date(Math.max(...log.map((o) => o.lastModified.getTime())));
    out.push({ bucket: log[0].bucket, key: root, etag: deltaEtag(version), size: 0, lastModified });
  }
  if (job.format === 'delta') return out;
  const insideTable = (key: string) => tables.some((root) => key.startsWith(root));
  for (const o of objects) {
    if (isSideFile(prefix, o.key, o.size) || insideTable(o.key)) continue;
    if (job.format === 'auto' && formatFromKey(o.key) === undefined) continue;
    out.push(o);
  }
  return out;
}

