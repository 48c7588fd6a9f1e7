import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { unwatchFile, watch, watchFile, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Logger } from 'pino';
import { describeError } from '../errors.ts';
import { checkSelect } from '../schema/select.ts';
import { loadConfig } from './load.ts';
import type { Config, JobConfig } from './schema.ts';

/** Top-level sections that apply without a restart; every other section is read once at start. */
const LIVE_SECTIONS: ReadonlySet<string> = new Set(['jobs', 'defaults']);
/** How often the file's stat is checked too (a write through a symlink lands in another folder than the watched one). */
const STAT_INTERVAL_MS = 1000;
/** File events come in bursts (an editor's write, a ConfigMap's symlink swap): one reload after they settle. */
const WATCH_SETTLE_MS = 300;

/** What one reload did, as `GET /api/config` shows it. */
export interface ReloadReport {
  at: string;
  /** What asked for it: `watch`, `SIGHUP`, `api`. */
  trigger: string;
  outcome: 'applied' | 'unchanged' | 'failed';
  /** When failed: every problem, with its key path. The running config stays. */
  errors?: string[];
  added?: string[];
  removed?: string[];
  changed?: string[];
  /** Key paths whose new value is in the file but applies only after a restart. */
  needsRestart?: string[];
}

/** The jobs a reload added, removed or changed, for the parts that act on them. */
export interface ConfigChange {
  config: Readonly<Config>;
  added: JobConfig[];
  removed: JobConfig[];
  changed: JobConfig[];
}

/**
 * The running config and its reloads. `current` is always a whole, validated, frozen config: a
 * reload replaces it only when the new file is valid (schema and every job's `select`), and then
 * only its live sections (`jobs`, `defaults`); settings read once at start (store, Redis, HTTP,
 * S3, worker, log) keep their running value and are reported as needing a restart.
 * Emits `change` with a {@link ConfigChange} after a reload that changed jobs or defaults.
 */
export class LiveConfig extends EventEmitter<{ change: [ConfigChange] }> {
  current: Readonly<Config>;
  /** The last reload, whatever its outcome; undefined until the first. */
  last?: ReloadReport;
  /** The last reload that failed, while the file still holds that content. */
  lastFailure?: ReloadReport;
  readonly loadedAt = new Date().toISOString();
  private watcher?: FSWatcher;
  private settleTimer?: NodeJS.Timeout;
  private lastHash?: string;
  private failedHash?: string;
  private running: Promise<ReloadReport> = Promise.resolve({} as ReloadReport);

  constructor(
    initial: Readonly<Config>,
    readonly path: string | undefined,
    private readonly log: Logger,
    private readonly hooks: {
      /** Puts a changed config into effect (start and stop pollers, workers, queues); awaited before the reload answers. */
      apply?: (change: ConfigChange) => Promise<void>;
      /** Told every reload's outcome (the metric). */
      onReport?: (report: ReloadReport) => void;
    } = {},
  ) {
    super();
    this.current = initial;
  }

  /** Reloads from the file; reloads never overlap (a second waits for the first). */
  reload(trigger: string): Promise<ReloadReport> {
    this.running = this.running.catch(() => undefined).then(() => this.reloadNow(trigger));
    return this.running;
  }

