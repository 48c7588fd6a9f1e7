import { timingSafeEqual } from 'node:crypto';
import { parse as parseQuery } from 'node:querystring';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { DASHBOARD_PATH } from './dashboard.ts';
import { Sessions } from './session.ts';

/** What the pages need: the token (to check logins and to call the API as the CLI does) and the sessions. */
export interface PagesOptions {
  token?: string;
  sessions?: Sessions;
}

/** Escapes text for HTML element content and attribute values. */
const h = (v: unknown): string =>
  String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const STYLE = `
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d2430; background: #f5f6f8; }
  header { background: #1d2430; color: #fff; padding: .6rem 1.2rem; display: flex; gap: 1.2rem; align-items: center; }
  header a { color: #cfe0ff; text-decoration: none; } header form { margin-left: auto; }
  main { padding: 1rem 1.2rem; max-width: 1200px; }
  table { border-collapse: collapse; background: #fff; width: 100%; margin: .6rem 0 1.2rem; }
  th, td { border-bottom: 1px solid #e3e6ea; padding: .35rem .5rem; text-align: left; vertical-align: top; }
  th { background: #eef0f3; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
  code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
  .state { padding: .1rem .45rem; border-radius: .6rem; font-size: 12px; font-weight: 600; }
  .active, .succeeded, .ok { background: #dff5e3; color: #17612a; } .paused, .pending { background: #e7ecf6; color: #2a4a86; }
  .empty, .superseded, .vanished { background: #eee; color: #555; } .failing, .failed, .invalid { background: #fde2e1; color: #9b1c1c; }
  .partially_succeeded { background: #fff3d6; color: #7a5200; }
  form.inline { display: inline; } button { cursor: pointer; }
  .note { background: #fff; border-left: 4px solid #2a4a86; padding: .5rem .8rem; margin: .6rem 0; }
  .bad { border-left-color: #9b1c1c; } nav.filters a { margin-right: .6rem; }
  .login { max-width: 360px; margin: 12vh auto; background: #fff; padding: 1.4rem; border-radius: 6px; box-shadow: 0 1px 4px #0002; }
  .login input { width: 100%; box-sizing: border-box; padding: .45rem; margin: .4rem 0 .8rem; }`;

