import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startDaemon } from '../src/daemon.ts';
import { openMemoryEngine } from '../src/engine/index.ts';
import { ownedTempDir } from '../src/util/temp-folders.ts';
import { sql } from './helpers/sql.ts';
import { BUCKET, startStack, type Stack } from './helpers/stack.ts';

/** A process that makes its temp folder, writes a download into it, says where, and waits to be killed. */
async function killedOwner(parent: string): Promise<string> {
  const script = `import { ownedTempDir } from './src/util/temp-folders.ts'; import { writeFile } from 'node:fs/promises';
    const dir = await ownedTempDir(${JSON.stringify(parent)}); await writeFile(dir + '/file.parquet', Buffer.alloc(1 << 20));
    console.log(dir); setInterval(() => {}, 1000);`;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'] });
  const dir = await new Promise<string>((resolve, reject) => {
    proc.stdout!.once('data', (d) => resolve(String(d).trim()));
    proc.once('exit', (code) => reject(new Error(`the owner exited with ${code} before making its folder`)));
  });
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await exited;
  return dir;
}

describe('temp folders and spill', () => {
  let stack: Stack;
  before(async () => (stack = await startStack()));
  after(async () => stack?.stop());

  it('folders left by killed processes are removed at start; folders of running processes and other files stay', async () => {
    const parent = join(stack.tmp.path, 'downloads');
    await mkdir(parent);
    const killed = [await killedOwner(parent), await killedOwner(parent)];
    const live = await ownedTempDir(parent); // this process: running
    await writeFile(join(parent, 'not-ours.txt'), 'x');
    await mkdir(join(parent, 'inference-importer-unowned')); // an earlier version's folder: maybe still in use
    assert.equal((await readdir(parent)).length, 5);

    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, new Writable({ write(chunk, _e, done) { lines.push(JSON.parse(String(chunk))); done(); } }));
    const config = stack.config([{ id: 'j', source: `s3://${BUCKET}/nothing/`, model: { id: 'm' }, schema: { predictionId: 'id', predictionScore: 's' } }], { worker: { tmpDir: parent, shutdownTimeout: '5s', maxTempBytes: '64MiB' } });
    const daemon = await startDaemon(config, { log });
    try {
      const left = await readdir(parent);
      for (const dir of killed) assert.ok(!left.includes(dir.split('/').pop()!), `${dir} removed`);
      assert.ok(left.includes(live.split('/').pop()!), 'the folder of a running process stays');
      assert.ok(left.includes('not-ours.txt'));
      assert.ok(left.includes('inference-importer-unowned'));
      assert.equal(left.filter((n) => n.startsWith('inference-importer-')).length, 3, 'the live folder, the unowned one and the new daemon\'s');
      const removed = lines.filter((l) => String(l.msg).startsWith('removed temp folders'));
      assert.equal(removed.length, 1);
      assert.equal(removed[0].folders, 2);
      assert.ok(Number(removed[0].bytes) >= 2 * (1 << 20), `bytes ${removed[0].bytes}`);
      // DuckDB's spill is bounded by worker.maxTempBytes.
      const [setting] = await sql(daemon.store)<{ m: string }>(`SELECT current_setting('max_temp_directory_size') AS m`);
      assert.equal(setting.m, '64.0 MiB');
    } finally {
      await daemon.stop();
    }
  });

  it('private engines spill into their own folder, within the budget', async () => {
    const dir = await ownedTempDir(stack.tmp.path);
    const engine = await openMemoryEngine({ readableDirectory: dir, memoryLimit: '64MB', threads: 1, maxTempBytes: 32 << 20 });
    try {
      const [s] = await engine.run(`SELECT current_setting('temp_directory') AS t, current_setting('max_temp_directory_size') AS m`);
      assert.deepEqual(s, { t: join(dir, '.spill'), m: '32.0 MiB' });
    } finally {
      engine.close();
    }
  });
});
