import type { Config } from '../config/index.ts';
import { ImporterError } from '../errors.ts';
import { DuckDbStore } from './duckdb-store.ts';
import type { Store } from './store.ts';

export * from './store.ts';
export { DuckDbStore } from './duckdb-store.ts';

/** Opens the configured store; `readableDirectory` is the only folder its SQL may read files from. */
export function createStore(config: Readonly<Config>, readableDirectory?: string): Store {
  const s = config.store;
  if (s.kind === 'duckdb') return new DuckDbStore({ path: s.path, memoryLimit: s.memoryLimit, threads: s.threads, readableDirectory });
  throw new ImporterError('IMP_ERR_STORE', 'store.kind "postgres" is not available yet in this version; use store.kind: duckdb', { permanent: true });
}
