/**
 * Writes helm/inference-importer/values.schema.json: the chart's own values, described here, and
 * its `config` block generated from the daemon's zod schema, so the chart and the daemon cannot
 * drift. Run `npm run chart:schema` after changing src/config/schema.ts (a test fails until then).
 */
import { writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { configSchema } from '../src/config/schema.ts';

export const CHART_SCHEMA_PATH = new URL('../helm/inference-importer/values.schema.json', import.meta.url).pathname;

type Json = Record<string, any>;

/** Config keys the chart fills in from its own values; setting them under `config` is refused. */
const CHART_OWNED: Record<string, string[]> = {
  redis: ['url'],
  http: ['port', 'host', 'token'],
  worker: ['shutdownTimeout', 'tmpDir'],
};

const str = (description: string, extra: Json = {}): Json => ({ type: 'string', description, ...extra });
const int = (description: string, extra: Json = {}): Json => ({ type: 'integer', description, ...extra });
const bool = (description: string): Json => ({ type: 'boolean', description });
const obj = (description: string, properties?: Json, extra: Json = {}): Json =>
  properties ? { type: 'object', description, properties, additionalProperties: false, ...extra } : { type: 'object', description, ...extra };
const list = (description: string, items: Json = { type: 'object' }): Json => ({ type: 'array', description, items });
const image = (description: string): Json => obj(description, { repository: str('Image repository', { minLength: 1 }), tag: str('Image tag'), pullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'] } });
const quantity = { anyOf: [{ type: 'string', pattern: '^[0-9.]+([KMGTPE]i?|[munkMGTPE]|e[0-9]+)?$' }, { type: 'number' }] };
const resources = obj('Container resources', { requests: { type: 'object', additionalProperties: quantity }, limits: { type: 'object', additionalProperties: quantity }, claims: { type: 'array' } });
const probe = obj('Probe timing', {
  initialDelaySeconds: int('', { minimum: 0 }), periodSeconds: int('', { minimum: 1 }), timeoutSeconds: int('', { minimum: 1 }),
  failureThreshold: int('', { minimum: 1 }), successThreshold: int('', { minimum: 1 }),
});

/** The daemon's config schema as the chart's `config` block accepts it. */
export function configValuesSchema(): { config: Json; postgresOptions: Json } {
  const full = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any', target: 'draft-7' }) as Json;
  delete full.$schema;
  for (const [section, keys] of Object.entries(CHART_OWNED)) {
    const props = full.properties[section].properties;
    for (const key of keys) delete props[key];
    if (full.properties[section].required) full.properties[section].required = full.properties[section].required.filter((k: string) => !keys.includes(k));
  }
  const variants: Json[] = full.properties.store.oneOf;
  const variant = (kind: string) => variants.find((v) => v.properties.kind.const === kind)!;
  const without = (v: Json, keys: string[]): Json => ({
    type: 'object',
    properties: Object.fromEntries(Object.entries(v.properties).filter(([k]) => !keys.includes(k))),
    additionalProperties: false,
  });
  full.properties.store = {
    ...without(variant('duckdb'), ['kind', 'path']),
    description: 'Shape single: DuckDB settings of the store (kind and path are set by the chart; the file is on the data volume)',
  };
  return {
    config: { ...full, description: "The daemon's configuration (docs/configuration.md); redis.url, store.kind/path, http.port/host/token and worker.shutdownTimeout/tmpDir are set by the chart" },
    postgresOptions: { ...without(variant('postgres'), ['kind', 'url']), description: 'Shape scaled: further settings of the PostgreSQL store (merged into config.store)' },
  };
}

/** The whole values.schema.json. */
export function chartValuesSchema(): Json {
  const { config, postgresOptions } = configValuesSchema();
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'inference-importer chart values',
    type: 'object',
    additionalProperties: false,
    required: ['shape', 'config'],
    properties: {
      global: { type: 'object' },
      shape: { enum: ['single', 'scaled'], description: 'single: one pod, DuckDB on a volume; scaled: scheduler + workers on PostgreSQL' },
      image: image('The inference-importer image'),
      imagePullSecrets: list('Image pull secrets'),
      nameOverride: str('Replaces the chart name in resource names'),
      fullnameOverride: str('Replaces the release-chart name of resources'),
      config,
      port: int('Port of health, metrics, the API and the dashboard (config http.port)', { minimum: 1, maximum: 65535 }),
      secret: obj('The chart Secret, or an existing one with the keys admin-token, redis-url, postgres-url, aws-access-key-id, aws-secret-access-key', {
        existingSecret: str('Name of an existing Secret to use instead of the chart one'),
        adminToken: { type: 'string', description: 'Admin API token; empty: generated and kept', anyOf: [{ maxLength: 0 }, { minLength: 16 }] },
        awsAccessKeyId: str('Static AWS access key ID (prefer IRSA)'),
        awsSecretAccessKey: str('Static AWS secret access key'),
      }),
      redis: obj('The work queue', {
        url: str('External Redis URL', { pattern: '^rediss?://' }),
        existingSecret: str('Secret holding the Redis URL'),
        existingSecretKey: str('Key of the URL in that Secret', { minLength: 1 }),
        internal: obj('A small in-release Redis for trials', {
          enabled: bool('Deploy it'),
          image: image('Redis image (official)'),
          maxmemory: str('Redis maxmemory (eviction is off: noeviction)'),
          resources,
          persistence: obj('Volume for the AOF', { enabled: bool('Keep the AOF on a PersistentVolumeClaim'), size: quantity, storageClass: str('Storage class') }),
        }),
      }),
      postgres: obj('Shape scaled: the PostgreSQL store', {
        url: str('postgres:// URL (stored in the chart Secret)', { anyOf: [{ maxLength: 0 }, { pattern: '^postgres(ql)?://' }] }),
        existingSecret: str('Secret holding the URL'),
        existingSecretKey: str('Key of the URL in that Secret', { minLength: 1 }),
        options: postgresOptions,
      }),
      persistence: obj('Shape single: the volume of the DuckDB store', {
        size: quantity, storageClass: str('Storage class'), accessModes: list('Access modes', { type: 'string' }),
        existingClaim: str('Existing PersistentVolumeClaim'), annotations: obj('PVC annotations'),
      }),
      tmpVolume: obj('The emptyDir on /tmp for downloads', { sizeLimit: quantity, medium: { enum: ['', 'Memory'] } }),
      serviceAccount: obj('Service account (IRSA: annotate it with eks.amazonaws.com/role-arn)', {
        create: bool('Create it'), name: str('Name'), annotations: { type: 'object', additionalProperties: { type: 'string' } },
        automountServiceAccountToken: bool('Mount the token (IRSA and Pod Identity need it)'),
      }),
      terminationGracePeriodSeconds: int('Seconds after SIGTERM before the kill', { minimum: 2 }),
      shutdownMarginSeconds: int('worker.shutdownTimeout = terminationGracePeriodSeconds minus this', { minimum: 1 }),
      podAnnotations: obj('Pod annotations'),
      podLabels: obj('Pod labels'),
      podSecurityContext: obj('Pod security context'),
      securityContext: obj('Container security context'),
      resources,
      nodeSelector: obj('Node selector'),
      tolerations: list('Tolerations'),
      affinity: obj('Affinity'),
      topologySpreadConstraints: list('Topology spread constraints'),
      priorityClassName: str('Priority class'),
      extraEnv: list('Extra container environment variables'),
      extraVolumes: list('Extra pod volumes'),
      extraVolumeMounts: list('Extra container volume mounts'),
      probes: obj('Probe timings', { liveness: probe, readiness: probe, startup: probe }),
      worker: obj('Shape scaled: the workers', {
        replicas: int('Replicas without autoscaling', { minimum: 0 }),
        resources,
        autoscaling: obj('HPA on CPU', {
          enabled: bool('Create the HPA'), minReplicas: int('', { minimum: 1 }), maxReplicas: int('', { minimum: 1 }),
          targetCPUUtilizationPercentage: int('', { minimum: 1, maximum: 100 }),
        }),
        keda: obj('KEDA ScaledObject on waiting files', {
          enabled: bool('Create the ScaledObject'), minReplicas: int('', { minimum: 0 }), maxReplicas: int('', { minimum: 1 }),
          pollingInterval: int('Seconds', { minimum: 1 }), cooldownPeriod: int('Seconds', { minimum: 0 }),
          prometheusServerAddress: str('Prometheus URL', { pattern: '^https?://' }), threshold: str('Waiting files per replica', { pattern: '^[0-9]+(\\.[0-9]+)?$' }),
        }),
      }),
      service: obj('The Service', { type: { enum: ['ClusterIP', 'NodePort', 'LoadBalancer'] }, port: int('Port', { minimum: 1, maximum: 65535 }), annotations: obj('Annotations') }),
      serviceMonitor: obj('Prometheus Operator ServiceMonitor', { enabled: bool('Create it'), interval: str('Scrape interval'), scrapeTimeout: str('Scrape timeout'), labels: obj('Labels') }),
      podDisruptionBudget: obj('Shape scaled: PodDisruptionBudget of the workers', { enabled: bool('Create it'), minAvailable: { anyOf: [{ type: 'integer' }, { type: 'string' }] } }),
    },
  };
}

/** The file's text exactly as written. */
export const chartValuesSchemaText = () => `${JSON.stringify(chartValuesSchema(), null, 2)}\n`;

if (import.meta.url === `file://${process.argv[1]}`) {
  await writeFile(CHART_SCHEMA_PATH, chartValuesSchemaText());
  process.stdout.write(`wrote ${CHART_SCHEMA_PATH}\n`);
}
