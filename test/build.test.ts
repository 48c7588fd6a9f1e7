import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { build, ROOT } from './helpers/build.ts';
import { envOf, execForm, parseDockerfile, type Instruction } from './helpers/dockerfile.ts';
import { tmpDir, type TmpDir } from './helpers/tmp.ts';

const run = promisify(execFile);

/** Runs a command with plain node (no tsx loader), returning its exit code and output. */
async function node(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, args, { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('production build', () => {
  let tmp: TmpDir;
  before(async () => {
    tmp = await tmpDir('importer-build-');
    await build();
  });
  after(async () => tmp?.cleanup());

  it('compiles every relative import to a .js specifier that plain node resolves', async () => {
    const files = (await readdir(join(ROOT, 'dist'), { recursive: true })).filter((f) => f.endsWith('.js'));
    assert.ok(files.includes('cli.js') && files.includes('daemon.js'), `dist/ holds ${files.length} files`);
    for (const f of files) {
      const text = await readFile(join(ROOT, 'dist', f), 'utf8');
      assert.doesNotMatch(text, /from ['"]\.{1,2}\/[^'"]*\.ts['"]/, `dist/${f} still imports a .ts file`);
    }
  });

  it('runs `config check` from dist/ and through the bin with plain node', async () => {
    const direct = await node(['dist/cli.js', 'config', 'check', '--config', 'config/importer.yaml']);
    assert.equal(direct.code, 0, direct.stderr);
    assert.equal(direct.stdout, 'config/importer.yaml: ok (2 jobs: ctr-predictions, ctr-actuals)\n');
    const viaBin = await node(['bin/inference-importer.js', 'config', 'check', '--config', 'config/importer.yaml']);
    assert.equal(viaBin.stdout, direct.stdout);
  });

  it('reports a bad config from dist/ with its code and exit status 2', async () => {
    const path = join(tmp.path, 'bad.yaml');
    await writeFile(path, 'redis: { url: nope }\njobs: []\n');
    const r = await node(['dist/cli.js', 'config', 'check', '--config', path]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `IMP_ERR_CONFIG_INVALID: ${path} has 2 errors:\n  redis.url: Invalid URL\n  jobs: at least one job is needed\n`);
  });
});

describe('Dockerfile', () => {
  let ins: Instruction[];
  let final: number;
  before(async () => {
    ins = await parseDockerfile(join(ROOT, 'Dockerfile'));
    final = Math.max(...ins.map((i) => i.stage));
  });
  const args = () => Object.fromEntries(ins.filter((i) => i.op === 'ARG').map((i) => i.args.split('=') as [string, string]));
  const resolve = (s: string) => s.replace(/\$\{(\w+)\}/g, (_, name: string) => args()[name] ?? '');

  it('builds in two stages on a glibc Node 22 LTS base', () => {
    const froms = ins.filter((i) => i.op === 'FROM').map((i) => resolve(i.args));
    assert.deepEqual(froms, ['node:22-bookworm-slim AS build', 'node:22-bookworm-slim']);
  });

  it('runs as a fixed non-root UID with tini as PID 1 in front of the compiled CLI', () => {
    const user = ins.filter((i) => i.op === 'USER' && i.stage === final).at(-1);
    assert.equal(user?.args, '10001:10001');
    const entry = execForm(ins.filter((i) => i.op === 'ENTRYPOINT' && i.stage === final).at(-1));
    assert.deepEqual(entry, ['/usr/bin/tini', '--', 'node', '--enable-source-maps', '/app/dist/cli.js']);
    assert.deepEqual(execForm(ins.filter((i) => i.op === 'CMD' && i.stage === final).at(-1)), ['run']);
    assert.match(ins.filter((i) => i.op === 'RUN' && i.stage === final).map((i) => i.args).join(' '), /apt-get install -y --no-install-recommends tini\b/);
  });

  it('writes only to /data and /tmp, keeps production dependencies only, and has a health check and OCI labels', () => {
    const env = envOf(ins, final);
    assert.equal(env.TMPDIR, '/tmp');
    assert.equal(env.HOME, '/tmp');
    assert.equal(env.NODE_ENV, 'production');
    assert.equal(ins.find((i) => i.op === 'VOLUME' && i.stage === final)?.args, '["/data", "/tmp"]');
    assert.match(ins.filter((i) => i.op === 'RUN' && i.stage === 0).at(-1)!.args, /npm run build && npm prune --omit=dev/);
    const health = ins.find((i) => i.op === 'HEALTHCHECK' && i.stage === final);
    assert.match(health?.args ?? '', /\/healthz/);
    const labels = ins.filter((i) => i.op === 'LABEL' && i.stage === final).map((i) => i.args).join(' ');
    for (const key of ['title', 'description', 'licenses', 'version', 'revision']) assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${key}=`));
  });

  it('copies only paths that exist after the build and that .dockerignore lets into the context', async () => {
    const ignore = (await readFile(join(ROOT, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    assert.equal(ignore[0], '*', '.dockerignore starts by excluding everything');
    const allowed = ignore.slice(1).map((l) => l.replace(/^!/, '').replace(/\/$/, ''));
    const builtInStage0 = new Set<string>(['node_modules', 'dist']);
    for (const i of ins.filter((x) => x.op === 'COPY')) {
      const parts = i.args.split(' ');
      const from = parts.find((p) => p.startsWith('--from='));
      const sources = parts.filter((p) => !p.startsWith('--')).slice(0, -1);
      assert.ok(sources.length > 0, `COPY ${i.args} has a source`);
      for (const src of sources) {
        if (from) {
          assert.equal(from, '--from=build');
          const rel = src.replace(/^\/app\//, '');
          assert.ok(builtInStage0.has(rel), `COPY ${i.args}: /app/${rel} is not made by the build stage`);
          assert.ok(existsSync(join(ROOT, rel)), `${rel} missing after the build`);
          continue;
        }
        assert.ok(existsSync(join(ROOT, src)), `COPY ${i.args}: ${src} does not exist`);
        assert.ok(allowed.some((a) => src === a || src.startsWith(`${a}/`)), `COPY ${i.args}: ${src} is excluded by .dockerignore`);
      }
    }
    assert.ok(existsSync(join(ROOT, 'dist/cli.js')), 'the ENTRYPOINT script /app/dist/cli.js is built');
  });
});
