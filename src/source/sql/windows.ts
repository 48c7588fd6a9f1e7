import type { ListedObject } from '../types.ts';

/**
 * Windows of a query source as ledger entries. A window is a version whose key names its cursor
 * range, `window/<from>/<to>` (RFC 3339, from exclusive, to inclusive): its rows, its row count
 * and its ledger row commit in one store transaction, so the ledger alone says which ranges are in.
 * A source without a cursor has one key, `query`, and each refresh is a new version of it, which
 * replaces what the previous refresh loaded (as a rewritten file does).
 */

/** The "bucket" of a window's ledger row: windows come from no bucket. */
export const SQL_BUCKET = 'sql';
/** The key of the whole query's refreshes (a source without a cursor). */
export const QUERY_KEY = 'query';
const WINDOW_ETAG = 'window';

export interface CursorWindow {
  from: Date;
  to: Date;
}

export const windowKey = (w: CursorWindow) => `window/${w.from.toISOString()}/${w.to.toISOString()}`;

/** The range a window key names, or undefined for the whole-query key (and anything else). */
export function parseWindowKey(key: string): CursorWindow | undefined {
  const m = /^window\/([^/]+)\/([^/]+)$/.exec(key);
  if (!m) return undefined;
  const from = new Date(m[1]);
  const to = new Date(m[2]);
  return Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) ? undefined : { from, to };
}

/** A window as the listed entry the ledger records. */
export const windowEntry = (w: CursorWindow): ListedObject => ({ bucket: SQL_BUCKET, key: windowKey(w), etag: WINDOW_ETAG, size: 0, lastModified: w.to });

/** One refresh of the whole query: a new version of its one key. */
export const refreshEntry = (at: Date): ListedObject => ({ bucket: SQL_BUCKET, key: QUERY_KEY, etag: `refresh-${at.toISOString()}`, size: 0, lastModified: at });

/**
 * The windows that follow `end` up to `now`, each at most `size` long, at most `max` of them: a
 * backfill is split into steps, each its own transaction.
 */
export function nextWindows(end: Date, now: Date, size: number, max: number): CursorWindow[] {
  const out: CursorWindow[] = [];
  let from = end.getTime();
  while (from < now.getTime() && out.length < max) {
    const to = Math.min(now.getTime(), from + size);
    out.push({ from: new Date(from), to: new Date(to) });
    from = to;
  }
  return out;
}
