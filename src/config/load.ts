import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ImporterError } from '../errors.ts';
import { resolvedConfigSchema, type Config } from './schema.ts';

/** Where the config is read from when nobody says: `--config`, then `IMPORTER_CONFIG`, then this. */
export const DEFAULT_CONFIG_PATH = 'config/importer.yaml';

/**
 * Replaces `${VAR}` and `${VAR:default}` in the raw YAML text (so references work anywhere, flow
 * mappings included), except in comments. A reference to an unset variable without a default is
 * collected as an error rather than silently becoming empty.
 */
export function expandEnv(text: string, env: NodeJS.ProcessEnv, missing: string[]): string {
  return text
    .split('\n')
    .map((line) => {
      const cut = commentStart(line);
      return expandLine(line.slice(0, cut), env, missing) + line.slice(cut);
    })
    .join('\n');
}

function expandLine(text: string, env: NodeJS.ProcessEnv, missing: string[]): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}/g, (match: string, name: string, dflt: string | undefined, offset: number) => {
    const set = env[name];
    let value: string;
    if (set !== undefined && set !== '') value = set;
    else if (dflt !== undefined) value = dflt;
    else {
      missing.push(name);
      return '';
    }
    // A reference that is a whole YAML value is inserted as a quoted string, so a secret holding
    // ` #`, `, ` or a leading `*` stays one intact string; numbers and booleans stay bare.
    const before = text.slice(0, offset);
    const after = text.slice(offset + match.length);
    const wholeValue = /(^|[:,{[-])\s*$/.test(before) && /^\s*($|[,}\]]|#)/.test(after);
    if (wholeValue && !/^(-?\d+(\.\d+)?|true|false)$/.test(value)) return JSON.stringify(value);
    return value;
  });
}

/** Index where a YAML comment starts on a line (`#` at the start or after white space, outside quotes), or the line length. */
function commentStart(line: string): number {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || line[i - 1] === ' ' || line[i - 1] === '\t')) return i;
  }
  return line.length;
}

/** `jobs[1].schema.predictionId` from zod's path array. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out || '(root)';
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) return 'required';
  if (issue.code === 'unrecognized_keys') return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  return issue.message;
}

/**
 * A union none of whose branches fit (a job's source: an s3:// string or a { sql } object) is
 * reported by the branch of the value's kind, with that branch's own keys, when only one branch
 * took the value's type; otherwise as it is.
 */
function unionBranch(issue: z.core.$ZodIssue): z.core.$ZodIssue[] {
  if (issue.code !== 'invalid_union') return [issue];
  const fitting = issue.errors.filter((branch) => !branch.every((i) => i.code === 'invalid_type' && i.path.length === 0));
  if (fitting.length !== 1) return issue.errors.length && fitting.length === 0 ? [{ ...issue, message: 'must be s3://bucket/prefix/ or { sql: { url, query, ... } }' }] : [issue];
  return fitting[0].map((i) => ({ ...i, path: [...issue.path, ...i.path] }));
}

/** Validates an already-parsed object; throws one error listing every problem with its key path. */
export function validateConfig(raw: unknown, source = 'config'): Readonly<Config> {
  const result = resolvedConfigSchema.safeParse(raw ?? {});
  if (!result.success) {
    const lines = result.error.issues.flatMap(unionBranch).map((issue) => `${formatPath(issue.path)}: ${describeIssue(issue)}`);
    // zod skips cross-field refinements once a field fails, so duplicate IDs are checked on the raw input too.
    for (const dup of duplicateJobIds(raw)) if (!lines.includes(dup)) lines.push(dup);
    throw new ImporterError('IMP_ERR_CONFIG_INVALID', `${source} has ${lines.length} error${lines.length > 1 ? 's' : ''}:\n  ${lines.join('\n  ')}`, {
      permanent: true,
    });
  }
  return deepFreeze(result.data);
}

/** Reads, expands and validates a YAML config file. */
export async function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<Readonly<Config>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ImporterError('IMP_ERR_CONFIG_READ', `cannot read config ${path}: ${(err as Error).message}`, { permanent: true, cause: err });
  }
  const missing: string[] = [];
  const expanded = expandEnv(text, env, missing);
  let raw: unknown;
  try {
    raw = parseYaml(expanded);
  } catch {
    // The expanded text may hold secrets: report the error of the file as written instead.
    let where = '';
    try {
      parseYaml(text);
    } catch (original) {
      where = `: ${(original as Error).message}`;
    }
    throw new ImporterError('IMP_ERR_CONFIG_INVALID', `${path} is not valid YAML once environment references are expanded${where}`, { permanent: true });
  }
  try {
    const config = validateConfig(raw, path);
    if (missing.length) throw missingVarsError(path, missing, []);
    return config;
  } catch (err) {
    if (missing.length && err instanceof ImporterError && err.code === 'IMP_ERR_CONFIG_INVALID' && !err.message.includes('${')) {
      throw missingVarsError(path, missing, err.message.split('\n').slice(1).map((l) => l.trim()));
    }
    throw err;
  }
}

function missingVarsError(path: string, missing: string[], others: string[]): ImporterError {
  const lines = [...new Set(missing)].map((name) => `\${${name}}: environment variable is not set and has no default`).concat(others);
  return new ImporterError('IMP_ERR_CONFIG_INVALID', `${path} has ${lines.length} error${lines.length > 1 ? 's' : ''}:\n  ${lines.join('\n  ')}`, {
    permanent: true,
  });
}

function duplicateJobIds(raw: unknown): string[] {
  const jobs = (raw as { jobs?: unknown })?.jobs;
  if (!Array.isArray(jobs)) return [];
  const seen = new Map<string, number>();
  const out: string[] = [];
  jobs.forEach((job, i) => {
    const id = (job as { id?: unknown })?.id;
    if (typeof id !== 'string') return;
    const first = seen.get(id);
    if (first === undefined) seen.set(id, i);
    else out.push(`jobs[${i}].id: duplicates jobs[${first}].id "${id}"`);
  });
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
