import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/index.ts';
import type { LiveConfig } from '../config/live.ts';
import type { ImportQueues } from '../queue/queues.ts';
import { sourceLabel } from '../source/sql/index.ts';

/** Where the queue dashboard is served. */
export const DASHBOARD_PATH = '/admin/queues';

/**
 * Bull Board over every job's queue: pause, resume, retry and clean are the standard queue
 * admin's, acting on the same queues (and the same paused state) as the API and the CLI.
 * It sits behind the same bearer-token hook as the API.
 */
export async function registerDashboard(app: FastifyInstance, config: Readonly<Config>, queues: ImportQueues, live?: LiveConfig): Promise<void> {
  const adapter = new FastifyAdapter();
  adapter.setBasePath(DASHBOARD_PATH);
  const adapters = (c: Readonly<Config>) => c.jobs.map((j) => new BullMQAdapter(queues.get(j.id), { description: `${sourceLabel(j)} → model ${j.model.id}` }));
  const board = createBullBoard({
    queues: adapters(config),
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: 'inference-importer' } },
  });
  // Jobs added or removed by a reload appear and disappear here too.
  live?.on('change', (change) => board.replaceQueues(adapters(change.config)));
  // Bull Board's page links Google Fonts; without it the page uses system fonts and asks nothing of the internet (air-gapped clusters).
  app.addHook('onSend', async (req, reply, payload) => {
    if (typeof payload !== 'string' || !req.url.startsWith(DASHBOARD_PATH) || !String(reply.getHeader('content-type') ?? '').includes('text/html')) return payload;
    return payload.replace(/<link[^>]+fonts\.googleapis\.com[^>]*>/g, '');
  });
  await app.register(adapter.registerPlugin(), { prefix: DASHBOARD_PATH });
}
