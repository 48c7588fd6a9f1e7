import { createHmac, timingSafeEqual } from 'node:crypto';

/** Name of the dashboard's session cookie. */
export const SESSION_COOKIE = 'importer_session';

/**
 * Browser sessions of the dashboard: after a login with the admin token, a cookie
 * `<expiry seconds>.<HMAC-SHA256 of the expiry under the token>`. Nothing is kept server side:
 * every replica checks it with the same token, a restart keeps sessions, and changing the token
 * ends them all. The cookie is HttpOnly (no script reads it) and SameSite=Strict (no other site's
 * page sends it, which is what stops cross-site form posts to the API).
 */
export class Sessions {
  constructor(
    private readonly token: string,
    private readonly ttlMs: number,
  ) {}

  private sign(expires: number): Buffer {
    return createHmac('sha256', this.token).update(`inference-importer session\0${expires}`).digest();
  }

  /** The Set-Cookie value of a new session; `secure` when the browser came over HTTPS. */
  issue(now = Date.now(), secure = false): string {
    const expires = Math.floor((now + this.ttlMs) / 1000);
    const value = `${expires}.${this.sign(expires).toString('base64url')}`;
    return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(this.ttlMs / 1000)}${secure ? '; Secure' : ''}`;
  }

  /** The Set-Cookie value that ends the session in the browser. */
  static clear(): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
  }

  /** True when the request's Cookie header holds a session signed with the token and not expired. */
  valid(cookieHeader: string | undefined, now = Date.now()): boolean {
    const value = readCookie(cookieHeader, SESSION_COOKIE);
    const m = value && /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (!m) return false;
    const expires = Number(m[1]);
    if (expires * 1000 <= now) return false;
    const given = Buffer.from(m[2], 'base64url');
    const want = this.sign(expires);
    return given.length === want.length && timingSafeEqual(given, want);
  }
}

function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
