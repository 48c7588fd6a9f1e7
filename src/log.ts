import { pino, type Logger } from 'pino';

/** Paths never written to the log, wherever they appear. */
export const REDACTED_PATHS = [
  'token', '*.token', 'http.token', 'config.http.token',
  'authorization', '*.authorization', 'headers.authorization', 'req.headers.authorization',
  'secretAccessKey', '*.secretAccessKey', 'sessionToken', '*.sessionToken', 'password', '*.password',
  'url', 'redis.url', 'store.url',
];

/** The process logger: JSON lines on stdout, secrets redacted. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { service: 'inference-importer' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, destination as never);
}
