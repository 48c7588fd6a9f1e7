import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, test } from 'node:test';
import { freePort } from './helpers/ports.ts';
import { tmpDir, type TmpDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;

const dirs: TmpDir[] = [];
after(async () => {
  for (const d of dirs) await d.cleanup();
});

/** Runs `scripts/demo.ts` as `npm run demo` does, in a private working directory and on a free HTTP port. */
async function runDemo(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }> {
  const dir = await tmpDir('demo-test-');
  dirs.push(dir);
  const proc = spawn(process.execPath, ['--openssl-legacy-provider', '--import', 'tsx', 'scripts/demo.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, DEMO_HTTP_PORT: '0', DEMO_DIR: dir.path, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => proc.on('exit', (c, s) => resolve([c, s])));
  return { code, signal, out, err };
}

test('demo --exit-when-joined imports the seeded predictions, joins the delayed actuals and exits 0', { timeout: 120_000 }, async () => {
  const started = Date.now();
  const { code, out, err } = await runDemo(['--exit-when-joined']);
  const transcript = `--- stdout\n${out}\n--- stderr\n${err}`;
  assert.equal(code, 0, transcript);
  assert.ok(Date.now() - started < 60_000, `took ${Date.now() - started} ms\n${transcript}`);

  // The seed: two parquet files and a CSV of predictions, and a marker that is never imported.
  assert.match(out, /prediction\/2026\/11\/20\/part-0\.parquet\s+500 predictions/, transcript);
  assert.match(out, /prediction\/2026\/11\/20\/part-1\.parquet\s+500 predictions/, transcript);
  assert.match(out, /prediction\/2026\/11\/21\/part-0\.csv\s+300 predictions/, transcript);
  assert.match(out, /ctr-predictions\s+3 files discovered \(3 succeeded\); 1300 predictions loaded/, transcript);
  assert.match(out, /ctr-actuals\s+1 file discovered \(1 succeeded\); 545 actuals loaded/, transcript);
  assert.match(out, /_SUCCESS markers in the ledger: 0/, transcript);

  // The summary from the inferences view: exact, because the seed is arithmetic, not random.
  assert.match(out, /^ {2}2026-11-20\s+1000\s+400\s+40\.0%\s+77\.8%$/m, transcript);
  assert.match(out, /^ {2}2026-11-21\s+300\s+120\s+40\.0%\s+75\.8%$/m, transcript);
  assert.match(out, /^ {2}total\s+1300\s+520\s+40\.0%\s+77\.3%$/m, transcript);
  assert.match(out, /actuals loaded: 545 \(25 wait for predictions that have not arrived yet/, transcript);
  assert.match(out, /Check: matches the seeded data \(1300 predictions, 545 actuals, 520 joined, accuracy 77\.3%\)/, transcript);

  // The example row comes from the typed per-model table.
  assert.match(out, /prediction_id\s+ctr-000000/, transcript);
  assert.match(out, /features\s+age=18 \(BIGINT\), device=mobile \(VARCHAR\), clicks_7d=0 \(BIGINT\)/, transcript);
  assert.match(out, /tags\s+region=us-east/, transcript);

  assert.match(out, /Metrics: {2}http:\/\/127\.0\.0\.1:\d+\/metrics/, transcript);
  assert.match(out, /Health: {3}http:\/\/127\.0\.0\.1:\d+\/healthz/, transcript);
  assert.match(out, /Stopped\./, transcript);
  assert.doesNotMatch(out + err, /"level":/, 'daemon logs are shown as plain lines, not JSON');
});

test('demo explains how to install Redis when there is none', { timeout: 30_000 }, async () => {
  const emptyBin = await tmpDir('demo-path-');
  dirs.push(emptyBin);
  // Nothing listens on a just-freed port, and redis-server is not on this PATH.
  const { code, out, err } = await runDemo(['--exit-when-joined'], { DEMO_REDIS_PORT: String(await freePort()), PATH: emptyBin.path });
  assert.equal(code, 1, `${out}\n${err}`);
  assert.match(err, /needs Redis/);
  assert.match(err, /apt-get install redis-server/);
});