  private async reloadNow(trigger: string): Promise<ReloadReport> {
    const at = new Date().toISOString();
    if (!this.path) return this.report({ at, trigger, outcome: 'failed', errors: ['the daemon was started without a config file path, so it cannot reload'] }, undefined);
    let hash: string | undefined;
    let next: Readonly<Config>;
    try {
      hash = createHash('sha256').update(await readFile(this.path)).digest('hex');
      next = await loadConfig(this.path);
      await checkSelects(next);
    } catch (err) {
      const e = describeError(err);
      const lines = e.message.split('\n');
      const errors = lines.length > 1 ? lines.slice(1).map((l) => l.trim()) : [e.message];
      const report: ReloadReport = { at, trigger, outcome: 'failed', errors };
      // The same broken content seen again (another file event, a second SIGHUP) is not logged again.
      if (hash === undefined || hash !== this.failedHash) this.log.error({ code: e.code, trigger, path: this.path, errors }, 'config reload failed: the running config stays');
      this.failedHash = hash;
      this.lastFailure = report;
      return this.report(report, hash);
    }
    this.failedHash = undefined;
    this.lastFailure = undefined;
    const old = this.current;
    const needsRestart = differingPaths(old, next).filter((p) => !LIVE_SECTIONS.has(p.split(/[.[]/)[0]));
    const oldJobs = new Map(old.jobs.map((j) => [j.id, j]));
    const newJobs = new Map(next.jobs.map((j) => [j.id, j]));
    const added = next.jobs.filter((j) => !oldJobs.has(j.id));
    const removed = old.jobs.filter((j) => !newJobs.has(j.id));
    const changed = next.jobs.filter((j) => oldJobs.has(j.id) && JSON.stringify(oldJobs.get(j.id)) !== JSON.stringify(j));
    const defaultsChanged = JSON.stringify(old.defaults) !== JSON.stringify(next.defaults);
    const ids = (js: JobConfig[]) => js.map((j) => j.id);
    const report: ReloadReport = {
      at, trigger,
      outcome: added.length || removed.length || changed.length || defaultsChanged ? 'applied' : 'unchanged',
      added: ids(added), removed: ids(removed), changed: ids(changed), needsRestart,
    };
    if (needsRestart.length) this.log.warn({ trigger, needsRestart }, 'config reload: these settings changed in the file but apply only after a restart');
    if (report.outcome === 'applied') {
      this.current = Object.freeze({ ...old, jobs: next.jobs, defaults: next.defaults });
      this.log.info({ trigger, added: report.added, removed: report.removed, changed: report.changed }, 'config reloaded');
      const change = { config: this.current, added, removed, changed };
      try {
        await this.hooks.apply?.(change);
      } catch (err) {
        this.log.error({ err: describeError(err), trigger }, 'config reload: applying the new jobs failed part way; see the error');
      }
      this.emit('change', change);
    }
    return this.report(report, hash);
  }

  private report(report: ReloadReport, hash: string | undefined): ReloadReport {
    this.last = report;
    this.lastHash = hash ?? this.lastHash;
    this.hooks.onReport?.(report);
    return report;
  }

  /**
   * Watches the config file's folder, not the file: a Kubernetes ConfigMap update swaps a symlink
   * (`..data`) in that folder, and editors replace the file by a rename; both would orphan a watch
   * on the file itself. A write in place through the symlink lands in the target's folder, so the
   * file's stat (which follows the link) is checked every second too. A reload follows once the
   * events settle and only when the content changed.
   */
  watch(): void {
    if (!this.path || this.watcher) return;
    const dir = dirname(resolve(this.path));
    const name = basename(this.path);
    void readFile(this.path).then((b) => (this.lastHash ??= createHash('sha256').update(b).digest('hex')), () => undefined);
    const settle = () => {
      clearTimeout(this.settleTimer);
      this.settleTimer = setTimeout(() => void this.onFileEvent(), WATCH_SETTLE_MS);
    };
    watchFile(this.path, { interval: STAT_INTERVAL_MS, persistent: false }, settle);
    try {
      this.watcher = watch(dir, { persistent: false }, (_event, file) => {
        // ConfigMap swaps touch `..data` and `..<timestamp>` entries, never the file's own name.
        if (file && file !== name && !String(file).startsWith('..')) return;
        settle();
      });
      this.watcher.on('error', (err) => this.log.warn({ err: describeError(err), dir }, 'config watch failed; reload with SIGHUP or POST /api/config/reload'));
    } catch (err) {
      this.log.warn({ err: describeError(err), dir }, 'cannot watch the config folder; reload with SIGHUP or POST /api/config/reload');
    }
  }

  private async onFileEvent(): Promise<void> {
    if (!this.path) return;
    const hashOf = (path: string) => readFile(path).then((b) => createHash('sha256').update(b).digest('hex'), () => undefined);
    const first = await hashOf(this.path);
    // A file written in place (truncated, then written) can be read half way: reload only content that stays put.
    await new Promise((r) => setTimeout(r, WATCH_SETTLE_MS));
    const hash = await hashOf(this.path);
    if (hash !== first) {
      this.settleTimer = setTimeout(() => void this.onFileEvent(), WATCH_SETTLE_MS);
      return;
    }
    if (hash === undefined || hash === this.lastHash) return;
    await this.reload('watch');
  }

  close(): void {
    clearTimeout(this.settleTimer);
    this.watcher?.close();
    this.watcher = undefined;
    if (this.path) unwatchFile(this.path);
  }
}

/** Each job's `select` must parse as single expressions (as `config check` does). */
async function checkSelects(config: Readonly<Config>): Promise<void> {
  if (!config.jobs.some((j) => j.select?.length)) return;
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    for (const job of config.jobs) await checkSelect(async (sql) => (await conn.runAndReadAll(sql)).getRowObjectsJson() as Array<Record<string, unknown>>, job);
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

/** Key paths (`http.port`, `store.path`) whose values differ; jobs compared as one key. */
function differingPaths(a: unknown, b: unknown, path = ''): string[] {
  if (path === 'jobs') return JSON.stringify(a) === JSON.stringify(b) ? [] : ['jobs'];
  const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => differingPaths(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [path];
}
