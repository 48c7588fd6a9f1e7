import { join } from 'node:path';
import type { Config } from '../../src/config/index.ts';
import { createStore, type Store } from '../../src/store/index.ts';
import { createTestDatabase } from './postgres.ts';
import type { StoreKind } from './stack.ts';
import { tmpDir, type TmpDir } from './tmp.ts';

/** A store opened for tests that import without a daemon (see `openTestStore`). */
export interface TestStore<C extends Readonly<Config>> {
  tmp: TmpDir;
  /** The open store; a test that reopens it sets the new one here, so `close` closes that. */
  store: Store;
  /** The test's config over this store's settings. */
  config: C;
  /** Closes the store, drops its database (PostgreSQL) and removes the temp folder. */
  close(): Promise<void>;
}

/**
 * A store of `kind` in a fresh temp folder (its DuckDB file there, or a fresh PostgreSQL database),
 * opened as the daemon opens its own: `config` builds the test's config around the store settings
 * (kind, path or url, and `settings` such as a small memoryLimit); `readable` is the folder the
 * store's DuckDB may read, the downloads (default: the temp folder).
 */
export async function openTestStore<C extends Readonly<Config>>(kind: StoreKind, options: {
  prefix: string;
  config: (store: Record<string, unknown>) => C;
  settings?: Record<string, unknown>;
  readable?: (tmp: string) => string;
}): Promise<TestStore<C>> {
  const tmp = await tmpDir(options.prefix);
  const db = kind === 'postgres' ? await createTestDatabase() : undefined;
  const config = options.config({ kind, ...(db ? { url: db.url } : { path: join(tmp.path, 's.duckdb') }), ...options.settings });
  const store = createStore(config, options.readable?.(tmp.path) ?? tmp.path);
  await store.init();
  const opened: TestStore<C> = {
    tmp,
    store,
    config,
    async close() {
      await opened.store.close();
      await db?.drop();
      await tmp.cleanup();
    },
  };
  return opened;
}