function page(title: string, body: string, options: { nav?: boolean; loggedIn?: boolean } = {}): string {
  const nav = options.nav === false ? '' : `<header><strong>inference-importer</strong><a href="/ui/jobs">Jobs</a><a href="${DASHBOARD_PATH}">Queues (Bull Board)</a>${
    options.loggedIn ? '<form method="post" action="/logout"><button type="submit">Log out</button></form>' : ''}</header>`;
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${h(title)} · inference-importer</title><style>${STYLE}</style></head><body>${nav}<main>${body}</main></body></html>`;
}

/** Only a path on this server: `/x`, never `//host` or `/\\host`. */
const safeNext = (next: unknown) => (typeof next === 'string' && /^\/(?![/\\])/.test(next) ? next : '/ui/jobs');

const tokenEquals = (given: string, token: string) => {
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
};

interface JobView {
  id: string; state: string; source: string; format: string; model: { id: string; environment: string; version?: string };
  lastPoll: { at: string; outcome: string; error?: string } | null;
  files: Record<string, number>; rows: { loaded: number; rejected: number };
  actuals: { matchRate: number; waiting: number }; queue: Record<string, number>;
}
interface FileView {
  key: string; etag: string; status: string; attempts: number; discoveredAt: string; finishedAt: string | null;
  rowsRead: number | null; predictionsLoaded: number | null; actualsLoaded: number | null; rowsRejected: number | null;
  errorCode: string | null; errorMessage: string | null; errorRow: number | null; errorColumn: string | null;
  firstErrors: Array<{ code: string; message: string; row: number | null; column: string | null }>;
}
interface DryRunView {
  status: string; file: string | null; format: string | null; checks: Record<string, string>;
  rows: { read: number; valid: number; rejected: number } | null; rejectedByCode: Record<string, number>;
  errors: Array<{ code: string; message: string; row?: number; column?: string }>; warnings?: Array<{ code: string; message: string; column?: string }>;
}

const FILE_STATUSES = ['pending', 'succeeded', 'partially_succeeded', 'failed', 'superseded', 'vanished'];
const ACTIONS: Record<string, { path: (id: string) => string; body?: unknown; done: string }> = {
  pause: { path: (id) => `/api/jobs/${id}/pause`, done: 'paused' },
  resume: { path: (id) => `/api/jobs/${id}/resume`, done: 'resumed' },
  retry: { path: (id) => `/api/jobs/${id}/retry`, done: 'failed files queued again' },
  reimport: { path: (id) => `/api/jobs/${id}/reimport`, body: { all: true }, done: 'every file queued for re-import' },
};

/**
 * The job status pages (server-rendered, no script): the jobs, a job's files and first errors,
 * its actions and the dry run of a file; and the login and logout of the browser session. Every
 * figure and every action goes through the admin API (the routes the CLI calls), in process.
 */
export function registerPages(app: FastifyInstance, options: PagesOptions): void {
  const { token, sessions } = options;
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_req, body, done) => done(null, parseQuery(String(body))));

  const api = async <T>(method: 'GET' | 'POST', url: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const res = await app.inject({ method, url, headers: token ? { authorization: `Bearer ${token}` } : {}, ...(body === undefined ? {} : { payload: body as object }) });
    return { status: res.statusCode, body: res.json() as T };
  };
  const html = (reply: FastifyReply, code: number, text: string) => reply.code(code).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(text);
  const loggedIn = !!token;

  app.get('/', async (_req, reply) => reply.redirect('/ui/jobs', 303));

  app.get<{ Querystring: { next?: string; error?: string } }>('/login', async (req, reply) => {
    if (!token) return reply.redirect(safeNext(req.query.next), 303);
    return html(reply, 200, loginPage(req.query.next, undefined));
  });
  app.post<{ Body: { token?: string; next?: string } }>('/login', async (req, reply) => {
    if (!token || !sessions) return reply.redirect('/ui/jobs', 303);
    const given = typeof req.body?.token === 'string' ? req.body.token : '';
    if (!tokenEquals(given, token)) return html(reply, 401, loginPage(req.body?.next, 'That is not the admin token (http.token).'));
    const secure = req.protocol === 'https' || req.headers['x-forwarded-proto'] === 'https';
    return reply.header('set-cookie', sessions.issue(Date.now(), secure)).redirect(safeNext(req.body?.next), 303);
  });
  app.post('/logout', async (_req, reply) => reply.header('set-cookie', Sessions.clear()).redirect('/login', 303));

  app.get<{ Querystring: { done?: string; error?: string } }>('/ui/jobs', async (req, reply) => {
    const [{ body: jobs }, { body: cfg }] = await Promise.all([api<{ jobs: JobView[] }>('GET', '/api/jobs'), api<ConfigView>('GET', '/api/config')]);
    const rows = jobs.jobs.map((j) => `<tr>
      <td><a href="/ui/jobs/${encodeURIComponent(j.id)}">${h(j.id)}</a><div class="mono">${h(j.source)}</div></td>
      <td><span class="state ${h(j.state)}" data-state="${h(j.state)}">${h(j.state)}</span></td>
      <td>${j.lastPoll ? `${h(j.lastPoll.at.slice(0, 19).replace('T', ' '))} <span class="state ${j.lastPoll.outcome === 'ok' ? 'ok' : 'failed'}">${h(j.lastPoll.outcome)}</span>${j.lastPoll.error ? `<div class="mono">${h(j.lastPoll.error)}</div>` : ''}` : 'never'}</td>
      ${['pending', 'succeeded', 'partially_succeeded', 'failed'].map((s) => `<td class="n"><a href="/ui/jobs/${encodeURIComponent(j.id)}?status=${s}">${j.files[s] ?? 0}</a></td>`).join('')}
      <td class="n">${j.rows.loaded}</td><td class="n">${j.rows.rejected}</td>
      <td class="n">${(j.actuals.matchRate * 100).toFixed(1)} %</td><td class="n">${j.actuals.waiting}</td>
      <td>${actionButton(j.id, j.state === 'paused' ? 'resume' : 'pause', '/ui/jobs')}</td></tr>`).join('');
    return html(reply, 200, page('Jobs', `${flash(req.query)}${configNote(cfg)}<h1>Jobs</h1>
      <table><thead><tr><th>Job</th><th>State</th><th>Last poll</th><th>Pending</th><th>Succeeded</th><th>Partial</th><th>Failed</th>
      <th>Rows loaded</th><th>Rows rejected</th><th>Actuals matched</th><th>Actuals waiting</th><th></th></tr></thead><tbody>${rows}</tbody></table>`, { loggedIn }));
  });

  app.get<{ Params: { id: string }; Querystring: { status?: string; offset?: string; done?: string; error?: string } }>('/ui/jobs/:id', async (req, reply) => {
    const id = encodeURIComponent(req.params.id);
    const status = FILE_STATUSES.includes(req.query.status ?? '') ? req.query.status : undefined;
    const offset = Math.max(0, Number(req.query.offset) || 0);
    const [job, files] = await Promise.all([
      api<JobView & { message?: string }>('GET', `/api/jobs/${id}`),
      api<{ total: number; files: FileView[] }>('GET', `/api/jobs/${id}/files?limit=50&offset=${offset}&errors=3${status ? `&status=${status}` : ''}`),
    ]);
    if (job.status !== 200) return html(reply, job.status, page('Not found', `<p class="note bad">${h(job.body.message)}</p>`, { loggedIn }));
    const j = job.body;
    const filter = `<nav class="filters">Show: <a href="/ui/jobs/${id}">all</a>${FILE_STATUSES.map((s) => `<a href="/ui/jobs/${id}?status=${s}"${s === status ? ' aria-current="page"' : ''}>${s.replace('_', ' ')} (${j.files[s] ?? 0})</a>`).join('')}</nav>`;
    const fileRows = files.body.files.map((f) => {
      const first = f.firstErrors[0];
      const error = f.errorCode
        ? `<code>${h(f.errorCode)}</code>${f.errorRow !== null ? ` row ${f.errorRow}` : ''}${f.errorColumn ? `, column <code>${h(f.errorColumn)}</code>` : ''}<div>${h(f.errorMessage)}</div>`
        : first ? `<code>${h(first.code)}</code>${first.row !== null ? ` row ${first.row}` : ''}${first.column ? `, column <code>${h(first.column)}</code>` : ''}<div>${h(first.message)}</div>` : '';
      return `<tr data-key="${h(f.key)}"><td class="mono">${h(f.key)}</td><td><span class="state ${h(f.status)}">${h(f.status)}</span></td>
        <td class="n">${f.attempts}</td><td class="n">${f.rowsRead ?? ''}</td><td class="n">${(f.predictionsLoaded ?? 0) + (f.actualsLoaded ?? 0)}</td><td class="n">${f.rowsRejected ?? ''}</td>
        <td>${h(f.discoveredAt.slice(0, 19).replace('T', ' '))}</td><td class="error">${error}</td>
        <td><a href="/ui/jobs/${id}/dry-run?key=${encodeURIComponent(f.key)}">dry run</a></td></tr>`;
    }).join('');
    const more = files.body.total > offset + 50 ? `<a href="/ui/jobs/${id}?offset=${offset + 50}${status ? `&status=${status}` : ''}">next 50 →</a>` : '';
    return html(reply, 200, page(`Job ${j.id}`, `${flash(req.query)}<h1>Job ${h(j.id)} <span class="state ${h(j.state)}" data-state="${h(j.state)}">${h(j.state)}</span></h1>
      <p class="mono">${h(j.source)} (${h(j.format)}) → model ${h(j.model.id)} / ${h(j.model.environment)}</p>
      <p>Last poll: ${j.lastPoll ? `${h(j.lastPoll.at)} ${h(j.lastPoll.outcome)}${j.lastPoll.error ? `: ${h(j.lastPoll.error)}` : ''}` : 'never'} ·
        rows loaded ${j.rows.loaded}, rejected ${j.rows.rejected} · actuals matched ${(j.actuals.matchRate * 100).toFixed(1)} %, waiting ${j.actuals.waiting}</p>
      <p>${actionButton(j.id, j.state === 'paused' ? 'resume' : 'pause')} ${actionButton(j.id, 'retry', undefined, 'Retry failed files')}
        ${actionButton(j.id, 'reimport', undefined, 'Re-import every file (after a schema change)')}</p>
      <form method="get" action="/ui/jobs/${id}/dry-run">Dry run a file: <input name="key" size="50" placeholder="object key (empty: the first file)"> <button type="submit">Dry run</button></form>
      <h2>Files, newest first (${files.body.total})</h2>${filter}
      <table><thead><tr><th>Key</th><th>Status</th><th>Attempts</th><th>Rows</th><th>Loaded</th><th>Rejected</th><th>Discovered</th><th>First error</th><th></th></tr></thead>
      <tbody>${fileRows}</tbody></table>${more}`, { loggedIn }));
  });

  app.post<{ Params: { id: string; action: string }; Body: { back?: string } }>('/ui/jobs/:id/:action', async (req, reply) => {
    const action = ACTIONS[req.params.action];
    const id = encodeURIComponent(req.params.id);
    const back = safeNext(req.body?.back ?? `/ui/jobs/${id}`);
    if (!action) return reply.redirect(`${back}?error=${encodeURIComponent(`no action ${req.params.action}`)}`, 303);
    const res = await api<{ message?: string; retried?: string[]; reimported?: string[] }>('POST', action.path(id), action.body);
    const n = res.body.retried ?? res.body.reimported;
    const msg = res.status === 200 ? `job ${req.params.id}: ${action.done}${n ? ` (${n.length} file${n.length === 1 ? '' : 's'})` : ''}` : undefined;
    return reply.redirect(`${back}?${msg ? `done=${encodeURIComponent(msg)}` : `error=${encodeURIComponent(res.body.message ?? `HTTP ${res.status}`)}`}`, 303);
  });

  app.get<{ Params: { id: string }; Querystring: { key?: string } }>('/ui/jobs/:id/dry-run', async (req, reply) => {
    const id = encodeURIComponent(req.params.id);
    const res = await api<DryRunView & { message?: string }>('POST', `/api/jobs/${id}/dry-run`, req.query.key ? { key: req.query.key } : {});
    if (res.status !== 200) return html(reply, res.status, page('Dry run', `<p class="note bad">${h(res.body.message)}</p>`, { loggedIn }));
    const r = res.body;
    const errors = r.errors.map((e) => `<tr><td><code>${h(e.code)}</code></td><td class="n">${e.row ?? ''}</td><td><code>${h(e.column ?? '')}</code></td><td>${h(e.message)}</td></tr>`).join('');
    const warnings = (r.warnings ?? []).map((w) => `<p class="note bad"><code>${h(w.code)}</code> ${h(w.message)}</p>`).join('');
    return html(reply, 200, page(`Dry run ${r.file ?? ''}`, `<p><a href="/ui/jobs/${id}">← job ${h(req.params.id)}</a></p>
      <h1>Dry run: <span class="mono">${h(r.file ?? '(no file)')}</span> <span class="state ${h(r.status)}" data-status="${h(r.status)}">${h(r.status)}</span></h1>
      <p>Format ${h(r.format ?? '?')} · access ${h(r.checks.access)} · schema ${h(r.checks.schema)} · records ${r.rows ? `${r.rows.read} rows, ${r.rows.valid} valid, ${r.rows.rejected} invalid` : h(r.checks.records)}</p>
      ${warnings}${errors ? `<table class="errors"><thead><tr><th>Code</th><th>Row</th><th>Column</th><th>Message</th></tr></thead><tbody>${errors}</tbody></table>` : '<p>No errors.</p>'}
      <p class="mono">Nothing was written: the dry run reads the file in a private, in-memory DuckDB.</p>`, { loggedIn }));
  });
}

