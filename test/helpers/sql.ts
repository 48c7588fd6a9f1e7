import { Importer } from '../../src/import/index.ts';
import type { Store } from '../../src/store/index.ts';

/** A query on whatever store a daemon runs, through its test-only `query` accessor (not part of `Store`). */
export type QueryFn = <T = Record<string, unknown>>(sql: string, params?: unknown[]) => Promise<T[]>;

export function sql(store: Store): QueryFn {
  const q = (store as unknown as { query?: QueryFn }).query;
  if (!q) throw new Error(`store ${store.kind} has no test query accessor`);
  return q.bind(store) as QueryFn;
}

const importers = new WeakMap<Store, Importer>();

/** The one store-neutral importer of a store (as a daemon has one), for tests that import without a daemon. */
export function importerOf(store: Store): Importer {
  let importer = importers.get(store);
  if (!importer) importers.set(store, (importer = new Importer(store)));
  return importer;
}
