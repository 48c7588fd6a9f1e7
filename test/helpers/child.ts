import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';

/** A daemon running as a separate process (`inference-importer run`), for crash and signal tests. */
export interface ChildDaemon {
  proc: ChildProcess;
  /** Everything it printed so far (pino JSON lines). */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Writes a config as YAML and starts `src/cli.ts <command>` on it. */
export async function spawnCli(args: string[], config?: { path: string; body: unknown }, env: NodeJS.ProcessEnv = {}): Promise<ChildDaemon> {
  if (config) await writeFile(config.path, stringify(config.body));
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args, ...(config ? ['--config', config.path] : [])], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A test runner killed mid-test must not leave daemons running on the machine.
  const reap = () => proc.kill('SIGKILL');
  process.once('exit', reap);
  proc.once('exit', () => process.off('exit', reap));
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, output: () => out, exited };
}
