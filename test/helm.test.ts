import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { parse as parseYaml, stringify } from 'yaml';
import pg from 'pg';
import { expandEnv, validateConfig } from '../src/config/index.ts';
import { chartValuesSchemaText, CHART_SCHEMA_PATH } from '../scripts/chart-schema.ts';
import { ensureBuilt, ROOT } from './helpers/build.ts';
import { envOf, execForm, parseDockerfile } from './helpers/dockerfile.ts';
import { CHART, ensureHelm, helm, template, type K8sObject } from './helpers/helm.ts';
import { freePort } from './helpers/ports.ts';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts';
import { BUCKET, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';

const EXAMPLES = ['single', 'scaled'].map((shape) => join(CHART, 'examples', `${shape}.yaml`));

/** kubernetes-models classes by apiVersion/kind: every object the chart can render. */
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/ConfigMap': ConfigMap,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

function validateAll(objects: K8sObject[]): void {
  for (const o of objects) {
    const Model = MODELS[`${o.apiVersion}/${o.kind}`];
    assert.ok(Model, `no schema for ${o.apiVersion} ${o.kind}`);
    assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`);
  }
}

const kinds = (objects: K8sObject[]) => objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
const find = (objects: K8sObject[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind} ${name} rendered`);
  return o;
};
const importerConfig = (objects: K8sObject[]) => find(objects, 'ConfigMap', 'imp-inference-importer').data['importer.yaml'] as string;
const workloads = (objects: K8sObject[]) => objects.filter((o) => o.kind === 'Deployment' && o.metadata.labels?.['app.kubernetes.io/component'] !== 'redis');

/** The checks every importer pod must pass, whatever the shape. */
function checkPod(d: K8sObject, config: string): void {
  const pod = d.spec.template;
  assert.equal(pod.metadata.annotations['checksum/config'], createHash('sha256').update(config.replace(/\n$/, '')).digest('hex'), `${d.metadata.name}: checksum/config is the config's`);
  assert.deepEqual(pod.spec.securityContext, {
    runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, fsGroupChangePolicy: 'OnRootMismatch', seccompProfile: { type: 'RuntimeDefault' },
  });
  const [c, ...others] = pod.spec.containers;
  assert.equal(others.length, 0);
  assert.deepEqual(c.securityContext, {
    allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
  });
  assert.deepEqual([c.livenessProbe.httpGet, c.readinessProbe.httpGet, c.startupProbe.httpGet], [
    { path: '/healthz', port: 'http' }, { path: '/readyz', port: 'http' }, { path: '/healthz', port: 'http' },
  ]);
  assert.ok(c.resources.requests.memory && c.resources.limits.memory, 'memory request and limit');
  const mounts = Object.fromEntries(c.volumeMounts.map((m: { mountPath: string; name: string }) => [m.mountPath, m.name]));
  assert.equal(mounts['/tmp'], 'tmp', 'downloads on a writable volume');
  const shutdown = Number(/shutdownTimeout: (\d+)s/.exec(config)?.[1]);
  assert.ok(pod.spec.terminationGracePeriodSeconds > shutdown, `grace ${pod.spec.terminationGracePeriodSeconds}s > shutdownTimeout ${shutdown}s`);
  for (const key of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/component']) {
    assert.ok(pod.metadata.labels[key], `${d.metadata.name}: pod label ${key}`);
  }
}

/** The rendered config, its references expanded, is accepted by the daemon's own validation. */
function checkConfig(text: string) {
  const missing: string[] = [];
  const expanded = expandEnv(text, { ADMIN_TOKEN: 'a'.repeat(32), REDIS_URL: 'redis://r:6379', POSTGRES_URL: 'postgres://p/db' }, missing);
  assert.deepEqual(missing, []);
  return validateConfig(parseYaml(expanded), 'rendered ConfigMap');
}

describe('helm chart', () => {
  before(async () => {
    await ensureHelm();
  });

  it('passes helm lint --strict with its default values and with each example', async () => {
    for (const args of [[], ...EXAMPLES.map((f) => ['-f', f])]) {
      const r = await helm(['lint', '--strict', CHART, ...args]);
      assert.equal(r.code, 0, `helm lint ${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it('renders the single shape: one Recreate pod running `run`, DuckDB on a kept PVC', async () => {
    for (const files of [[], [EXAMPLES[0]]]) {
      const objects = await template(files);
      validateAll(objects);
      const single = files.length === 0;
      assert.deepEqual(kinds(objects), [
        'ConfigMap/imp-inference-importer', 'Deployment/imp-inference-importer', ...(single ? ['PersistentVolumeClaim/imp-inference-importer-data', 'Secret/imp-inference-importer'] : ['PersistentVolumeClaim/imp-inference-importer-data']),
        'Service/imp-inference-importer', 'ServiceAccount/imp-inference-importer', ...(single ? [] : ['ServiceMonitor/imp-inference-importer']),
      ]);
      const d = find(objects, 'Deployment', 'imp-inference-importer');
      assert.equal(d.spec.replicas, 1);
      assert.equal(d.spec.strategy.type, 'Recreate');
      assert.deepEqual(d.spec.template.spec.containers[0].args, ['run', '--config', '/etc/inference-importer/importer.yaml']);
      assert.equal(find(objects, 'PersistentVolumeClaim', 'imp-inference-importer-data').metadata.annotations?.['helm.sh/resource-policy'], 'keep');
      const config = importerConfig(objects);
      checkPod(d, config);
      const parsed = checkConfig(config);
      assert.deepEqual(parsed.store, { kind: 'duckdb', path: '/data/inferences.duckdb', memoryLimit: single ? '512MB' : '1GB' });
      assert.equal(parsed.http.port, 8080);
      for (const o of objects) assert.equal(o.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm', `${o.kind} labels`);
    }
  });

  it('renders the scaled shape: a one-replica scheduler, workers scaled by KEDA on waiting files, PostgreSQL from the Secret', async () => {
    const objects = await template([EXAMPLES[1]]);
    validateAll(objects);
    assert.deepEqual(kinds(objects), [
      'ConfigMap/imp-inference-importer', 'Deployment/imp-inference-importer-scheduler', 'Deployment/imp-inference-importer-worker',
      'PodDisruptionBudget/imp-inference-importer-worker', 'ScaledObject/imp-inference-importer-worker', 'Service/imp-inference-importer',
      'ServiceAccount/imp-inference-importer', 'ServiceMonitor/imp-inference-importer',
    ]);
    const scheduler = find(objects, 'Deployment', 'imp-inference-importer-scheduler');
    const worker = find(objects, 'Deployment', 'imp-inference-importer-worker');
    assert.equal(scheduler.spec.replicas, 1);
    assert.equal(worker.spec.replicas, undefined, 'KEDA owns the worker replica count');
    assert.equal(scheduler.spec.template.spec.containers[0].args[0], 'scheduler');
    assert.equal(worker.spec.template.spec.containers[0].args[0], 'worker');
    assert.equal(worker.spec.template.spec.containers[0].workingDir, '/tmp', 'the read-only root has no writable working directory');
    const config = importerConfig(objects);
    for (const d of workloads(objects)) {
      checkPod(d, config);
      const pg = d.spec.template.spec.containers[0].env.find((e: { name: string }) => e.name === 'POSTGRES_URL');
      assert.deepEqual(pg.valueFrom, { secretKeyRef: { name: 'inference-importer-secrets', key: 'postgres-url' } });
    }
    const store = checkConfig(config).store;
    assert.deepEqual(store.kind === 'postgres' && [store.url, store.poolSize], ['postgres://p/db', 4]);
    const tuned = checkConfig(importerConfig(await template([EXAMPLES[1]], ['postgres.options.poolSize=8'])));
    assert.equal(tuned.store.kind === 'postgres' && tuned.store.poolSize, 8, 'postgres.options merge into the store block');
    const trigger = find(objects, 'ScaledObject', 'imp-inference-importer-worker').spec.triggers[0];
    assert.equal(trigger.type, 'prometheus');
    assert.equal(trigger.metadata.query,
      'sum(max by (job) (importer_queue_jobs{state="waiting",namespace="ml",service="imp-inference-importer"}) unless on (job) (max by (job) (importer_job_paused{namespace="ml",service="imp-inference-importer"}) == 1))');
    const hpa = await template([EXAMPLES[1]], ['worker.keda.enabled=false', 'worker.autoscaling.enabled=true', 'redis.internal.enabled=true']);
    validateAll(hpa);
    assert.equal(find(hpa, 'HorizontalPodAutoscaler', 'imp-inference-importer-worker').spec.scaleTargetRef.name, 'imp-inference-importer-worker');
    const redis = find(hpa, 'StatefulSet', 'imp-inference-importer-redis');
    assert.deepEqual(redis.spec.template.spec.containers[0].args, ['--appendonly', 'yes', '--maxmemory', '256mb', '--maxmemory-policy', 'noeviction', '--dir', '/data']);
    const redisEnv = find(hpa, 'Deployment', 'imp-inference-importer-worker').spec.template.spec.containers[0].env.find((e: { name: string }) => e.name === 'REDIS_URL');
    assert.equal(redisEnv.value, 'redis://imp-inference-importer-redis:6379');
  });

  it("prints NOTES telling the operator how to reach the dashboard, the token and the metrics", async () => {
    for (const [files, deploy] of [[[], 'deploy/imp-inference-importer --'], [['-f', EXAMPLES[1]], 'deploy/imp-inference-importer-scheduler --']] as const) {
      const r = await helm(['install', 'imp', CHART, '-n', 'ml', '--dry-run=client', ...files]);
      assert.equal(r.code, 0, r.stderr);
      const notes = r.stdout.slice(r.stdout.indexOf('NOTES:'));
      assert.ok(notes.includes('kubectl -n ml port-forward svc/imp-inference-importer 8080:8080'), notes);
      assert.ok(notes.includes(`get secret ${files.length ? 'inference-importer-secrets' : 'imp-inference-importer'} -o jsonpath='{.data.admin-token}' | base64 -d`), notes);
      assert.ok(notes.includes('http://imp-inference-importer.ml.svc:8080/metrics'), notes);
      assert.ok(notes.includes(`exec ${deploy} node /app/dist/cli.js jobs --config /etc/inference-importer/importer.yaml`), notes);
    }
  });

  it('rolls the pods when the config changes (checksum/config)', async () => {
    const a = find(await template([]), 'Deployment', 'imp-inference-importer').spec.template.metadata.annotations['checksum/config'];
    const b = find(await template([], ['config.defaults.pollInterval=30s']), 'Deployment', 'imp-inference-importer').spec.template.metadata.annotations['checksum/config'];
    assert.notEqual(a, b);
  });

  it('refuses bad values through values.schema.json, naming the key', async () => {
    const r = await helm(['template', 'imp', CHART, '--set', 'shape=triple', '--set', 'port=http', '--set', 'config.jobs[0].format=xml', '--set', 'config.redis.url=redis://x']);
    assert.notEqual(r.code, 0);
    for (const line of [
      "- at '/shape': value must be one of 'single', 'scaled'",
      "- at '/port': got string, want integer",
      "- at '/config/redis': additional properties 'url' not allowed",
    ]) assert.ok(r.stderr.includes(line), `${line}\nin:\n${r.stderr}`);
    assert.match(r.stderr, /at '\/config\/jobs\/0\/format': value must be one of 'auto', 'parquet'/);
    const shutdown = await helm(['template', 'imp', CHART, '--set', 'terminationGracePeriodSeconds=10']);
    assert.match(shutdown.stderr, /terminationGracePeriodSeconds \(10\) must exceed shutdownMarginSeconds \(15\)/);
    const pg = await helm(['template', 'imp', CHART, '--set', 'shape=scaled']);
    assert.match(pg.stderr, /shape scaled needs the PostgreSQL store: set postgres.url or postgres.existingSecret/);
  });

  it('has a values.schema.json generated from the current config schema (else: npm run chart:schema)', async () => {
    assert.equal(await readFile(CHART_SCHEMA_PATH, 'utf8'), chartValuesSchemaText(), 'values.schema.json is stale: run `npm run chart:schema`');
  });
});

/** A container of a rendered pod, run as a local process. */
interface PodProcess {
  output(): string;
  exited: Promise<number | null>;
  stop(): void;
  /** Local folder of each volume mount path. */
  mounts: Map<string, string>;
}

/**
 * Runs the container of a rendered Deployment exactly as the pod would, as far as a process can: the
 * image's ENTRYPOINT (tini left out: node runs directly) and ENV, the container's args and env with
 * the Secret resolved, the ConfigMap as the config file. Each volume mount becomes a folder under
 * `root`, and the paths the image, the config and the args name are mapped into those folders (/app
 * is this repository with its dist/). `port` replaces the http port where two pods would otherwise
 * share one host: each pod has its own network namespace.
 */
async function runPod(objects: K8sObject[], deployment: string, root: string, port?: number): Promise<PodProcess> {
  const container = find(objects, 'Deployment', deployment).spec.template.spec.containers[0];
  const secret = objects.find((o) => o.kind === 'Secret')!;
  const mounts = new Map<string, string>([['/app', ROOT]]);
  for (const m of container.volumeMounts as { mountPath: string; name: string }[]) {
    const dir = join(root, m.name);
    await mkdir(dir, { recursive: true });
    mounts.set(m.mountPath, dir);
  }
  const anyMount = new RegExp(`(^|[\\s"'=:])(${[...mounts.keys()].sort((a, b) => b.length - a.length).join('|')})(?=/|$|[\\s"'])`, 'gm');
  const mapPath = (s: string) => s.replace(anyMount, (_m, lead: string, from: string) => `${lead}${mounts.get(from)}`);
  let config = mapPath(importerConfig(objects));
  if (port !== undefined) config = config.replace(/^( {2}port: )\d+$/m, `$1${port}`);
  await writeFile(join(mounts.get('/etc/inference-importer')!, 'importer.yaml'), config);

  const docker = await parseDockerfile(join(ROOT, 'Dockerfile'));
  const final = Math.max(...docker.map((i) => i.stage));
  const entry = execForm(docker.filter((i) => i.op === 'ENTRYPOINT' && i.stage === final).at(-1));
  assert.deepEqual(entry.slice(0, 3), ['/usr/bin/tini', '--', 'node'], 'tini is PID 1 in the image; here node runs directly');
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const [k, v] of Object.entries(envOf(docker, final))) env[k] = mapPath(v);
  for (const e of container.env as { name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string; optional?: boolean } } }[]) {
    if (e.value !== undefined) env[e.name] = e.value;
    else {
      const ref = e.valueFrom!.secretKeyRef;
      assert.equal(ref.name, secret.metadata.name);
      const data = secret.data[ref.key];
      if (data === undefined && ref.optional) continue;
      env[e.name] = Buffer.from(data, 'base64').toString('utf8');
    }
  }
  assert.equal(env.AWS_ACCESS_KEY_ID, 'S3RVER', 'static keys reach the pod from the chart Secret');
  const args = [...entry.slice(3), ...container.args].map(mapPath);
  const cwd = container.workingDir ? mapPath(container.workingDir) : mounts.get('/data') ?? mounts.get('/tmp')!;
  const proc = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { output: () => out, exited, stop: () => proc.kill('SIGTERM'), mounts };
}

describe('booting the daemon from the rendered chart', () => {
  let stack: Stack;
  let db: TestDatabase | undefined;
  const token = 'chart-boot-token-0123456789';
  before(async () => {
    [stack, db] = await Promise.all([startStack(), createTestDatabase('importer_chart'), ensureHelm(), ensureBuilt()]);
  });
  after(async () => {
    await stack?.stop();
    await db?.drop();
  });

  const values = async (name: string, shape: 'single' | 'scaled', port: number) => {
    const path = join(stack.tmp.path, `${name}.yaml`);
    await writeFile(path, stringify({
      shape,
      port,
      secret: { adminToken: token, awsAccessKeyId: 'S3RVER', awsSecretAccessKey: 'S3RVER' },
      redis: { url: stack.redis.url },
      ...(shape === 'scaled' ? { postgres: { url: db!.url, options: { schema: name, poolSize: 2, memoryLimit: '256MB', threads: 1 } } } : {}),
      config: {
        redis: { prefix: name },
        s3: { endpoint: stack.s3.endpoint, forcePathStyle: true, region: 'us-east-1' },
        ...(shape === 'single' ? { store: { memoryLimit: '512MB', threads: 2 } } : {}),
        defaults: { pollInterval: '1s' },
        log: { level: 'info' },
        jobs: [{ id: 'boot', source: `s3://${BUCKET}/${name}/`, model: { id: name, version: 'v1' }, schema: { predictionId: 'pid', predictionScore: 'score' } }],
      },
    }));
    const p = await writeFixture(join(stack.tmp.path, `${name}.parquet`), `SELECT 'id-' || i AS pid, i / 10.0 AS score FROM range(0, 25) t(i)`, 'FORMAT parquet');
    await stack.s3.put(BUCKET, `${name}/2026/12/04/part-0.parquet`, await readFile(p));
    return path;
  };

  it('runs the single shape with the image entrypoint, rendered args, env, Secret and ConfigMap, and imports a file', async () => {
    const port = await freePort();
    const objects = await template([await values('chartsingle', 'single', port)]);
    const pod = await runPod(objects, 'imp-inference-importer', join(stack.tmp.path, 'single'));
    try {
      await waitFor('the file imported by the daemon booted from the chart', async () => pod.output().includes('"msg":"import succeeded"') || (await Promise.race([pod.exited, Promise.resolve('running')])) !== 'running', 60_000);
      assert.ok(pod.output().includes('"msg":"import succeeded"'), pod.output());
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(metrics, /^importer_rows_loaded_total\{job="boot",kind="prediction"\} 25$/m);
      assert.equal((await fetch(`http://127.0.0.1:${port}/api/jobs`)).status, 401, 'the API needs the token from the Secret');
      assert.equal((await fetch(`http://127.0.0.1:${port}/api/jobs`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
      assert.ok(!pod.output().includes(token), 'the admin token is never logged');
    } finally {
      pod.stop();
    }
    assert.equal(await pod.exited, 0, pod.output());
    const dbFile = join(pod.mounts.get('/data')!, 'inferences.duckdb');
    const duck = await DuckDBInstance.create(dbFile);
    const conn = await duck.connect();
    const rows = (await conn.runAndReadAll(`SELECT count(*)::INT AS n, round(sum(prediction_score) * 10)::INT AS s FROM predictions WHERE model_id = 'chartsingle'`)).getRowObjectsJson();
    conn.closeSync();
    duck.closeSync();
    assert.deepEqual(rows, [{ n: 25, s: 300 }]);
  });

  it('runs the scaled shape: the scheduler and a worker pod import a file into PostgreSQL', async () => {
    const [port, workerPort] = [await freePort(), await freePort()];
    const objects = await template([await values('chartscaled', 'scaled', port)]);
    const scheduler = await runPod(objects, 'imp-inference-importer-scheduler', join(stack.tmp.path, 'scheduler'));
    const worker = await runPod(objects, 'imp-inference-importer-worker', join(stack.tmp.path, 'worker'), workerPort);
    try {
      await waitFor('the worker pod to import the file the scheduler pod queued', async () => worker.output().includes('"msg":"import succeeded"'), 60_000);
      assert.doesNotMatch(scheduler.output(), /"msg":"import succeeded"/, 'the scheduler does not import');
      const metrics = await (await fetch(`http://127.0.0.1:${workerPort}/metrics`)).text();
      assert.match(metrics, /^importer_rows_loaded_total\{job="boot",kind="prediction"\} 25$/m);
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
    } finally {
      scheduler.stop();
      worker.stop();
    }
    assert.deepEqual([await scheduler.exited, await worker.exited], [0, 0], scheduler.output() + worker.output());
    const client = new pg.Client({ connectionString: db!.url });
    await client.connect();
    const { rows } = await client.query(`SELECT count(*)::int AS n, round(sum(prediction_score) * 10)::int AS s FROM chartscaled.predictions WHERE model_id = 'chartscaled'`).finally(() => client.end());
    assert.deepEqual(rows, [{ n: 25, s: 300 }]);
  });
});
