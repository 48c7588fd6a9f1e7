/**
 * Partition-aware listing: the parts of a prefix that hold only date partitions (`dt=2024-01-01/`)
 * older than a horizon, which a poll may leave out and the periodic full listing covers.
 */

/** Keys from `first` to `last` (both listed before, inclusive) that a partial listing skips. */
export interface SkippedRange {
  first: string;
  last: string;
  /** Keys the full listing saw in the range. */
  keys: number;
}

/** Fewer keys than one LIST page: skipping them saves less than the request that lists past them. */
const MIN_SKIPPED_KEYS = 1000;

/** The day a partition value starts (`2024-01-31`, `20240131`, `2024-01-31T05`, `2024-01-31 05:00:00`), or undefined when it is no date. */
export function partitionDay(value: string): number | undefined {
  const m = /^(\d{4})-?(\d{2})-?(\d{2})(?:$|[T _%])/.exec(value);
  if (!m) return undefined;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  const back = new Date(ms);
  // 2024-02-31 is no date: Date.UTC would roll it over to March.
  return back.getUTCMonth() === Number(m[2]) - 1 && back.getUTCDate() === Number(m[3]) ? ms : undefined;
}

/**
 * The ranges of a full listing (`keys`, in S3's order) that hold only partitions older than
 * `cutoffMs`: runs of consecutive keys whose first `<name>=<date>/` folder under the prefix has the
 * same parent and a day that ended before the cutoff. A run is bounded by keys of one parent folder
 * and of one partition name, so any key that later appears between its first and last key is under
 * that parent with a partition value sorting between two old ones (for dates of one format, an old
 * date too); such keys wait for the next full listing. Runs of fewer keys than a page are listed.
 */
export function oldPartitionRanges(keys: readonly string[], prefix: string, name: string, cutoffMs: number): SkippedRange[] {
  const ranges: SkippedRange[] = [];
  const marker = `${name}=`;
  let run: { parent: string; start: number } | undefined;
  const close = (end: number) => {
    if (run && end - run.start >= MIN_SKIPPED_KEYS) ranges.push({ first: keys[run.start], last: keys[end - 1], keys: end - run.start });
    run = undefined;
  };
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    // The first `<name>=` folder under the prefix: right at it, or after a slash further down.
    const at = key.startsWith(marker, prefix.length) ? prefix.length : key.indexOf(`/${marker}`, prefix.length) + 1;
    const end = at > 0 || key.startsWith(marker, prefix.length) ? key.indexOf('/', at + marker.length) : -1;
    const day = end > 0 ? partitionDay(key.slice(at + marker.length, end)) : undefined;
    // A day-partition holds data of its whole day: it is old once that day ended before the cutoff.
    if (day === undefined || day + 86_400_000 > cutoffMs) {
      close(i);
      continue;
    }
    const parent = key.slice(0, at);
    if (run && run.parent !== parent) close(i);
    run ??= { parent, start: i };
  }
  close(keys.length);
  return ranges;
}