interface ConfigView { lastReload: { at: string; outcome: string; errors?: string[] } | null; lastReloadFailed: boolean; needsRestart: string[] | null }

function configNote(c: ConfigView): string {
  if (c.lastReloadFailed && c.lastReload) {
    return `<div class="note bad">The last config reload (${h(c.lastReload.at)}) failed; the running config is the one before it:<ul>${(c.lastReload.errors ?? []).map((e) => `<li><code>${h(e)}</code></li>`).join('')}</ul></div>`;
  }
  if (c.needsRestart?.length) return `<div class="note">Changed in the config file, applied only after a restart: ${c.needsRestart.map((p) => `<code>${h(p)}</code>`).join(', ')}</div>`;
  return '';
}

function flash(q: { done?: string; error?: string }): string {
  if (q.error) return `<p class="note bad" role="alert">${h(q.error)}</p>`;
  if (q.done) return `<p class="note" role="status">${h(q.done)}</p>`;
  return '';
}

function actionButton(jobId: string, action: string, back?: string, label?: string): string {
  const text = label ?? action[0].toUpperCase() + action.slice(1);
  return `<form class="inline" method="post" action="/ui/jobs/${encodeURIComponent(jobId)}/${action}">${back ? `<input type="hidden" name="back" value="${h(back)}">` : ''}<button type="submit" name="do" value="${action}">${h(text)}</button></form>`;
}

function loginPage(next: string | undefined, error: string | undefined): string {
  return page('Log in', `<form class="login" method="post" action="/login"><h1>inference-importer</h1>
    ${error ? `<p class="note bad" role="alert">${h(error)}</p>` : ''}
    <label>Admin token (<code>http.token</code>)<input type="password" name="token" autocomplete="current-password" autofocus required></label>
    <input type="hidden" name="next" value="${h(safeNext(next))}"><button type="submit">Log in</button></form>`, { nav: false });
}
