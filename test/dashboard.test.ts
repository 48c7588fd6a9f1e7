import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import { SESSION_COOKIE, Sessions } from '../src/admin/session.ts';
import type { Daemon } from '../src/daemon.ts';
import { BUCKET, ledger, runDaemon, startStack, waitFor, writeFixture, type Stack } from './helpers/stack.ts';

const TOKEN = 'dashboard-token-0123456789';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Where the screenshots go; `SCREENSHOTS_DIR=docs/screenshots` refreshes the README's. */
const SHOTS = process.env.SCREENSHOTS_DIR;

describe('dashboard: login, job status pages, Bull Board', () => {
  let stack: Stack;
  let daemon: Daemon;
  let base: string;
  const api = async (method: string, path: string) => {
    const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
    return (await res.json()) as any;
  };
  const parquet = async (key: string, sql: string) => {
    const p = await writeFixture(join(stack.tmp.path, key.replaceAll('/', '_')), sql, 'FORMAT parquet');
    await stack.s3.put(BUCKET, key, await readFile(p));
  };

  before(async () => {
    stack = await startStack();
    daemon = await runDaemon(stack.config([
      { id: 'preds', source: `s3://${BUCKET}/preds/`, format: 'parquet', onInvalidRows: 'fail', model: { id: 'ctr', version: 'v1', type: 'binary' }, schema: { predictionId: 'pid', predictionScore: 'score' } },
      { id: 'acts', source: `s3://${BUCKET}/acts/`, format: 'parquet', model: { id: 'ctr' }, schema: { predictionId: 'pid', actualScore: 'y' } },
    ], { http: { port: 0, host: '127.0.0.1', token: TOKEN, sessionTtl: '1h' } }));
    base = `http://127.0.0.1:${(daemon.http!.server.address() as AddressInfo).port}`;
    await parquet('preds/2026-12-01.parquet', `SELECT 'p' || i AS pid, 0.25 AS score FROM range(6) t(i)`);
    await parquet('preds/2026-12-02.parquet', `SELECT CASE WHEN i = 2 THEN NULL ELSE 'q' || i END AS pid, 0.5 AS score FROM range(4) t(i)`);
    await stack.s3.put(BUCKET, 'preds/2026-12-03.parquet', 'this is not parquet');
    await parquet('acts/2026-12-01.parquet', `SELECT 'p' || i AS pid, 1.0 AS y FROM range(3) t(i)`);
    await waitFor('every file ended', async () => {
      const l = [...(await ledger(daemon, 'preds')), ...(await ledger(daemon, 'acts'))];
      return l.length === 4 && l.every((r) => r.status !== 'pending') && l;
    });
  });
  after(async () => {
    await daemon?.stop();
    await stack?.stop();
  });

  it('checks the login: a wrong token, a tampered or expired cookie are refused; the cookie is HttpOnly, SameSite=Strict and expires', async () => {
    const form = (token: string) => fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token, next: '/ui/jobs' }) });
    const wrong = await form(`${TOKEN}x`);
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get('set-cookie'), null);
    assert.match(await wrong.text(), /That is not the admin token/);
    const ok = await form(TOKEN);
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), '/ui/jobs');
    const cookie = ok.headers.get('set-cookie')!;
    assert.match(cookie, new RegExp(`^${SESSION_COOKIE}=\\d+\\.[A-Za-z0-9_-]{43}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600$`));
    const value = cookie.split(';')[0];
    const get = (path: string, cookieHeader: string, accept = 'application/json') => fetch(`${base}${path}`, { redirect: 'manual', headers: { cookie: cookieHeader, accept } });
    assert.equal((await get('/api/jobs', value)).status, 200);
    assert.equal((await get('/admin/queues/api/queues', value)).status, 200);
    // Another signature, another expiry under the same signature, an expired cookie signed with the token, the signature of another token.
    const [expires, sig] = value.split('=')[1].split('.');
    const flipped = `${sig.slice(0, -2)}${sig.at(-2) === 'A' ? 'B' : 'A'}${sig.at(-1)}`;
    const expired = new Sessions(TOKEN, 3_600_000).issue(Date.now() - 7_200_000).split(';')[0];
    const foreign = new Sessions('some-other-token-0123456789', 3_600_000).issue().split(';')[0];
    for (const bad of [`${SESSION_COOKIE}=${expires}.${flipped}`, `${SESSION_COOKIE}=${Number(expires) + 3600}.${sig}`, expired, foreign, `${SESSION_COOKIE}=`]) {
      const res = await get('/api/jobs', bad);
      assert.equal(res.status, 401, bad);
      assert.equal(((await res.json()) as any).code, 'IMP_ERR_HTTP_UNAUTHORIZED');
      const page = await get('/ui/jobs?status=failed', bad, 'text/html');
      assert.equal(page.status, 303);
      assert.equal(page.headers.get('location'), '/login?next=%2Fui%2Fjobs%3Fstatus%3Dfailed');
    }
    // Bearer headers keep working; the login never redirects off this server.
    assert.equal((await api('GET', '/api/jobs')).jobs.length, 2);
    const offsite = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: TOKEN, next: '//evil.example/' }) });
    assert.equal(offsite.headers.get('location'), '/ui/jobs');
    const out = await fetch(`${base}/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: value } });
    assert.equal(out.headers.get('set-cookie'), `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`);
  });

  it('in Chromium: logs in, reads the jobs, pauses a job, reads a failed file\'s located error and its dry run, opens Bull Board; nothing leaves loopback', async () => {
    const profile = join(stack.tmp.path, 'chromium-profile');
    await mkdir(profile);
    if (SHOTS) await mkdir(SHOTS, { recursive: true });
    const context: BrowserContext = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 1180, height: 640 },
    });
    const requested: string[] = [];
    context.on('request', (r) => requested.push(r.url()));
    const shot = async (name: string) => {
      if (SHOTS) await page.screenshot({ path: join(SHOTS, `${name}.png`) });
    };
    const page = context.pages()[0] ?? (await context.newPage());
    try {
      await page.goto(`${base}/ui/jobs`);
      assert.equal(new URL(page.url()).pathname, '/login');
      await page.fill('input[name=token]', 'not-the-token-at-all');
      await page.click('button[type=submit]');
      assert.equal(await page.textContent('[role=alert]'), 'That is not the admin token (http.token).');
      await shot('login');
      await page.fill('input[name=token]', TOKEN);
      await page.click('button[type=submit]');
      assert.equal(new URL(page.url()).pathname, '/ui/jobs');
      const [cookie] = await context.cookies(base);
      assert.deepEqual([cookie.name, cookie.httpOnly, cookie.sameSite], [SESSION_COOKIE, true, 'Strict']);
      assert.ok(cookie.expires * 1000 > Date.now() + 3_500_000 && cookie.expires * 1000 < Date.now() + 3_700_000);

      const row = (id: string) => page.locator('tbody tr', { has: page.locator(`a[href="/ui/jobs/${id}"]`) });
      assert.equal(await row('preds').locator('[data-state]').textContent(), 'failing');
      assert.equal(await row('acts').locator('[data-state]').textContent(), 'active');
      assert.deepEqual(await row('preds').locator('td.n').allTextContents(), ['0', '1', '0', '2', '6', '1', '50.0 %', '0']);
      await shot('jobs');
      await row('preds').locator('button', { hasText: 'Pause' }).click();
      assert.equal(await page.textContent('[role=status]'), 'job preds: paused');
      assert.equal((await api('GET', '/api/jobs/preds')).state, 'paused');
      assert.equal(await row('preds').locator('[data-state]').textContent(), 'paused');

      await row('preds').locator('a[href="/ui/jobs/preds?status=failed"]').click();
      const failed = page.locator('tbody tr[data-key]');
      // Both were discovered by the same poll, so their order among themselves is not defined.
      assert.deepEqual((await failed.evaluateAll((rows) => rows.map((r) => r.getAttribute('data-key')))).sort(), ['preds/2026-12-02.parquet', 'preds/2026-12-03.parquet']);
      const located = page.locator('tr[data-key="preds/2026-12-02.parquet"] td.error');
      assert.match((await located.textContent())!, /^IMP_ERR_ROWS_INVALID row 3, column pid/);
      assert.match((await located.textContent())!, /row 3, column "pid": the prediction ID is null or empty/);
      await shot('job');
      await page.locator('tr[data-key="preds/2026-12-02.parquet"] a', { hasText: 'dry run' }).click();
      assert.equal(await page.getAttribute('[data-status]', 'data-status'), 'invalid');
      assert.deepEqual(await page.locator('table.errors tbody td').allTextContents(), ['IMP_ERR_ROW_PREDICTION_ID_MISSING', '3', 'pid', 'row 3, column "pid": the prediction ID is null or empty']);
      await shot('dry-run');

      await page.goto(`${base}/admin/queues/queue/import-preds?status=failed`);
      await page.getByText('preds/2026-12-03.parquet').first().waitFor();
      await page.getByText(/No magic bytes found at end of file/).first().waitFor();
      await shot('bull-board');

      await page.goto(`${base}/ui/jobs`);
      await page.click('text=Log out');
      assert.equal(new URL(page.url()).pathname, '/login');
      await page.goto(`${base}/ui/jobs`);
      assert.equal(new URL(page.url()).pathname, '/login');
    } finally {
      await context.close();
    }
    const hosts = new Set(requested.map((u) => new URL(u).hostname));
    assert.deepEqual([...hosts], ['127.0.0.1'], `requests left loopback: ${requested.filter((u) => new URL(u).hostname !== '127.0.0.1').join(', ')}`);
    assert.ok(requested.some((u) => u.includes('/admin/queues/static/')), 'Bull Board loaded its own assets');
  });
});
