import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import { registerApi, type ApiContext } from './api.ts';
import { DASHBOARD_PATH, registerDashboard } from './dashboard.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { registerPages } from './pages.ts';
import { Sessions } from './session.ts';

/** Probes the HTTP server answers with. */
export interface HealthChecks {
  /** Alive: the process can serve. */
  live(): boolean;
  /** Ready: Redis and the store answer; the reasons when not. */
  ready(): Promise<{ ok: boolean; checks: Record<string, string> }>;
}

/** Routes anyone may call: health, readiness, metrics, and the login page that turns the token into a session. */
export const OPEN_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics', '/login']);

function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header?.startsWith('Bearer ') ? header.slice(7) : '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/**
 * The one HTTP port: health, readiness, Prometheus metrics, and (behind the token) the API.
 * Without a token it binds to loopback only, so an unprotected API is never reachable from outside.
 */
export async function startHttpServer(config: Readonly<Config>, metrics: Metrics, health: HealthChecks, log: Logger, api?: ApiContext): Promise<FastifyInstance> {
  // Requests are logged at info; the child logs warnings and up so health probes and scrapes stay quiet.
  const app = Fastify({ loggerInstance: log.child({ component: 'http' }, { level: 'warn' }) as unknown as FastifyBaseLogger });
  const token = config.http.token;
  const sessions = token ? new Sessions(token, config.http.sessionTtl) : undefined;
  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?')[0];
    if (OPEN_ROUTES.has(path)) return;
    if (token && !tokenMatches(req.headers.authorization, token) && !sessions!.valid(req.headers.cookie)) {
      // A person opening a page is sent to the login page; programs get the JSON error.
      if (req.method === 'GET' && /text\/html/.test(req.headers.accept ?? '')) {
        return reply.code(303).header('location', `/login?next=${encodeURIComponent(req.url)}`).send();
      }
      return reply.code(401).header('www-authenticate', 'Bearer').send({ code: 'IMP_ERR_HTTP_UNAUTHORIZED', message: 'missing or wrong bearer token' });
    }
    // The queue dashboard's data calls would wait on Redis; while it is away they fail at once, like the API.
    if (path.startsWith(`${DASHBOARD_PATH}/api/`) && api?.redisHealth && !api.redisHealth.up) {
      const e = api.redisHealth.unavailable('the queue dashboard');
      return reply.code(503).send({ code: e.code, message: e.message });
    }
  });
  app.get('/healthz', async () => ({ ok: health.live() }));
  app.get('/readyz', async (_req, reply) => {
    const r = await health.ready();
    return reply.code(r.ok ? 200 : 503).send(r);
  });
  app.get('/metrics', async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  if (api) {
    registerApi(app, api);
    await registerDashboard(app, config, api.queues, api.live);
    registerPages(app, { token, sessions });
  }
  const host = config.http.host ?? (token ? '0.0.0.0' : '127.0.0.1');
  await app.listen({ port: config.http.port, host });
  const address = app.server.address();
  log.info({ address: typeof address === 'string' ? address : `${address?.address}:${address?.port}` }, 'http listening');
  if (!token) log.warn({ host }, 'http.token is not set: the HTTP server listens on loopback only');
  return app;
}
