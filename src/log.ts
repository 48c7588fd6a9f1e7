import { pino, type Logger } from 'pino';
import type { Config } from './config/index.ts';

const CENSOR = '[redacted]';

/**
 * Keys whose values never reach the log, at any depth: tokens, passwords, AWS secret keys and
 * session tokens, Authorization headers, and URLs (Redis and PostgreSQL URLs carry passwords).
 */
const SECRET_KEY = /token|passw(or)?d|secret|authorization|credential|(^|[a-z_])url$/i;

/** Secrets inside text: the user info of a URL, an Authorization value, a secret query parameter. */
const SECRET_TEXT: Array<[RegExp, string]> = [
  [/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"]+@/gi, `$1${CENSOR}@`],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/g, `$1 ${CENSOR}`],
  [/([?&](?:[\w-]*token|password|secret|x-amz-credential|x-amz-signature)=)[^&\s"]+/gi, `$1${CENSOR}`],
];

/** Secret values shorter than this are not searched for in text (they would censor ordinary words). */
const MIN_SECRET_LENGTH = 6;

function redactText(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.replaceAll(s, CENSOR);
  for (const [pattern, replacement] of SECRET_TEXT) out = out.replace(pattern, replacement);
  return out;
}

function redactValue(value: unknown, secrets: readonly string[]): unknown {
  if (typeof value === 'string') return redactText(value, secrets);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, secrets));
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, SECRET_KEY.test(k) && v !== null && v !== undefined && v !== '' ? CENSOR : redactValue(v, secrets)]),
  );
}

/** One serialized log line with every secret removed: secret-named keys at any depth, secrets inside any text, the known secret values anywhere. */
export function redactLine(line: string, secrets: readonly string[] = []): string {
  try {
    return `${JSON.stringify(redactValue(JSON.parse(line), secrets))}\n`;
  } catch {
    return redactText(line, secrets);
  }
}

/**
 * The secret values of a config and of the AWS credential environment, so the log can censor
 * them wherever they turn up (in an error message from a library, say), not only under known keys.
 */
export function secretValues(config: Pick<Config, 'redis' | 'store' | 'http'> & { jobs?: Config['jobs'] }, env: NodeJS.ProcessEnv = process.env): string[] {
  const fromUrl = (url: string | undefined) => {
    if (!url) return [];
    try {
      const u = new URL(url);
      return [u.password, decodeURIComponent(u.password)];
    } catch {
      return [];
    }
  };
  const values = [
    config.http.token,
    ...fromUrl(config.redis.url),
    ...(config.store.kind === 'postgres' ? fromUrl(config.store.url) : []),
    // Query sources' warehouse passwords (their URLs are postgres:// or redshift://, which URL parses alike).
    ...(config.jobs ?? []).flatMap((j) => (typeof j.source === 'string' ? [] : fromUrl(j.source.sql.url))),
    env.AWS_SECRET_ACCESS_KEY,
    env.AWS_SESSION_TOKEN,
  ];
  return [...new Set(values.filter((v): v is string => typeof v === 'string' && v.length >= MIN_SECRET_LENGTH))];
}

/**
 * The process logger: JSON lines on stdout (or `destination`). Every line, whatever logged it
 * (the daemon, Fastify, an error serializer, a child logger's bindings), passes one redaction
 * before it is written; see {@link redactLine}.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream, secrets: readonly string[] = []): Logger {
  const out = destination ?? pino.destination({ dest: 1, sync: true });
  return pino({ level, base: { service: 'inference-importer' } }, { write: (line: string) => out.write(redactLine(line, secrets)) } as never);
}
