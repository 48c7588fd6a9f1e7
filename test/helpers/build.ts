import { execFile } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** The repository root. */
export const ROOT = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');

const run = promisify(execFile);

/** Compiles src/ to dist/ exactly as `npm run build` does. */
export async function build(): Promise<void> {
  await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT });
}

async function newest(dir: string): Promise<number> {
  let max = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) max = Math.max(max, (await stat(join(entry.parentPath, entry.name))).mtimeMs);
  }
  return max;
}

/** Builds unless dist/cli.js is newer than src/ and the tsconfig files (the build test of the same run compiled it). */
export async function ensureBuilt(): Promise<void> {
  const built = await stat(join(ROOT, 'dist/cli.js')).then((s) => s.mtimeMs, () => 0);
  const configs = await Promise.all(['tsconfig.json', 'tsconfig.build.json'].map((f) => stat(join(ROOT, f)).then((s) => s.mtimeMs)));
  if (built < Math.max(await newest(join(ROOT, 'src')), ...configs)) await build();
}
