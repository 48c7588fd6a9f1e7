import type { Config } from '../config/index.ts';
import { DuckDbStore } from './duckdb-store.ts';
import { PostgresStore } from './postgres/postgres-store.ts';
import type { Store } from './store.ts';

export * from './store.ts';
export { DuckDbStore } from './duckdb-store.ts';
export { PostgresStore } from './postgres/postgres-store.ts';

/** Opens the configured store; `readableDirectory` is the only folder its import engine may read files from. */
export function createStore(config: Readonly<Config>, readableDirectory: string): Store {
  const s = config.store;
  const maxTempBytes = config.worker.maxTempBytes;
  if (s.kind === 'duckdb') return new DuckDbStore({ path: s.path, memoryLimit: s.memoryLimit, threads: s.threads, readableDirectory, maxTempBytes });
  return new PostgresStore({ ...s, readableDirectory, maxTempBytes });
}
