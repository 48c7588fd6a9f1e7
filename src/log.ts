import { pino, type Logger } from 'pino';

const SECRET_KEYS = ['token', 'authorization', 'url', 'secretAccessKey', 'sessionToken', 'password'];

/**
 * Paths never written to the log: the secret-bearing keys at any depth up to four levels (pino's
 * redaction has no recursive wildcard). `url` is included because Redis and PostgreSQL URLs carry passwords.
 */
export const REDACTED_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `*.*.*.${k}`]);

/** The process logger: JSON lines on stdout, secrets redacted. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { service: 'inference-importer' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, destination as never);
}
