import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { expandEnv, loadConfig, parseDuration, parseSize, validateConfig } from '../src/config/index.ts';
import { spawnCli } from './helpers/child.ts';
import { tmpDir, type TmpDir } from './helpers/tmp.ts';

const BAD = `
redis: { url: not-a-url, bogus: 1 }
defaults: { pollInterval: 10 parsecs, maxFileBytes: lots }
store: { kind: duckdb, path: \${STORE_PATH:./data/x.duckdb} }
jobs:
  - id: ctr
    source: s3://bucket/ctr/
    model: { id: ctr }
    schema: { predictionLabel: label }
  - id: ctr
    source: http://bucket/x
    format: xml
    model: { id: ctr, environment: staging }
    schema: { predictionId: id, actualLabel: y, extra: 1 }
`;

describe('config', () => {
  let tmp: TmpDir;
  before(async () => (tmp = await tmpDir('importer-config-')));
  after(async () => tmp?.cleanup());

  it('lists every error with its key path and exits non-zero', async () => {
    const path = join(tmp.path, 'bad.yaml');
    await writeFile(path, BAD);
    const child = await spawnCli(['config', 'check', '--config', path]);
    const { code } = await child.exited;
    assert.equal(code, 2);
    assert.equal(
      child.output().replace(/^.*NodeVersionSupportWarning.*\n?/gm, '').trim(),
      [
        `IMP_ERR_CONFIG_INVALID: ${path} has 10 errors:`,
        '  redis.url: Invalid URL',
        '  redis: unknown key "bogus"',
        '  defaults.pollInterval: not a duration: "10 parsecs" (use e.g. 500ms, 10s, 5m, 1h)',
        '  defaults.maxFileBytes: not a size: "lots" (use e.g. 512MiB, 1GiB, or bytes)',
        '  jobs[0].schema.predictionId: required',
        '  jobs[1].source: must be s3://bucket/prefix/',
        '  jobs[1].format: Invalid option: expected one of "auto"|"parquet"|"csv"|"json"|"arrow"|"avro"|"delta"|"sagemaker-capture"|"sagemaker-ground-truth"',
        '  jobs[1].model.environment: Invalid option: expected one of "production"|"training"|"validation"',
        '  jobs[1].schema: unknown key "extra"',
        '  jobs[1].id: duplicates jobs[0].id "ctr"',
      ].join('\n'),
    );
  });

  it('accepts every limit at its boundary and refuses one step beyond, naming the key', () => {
    const job = (extra: Record<string, unknown> = {}, model: Record<string, unknown> = {}) =>
      ({ id: 'a', source: 's3://bucket/a/', model: { id: 'm', ...model }, schema: { predictionId: 'id', predictionScore: 's' }, ...extra });
    const rows: Array<[string, Record<string, unknown>, string | null]> = [
      ['a token of 16 characters', { http: { token: 't'.repeat(16) } }, null],
      ['a token of 15 characters', { http: { token: 't'.repeat(15) } }, 'http.token: must be at least 16 characters'],
      ['a model ID of 128 characters', { jobs: [job({}, { id: 'm'.repeat(128) })] }, null],
      ['a model ID of 129 characters', { jobs: [job({}, { id: 'm'.repeat(129) })] }, 'jobs[0].model.id: Too big: expected string to have <=128 characters'],
      ['a job ID of 63 characters', { jobs: [job({ id: 'j'.repeat(63) })] }, null],
      ['a job ID of 64 characters', { jobs: [job({ id: 'j'.repeat(64) })] }, 'jobs[0].id: must be 1-63 letters, digits, - or _, starting with a letter or digit'],
      ['64 parallel LISTs', { s3: { listConcurrency: 64 } }, null],
      ['65 parallel LISTs', { s3: { listConcurrency: 65 } }, 's3.listConcurrency: Too big: expected number to be <=64'],
      ['port 65535', { http: { port: 65535 } }, null],
      ['port 65536', { http: { port: 65536 } }, 'http.port: Too big: expected number to be <=65535'],
      ['1 and 50 attempts', { worker: { attempts: 50 } }, null],
      ['0 attempts', { worker: { attempts: 0 } }, 'worker.attempts: Too small: expected number to be >=1'],
      ['51 attempts', { worker: { attempts: 51 } }, 'worker.attempts: Too big: expected number to be <=50'],
      ['loopback 127.0.0.2 without a token', { http: { host: '127.0.0.2' } }, null],
      ['localhost without a token', { http: { host: 'localhost' } }, null],
      ['0.0.0.0 with a token', { http: { host: '0.0.0.0', token: 't'.repeat(16) } }, null],
      ['0.0.0.0 without a token', { http: { host: '0.0.0.0' } }, 'http.host: binding 0.0.0.0 without http.token would expose the admin API; set http.token or bind to 127.0.0.1'],
      ['128.0.0.1 without a token', { http: { host: '128.0.0.1' } }, 'http.host: binding 128.0.0.1 without http.token would expose the admin API; set http.token or bind to 127.0.0.1'],
    ];
    for (const [what, override, error] of rows) {
      const attempt = () => validateConfig({ jobs: [job()], ...override });
      if (error === null) assert.doesNotThrow(attempt, what);
      else assert.throws(attempt, { code: 'IMP_ERR_CONFIG_INVALID', message: `config has 1 error:\n  ${error}` }, what);
    }
  });

  it('reports unset environment references, and `run` refuses a bad config the same way', async () => {
    const path = join(tmp.path, 'env.yaml');
    await writeFile(path, 'http: { token: ${ADMIN_TOKEN} }\njobs:\n  - { id: a, source: "s3://bucket/a/", model: { id: m }, schema: { predictionId: id, predictionScore: s } }\n');
    const child = await spawnCli(['run', '--config', path], undefined, { ADMIN_TOKEN: '' });
    assert.equal((await child.exited).code, 2);
    assert.match(child.output(), /IMP_ERR_CONFIG_INVALID: .*env\.yaml has \d+ errors?:\n {2}\$\{ADMIN_TOKEN\}: environment variable is not set and has no default\n/);
  });

  it('expands ${VAR} and ${VAR:default}, parses units, applies defaults and freezes the result', async () => {
    const path = join(tmp.path, 'good.yaml');
    await writeFile(path, 'store: { kind: duckdb, path: ${STORE:/tmp/s.duckdb} }\nhttp: { token: ${TOKEN} }\njobs:\n  - { id: a, source: "s3://bucket/a/", pollInterval: 2m, maxFileBytes: 5MiB, model: { id: m }, schema: { predictionId: id, predictionScore: s } }\n');
    const config = await loadConfig(path, { TOKEN: 'sixteen-chars-long!' });
    assert.equal(config.http.token, 'sixteen-chars-long!');
    assert.deepEqual(config.store, { kind: 'duckdb', path: '/tmp/s.duckdb', memoryLimit: '512MB' });
    assert.equal(config.defaults.pollInterval, 10_000);
    assert.equal(config.defaults.maxFileBytes, 1024 ** 3);
    assert.equal(config.jobs[0].pollInterval, 120_000);
    assert.equal(config.jobs[0].maxFileBytes, 5 * 1024 ** 2);
    assert.equal(config.jobs[0].format, 'auto');
    assert.equal(config.jobs[0].model.environment, 'production');
    assert.equal(config.jobs[0].model.version, 'no_version');
    assert.ok(Object.isFrozen(config.jobs[0].schema));
    assert.equal(expandEnv('a ${X} ${Y:d}', { X: '1' }, []), 'a 1 d');
    const missing: string[] = [];
    assert.equal(expandEnv('# token: ${NOPE}\nx: "#${X}" # ${NOPE2}\ny: 1', { X: '1' }, missing), '# token: ${NOPE}\nx: "#1" # ${NOPE2}\ny: 1');
    assert.deepEqual(missing, []);
    // A secret with YAML syntax in it stays one intact string; numbers stay numbers.
    await writeFile(path, 'http: { port: ${PORT}, token: ${T} }\njobs:\n  - { id: a, source: "s3://bucket/a/", model: { id: m }, schema: { predictionId: id, predictionScore: s } }\n');
    const tricky = await loadConfig(path, { T: '*abc, def #ghi-0123456789', PORT: '8081' });
    assert.deepEqual(tricky.http, { port: 8081, token: '*abc, def #ghi-0123456789', sessionTtl: 12 * 3600_000 });
    await writeFile(path, 'http: { host: 0.0.0.0 }\njobs:\n  - { id: a, source: "s3://bucket/a/", model: { id: m }, schema: { predictionId: id, predictionScore: s } }\n');
    await assert.rejects(loadConfig(path, {}), { message: `${path} has 1 error:\n  http.host: binding 0.0.0.0 without http.token would expose the admin API; set http.token or bind to 127.0.0.1` });
    assert.deepEqual([parseDuration('500ms'), parseDuration('1.5h'), parseDuration(3), parseDuration('x')], [500, 5_400_000, 3000, undefined]);
    assert.deepEqual([parseSize('1GiB'), parseSize('512MB'), parseSize(7), parseSize('-1')], [1024 ** 3, 512e6, 7, undefined]);
  });
});
