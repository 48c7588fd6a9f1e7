import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** A fresh temporary directory and a way to remove it again. */
export interface TmpDir {
  /** Absolute path of the directory. */
  path: string;
  /** Removes the directory recursively; safe to call more than once. */
  cleanup(): Promise<void>;
}

/**
 * Creates a unique directory under `os.tmpdir()` named `<prefix>XXXXXX`.
 */
export async function tmpDir(prefix: string): Promise<TmpDir> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { path: dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
