/**
 * The downloads under way, per job. A downloaded file waits for the downloads of its job that were
 * running when it finished (at most `maxWaitMs`) before it asks the store to import it: files that
 * arrived together then reach the store together and are imported in one transaction (see
 * `DuckDbStore.importFile`), instead of the first alone and the rest after it.
 */
export class DownloadTracker {
  private readonly running = new Map<string, Set<Promise<unknown>>>();

  constructor(private readonly maxWaitMs: number) {}

  /** Runs a download of `jobId`, known to the others of the job while it runs. */
  async track<T>(jobId: string, download: () => Promise<T>): Promise<T> {
    const promise = download();
    const set = this.running.get(jobId) ?? new Set();
    this.running.set(jobId, set);
    set.add(promise);
    try {
      return await promise;
    } finally {
      set.delete(promise);
      if (set.size === 0) this.running.delete(jobId);
    }
  }

  /** Resolves when the job's downloads running now have finished (whatever their outcome), or after `maxWaitMs`. */
  async siblings(jobId: string): Promise<void> {
    const now = [...(this.running.get(jobId) ?? [])];
    if (now.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(now),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, this.maxWaitMs))),
    ]);
    clearTimeout(timer);
  }
}
