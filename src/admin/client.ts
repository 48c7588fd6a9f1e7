import type { Config } from '../config/index.ts';
import { ImporterError } from '../errors.ts';

/** Talks to a running daemon's admin API (the CLI commands that need the store, which the daemon holds). */
export class ApiClient {
  readonly baseUrl: string;

  constructor(
    config: Readonly<Config>,
    url?: string,
    private readonly token = config.http.token,
  ) {
    this.baseUrl = (url ?? `http://127.0.0.1:${config.http.port}`).replace(/\/$/, '');
  }

  async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
    } catch (err) {
      throw new ImporterError('IMP_ERR_INTERNAL', `the daemon's API does not answer at ${this.baseUrl} (${(err as Error).message}); is \`inference-importer run\` running? (--url to point elsewhere)`);
    }
    const json = (await res.json().catch(() => ({}))) as { code?: string; message?: string };
    if (!res.ok) {
      throw new ImporterError((json.code as never) ?? 'IMP_ERR_INTERNAL', `${method} ${path}: HTTP ${res.status}: ${json.message ?? 'no message'}`);
    }
    return json as T;
  }
}
