import type { Store } from '../store/store.ts';
import { Mutex } from '../util/mutex.ts';
import { importGroup, NeedsStaging } from './group.ts';
import { readAhead, type ReadAhead } from './read-ahead.ts';
import type { ImportRequest, ImportResult } from './types.ts';

/** Files of one job imported in one transaction, at most this many bytes together (a larger file goes alone). */
const GROUP_MAX_BYTES = 256 * 1024 * 1024;
/** How long a file read waits for its job's other reads, to be imported with them (as the worker waits for downloads). */
const READ_SIBLING_WAIT_MS = 2000;

/** An import waiting for its turn. */
interface WaitingImport {
  request: ImportRequest;
  resolve: (result: ImportResult) => void;
  reject: (err: unknown) => void;
}

/**
 * The store-neutral import of downloaded files. A file is first read (CSV and JSON parsed into the
 * engine, see `readAhead`) without a turn, so a slow or hostile file delays no other import; then
 * imports take turns (their deletes and flag updates touch the same rows); whoever takes the turn
 * imports every waiting file of the same job in one transaction: files that arrive together (one
 * poll's worth) then cost one commit, one scan for overlapping keys and one parallel insert,
 * instead of one of each per file, which is what keeps PutObject → visible short. If anything in a
 * group fails, its files are imported again one per transaction, so a broken file fails alone.
 */
export class Importer {
  private readonly turn = new Mutex();
  private waiting: WaitingImport[] = [];
  /** Jobs whose last import needed staging (a rejected row): their next files are staged from the start. */
  private readonly stagingJobs = new Set<string>();
  /** Per job: files being read, and files read that wait for them (see `readDone`). */
  private readonly reads = new Map<string, { running: number; ready: WaitingImport[]; timer?: NodeJS.Timeout }>();
  /** Imports under way (read, waiting or in the turn), by file version. */
  private readonly running = new Map<number, Promise<ImportResult>>();

  constructor(private readonly store: Store) {}

  /**
   * Imports one file version in one store transaction (shared with the files of its job waiting
   * at the same time), its file read before it waits for the turn: replaces what earlier versions
   * of the key contributed, loads predictions and/or actuals, records rejected rows and the ledger
   * row. Skips versions already committed or no longer current.
   */
  async importFile(request: ImportRequest): Promise<ImportResult> {
    // BullMQ delivers at least once: a run whose lock expired (Redis away longer than lockDuration) is
    // handed out again while the first still runs. Two requests for one version waiting together
    // would be imported in one transaction, both claiming it; the second waits and then finds it done.
    const { fileId } = request.version;
    for (let earlier = this.running.get(fileId); earlier; earlier = this.running.get(fileId)) await earlier.catch(() => undefined);
    const imported = this.readAndImport(request);
    this.running.set(fileId, imported);
    try {
      return await imported;
    } finally {
      if (this.running.get(fileId) === imported) this.running.delete(fileId);
    }
  }

  private async readAndImport(request: ImportRequest): Promise<ImportResult> {
    const jobId = request.job.id;
    const reads = this.reads.get(jobId) ?? { running: 0, ready: [] };
    this.reads.set(jobId, reads);
    reads.running++;
    let read: ReadAhead;
    try {
      // A job whose last file needed staging reads its next ones whole (they are staged from the start).
      read = await readAhead(this.store, request, { keys: !this.stagingJobs.has(jobId) });
    } catch (err) {
      this.readDone(jobId);
      throw err;
    }
    try {
      return await new Promise<ImportResult>((resolve, reject) => {
        reads.ready.push({ request: read.request, resolve, reject });
        this.readDone(jobId);
      });
    } finally {
      await read.release();
    }
  }

  /**
   * A read of the job ended. Files read wait for the job's other reads (at most READ_SIBLING_WAIT_MS)
   * and then ask for the turn together, so that files that arrived together are still imported in
   * one transaction (as before reads left the turn), and a slow file holds its job's others up for
   * that long at most.
   */
  private readDone(jobId: string): void {
    const reads = this.reads.get(jobId)!;
    reads.running--;
    if (reads.running > 0) {
      if (reads.ready.length && !reads.timer) reads.timer = setTimeout(() => this.queueReady(jobId), READ_SIBLING_WAIT_MS);
      return;
    }
    this.queueReady(jobId);
  }

  /** Puts a job's files read in the queue for the turn, all at once. */
  private queueReady(jobId: string): void {
    const reads = this.reads.get(jobId);
    if (!reads) return;
    clearTimeout(reads.timer);
    reads.timer = undefined;
    const ready = reads.ready;
    reads.ready = [];
    if (reads.running === 0) this.reads.delete(jobId);
    this.waiting.push(...ready);
    for (const w of ready) this.turn.run(() => this.importWaiting()).catch(w.reject);
  }

  /** Takes the oldest waiting import and the others of its job that fit in one transaction, and imports them. */
  private async importWaiting(): Promise<void> {
    const first = this.waiting[0];
    if (!first) return; // an earlier turn took it along
    const group = [first];
    if (!first.request.alone) {
      let bytes = first.request.version.size;
      // Files read as keys go together, and files read whole or parquet together: a group mixing them reads every file whole.
      const keyed = first.request.source.keyed !== undefined;
      for (const w of this.waiting.slice(1)) {
        if (w.request.job.id !== first.request.job.id || w.request.alone || (w.request.source.keyed !== undefined) !== keyed
          || bytes + w.request.version.size > GROUP_MAX_BYTES) continue;
        bytes += w.request.version.size;
        group.push(w);
      }
    }
    this.waiting = this.waiting.filter((w) => !group.includes(w));
    if (group.length > 1) {
      try {
        const results = await this.importChecked(group.map((w) => w.request));
        group.forEach((w, i) => w.resolve(results[i]));
        return;
      } catch {
        // Something in the group failed: import its files one by one, so the failure is the broken file's alone.
      }
    }
    for (const w of group) {
      try {
        w.resolve((await this.importChecked([w.request]))[0]);
      } catch (err) {
        w.reject(err);
      }
    }
  }

  /**
   * Files of predictions or of actuals in columnar formats (parquet, and CSV and JSON once read
   * as keys or into a temp table) are loaded first and checked after: nearly every
   * file is clean, and its verdicts then cost one re-read of its key columns instead of a staging
   * pass over the file before the load (at 5M rows 2.4 s of 10 s, and the stage's memory slowed
   * the load). A group that turns out to hold a rejected row or a repeated ID is rolled back and
   * imported again, staged; its job's next files are staged until one is clean.
   */
  private async importChecked(requests: ImportRequest[]): Promise<ImportResult[]> {
    const jobId = requests[0].job.id;
    if (!this.stagingJobs.has(jobId)) {
      try {
        return await importGroup(this.store, requests, { loadFirst: true });
      } catch (err) {
        // Any other failure is left to the staged path to name: it reads the file with the errors
        // that say which file and why (a corrupt page is IMP_ERR_FORMAT_UNREADABLE there).
        if (err instanceof NeedsStaging) this.stagingJobs.add(jobId);
      }
    }
    const results = await importGroup(this.store, requests, { loadFirst: false });
    if (results.every((r) => r.rowsRejected === 0)) this.stagingJobs.delete(jobId);
    return results;
  }
}
