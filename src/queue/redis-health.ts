import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ImporterError } from '../errors.ts';

/** Errors that mean "Redis cannot be reached", as opposed to a command Redis refused. */
const CONNECTION_ERROR = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|Connection is closed|Stream isn't writeable|connect ETIMEDOUT|MaxRetriesPerRequest/i;

/** True when an error says the Redis connection is gone (not that a command failed). */
export function isRedisConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  return CONNECTION_ERROR.test(`${e?.code ?? ''} ${e?.message ?? String(err)}`);
}

/** `host:port` of a Redis URL: where it is, without the password a URL may carry. */
export function redisAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 6379}`;
  } catch {
    return 'the configured redis.url';
  }
}

/**
 * Whether the daemon's Redis answers, from the connection's own events, so that health probes,
 * metrics and API calls can fail at once while it is away instead of waiting on the offline queue.
 * Logs one line when Redis goes away and one when it is back (with the outage length), however
 * many connections report the same outage.
 */
export class RedisHealth {
  private downSince: number | undefined;
  private cause = '';
  private watching = true;
  readonly address: string;

  constructor(
    private readonly redis: Redis,
    url: string,
    private readonly log: Logger,
  ) {
    this.address = redisAddress(url);
    redis.on('ready', () => this.markUp());
    redis.on('error', (err: Error) => this.markDown(err));
    redis.on('close', () => this.markDown(new Error('connection closed')));
  }

  /** True when the connection is open and no outage is under way. */
  get up(): boolean {
    return this.redis.status === 'ready' && this.downSince === undefined;
  }

  /**
   * Takes an error a queue or worker reported: a lost connection counts toward the one outage
   * (true: handled, nothing more to log); anything else is the caller's to log (false).
   */
  noteError(err: unknown): boolean {
    if (!isRedisConnectionError(err)) return false;
    this.markDown(err as Error);
    return true;
  }

  /** Stops reporting outages: the daemon is closing its connections on purpose. */
  stopWatching(): void {
    this.watching = false;
  }

  /** The coded error for "needs Redis, which does not answer". */
  unavailable(what: string, why?: string): ImporterError {
    const since = this.downSince === undefined ? '' : ` since ${new Date(this.downSince).toISOString()}`;
    return new ImporterError(
      'IMP_ERR_REDIS_UNAVAILABLE',
      `Redis at ${this.address} does not answer${since} (${why ?? (this.cause || this.redis.status)}); ${what} needs it. Imports and polling resume by themselves when it is back`,
    );
  }

  /**
   * Runs a Redis call only while Redis is up, and gives up on it after `timeoutMs` (a Redis that
   * accepts connections but does not answer): either way the caller gets IMP_ERR_REDIS_UNAVAILABLE at once.
   */
  async call<T>(what: string, fn: () => Promise<T>, timeoutMs = 800): Promise<T> {
    if (!this.up) throw this.unavailable(what);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.unavailable(what, `no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([fn(), late]);
    } catch (err) {
      if (isRedisConnectionError(err)) throw this.unavailable(what, (err as Error).message);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private markDown(err: Error): void {
    if (!this.watching) return;
    if (this.downSince !== undefined) return;
    this.downSince = Date.now();
    this.cause = err.message || String(err);
    this.log.error({ code: 'IMP_ERR_REDIS_UNAVAILABLE', redis: this.address }, `Redis at ${this.address} is unreachable (${this.cause}); polling and imports wait until it answers, health and metrics keep answering`);
  }

  private markUp(): void {
    if (this.downSince === undefined) return;
    const outageMs = Date.now() - this.downSince;
    this.downSince = undefined;
    this.cause = '';
    if (this.watching) this.log.info({ redis: this.address, outageMs }, `Redis at ${this.address} is back after ${(outageMs / 1000).toFixed(1)} s; polling and imports resume`);
  }
}
