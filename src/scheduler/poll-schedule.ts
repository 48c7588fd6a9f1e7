/** The two intervals of a job that decide when it polls (see `PollSchedule`). */
export interface PollTiming {
  id: string;
  /** The interval while nothing arrives. */
  pollInterval: number;
  /** The interval right after a poll that found new or changed objects (at most `pollInterval`). */
  activePollInterval: number;
}

/**
 * When each job polls next. Idle, every `pollInterval`. After a poll that found new or changed
 * objects, `activePollInterval` later; each poll that finds nothing doubles the wait, back up to
 * `pollInterval`. Files that arrive in a stream are then found within about the short interval, while
 * an idle prefix costs the LIST requests it always did: the polling backoff of Apache Camel's
 * scheduled consumers, with the fast end where data flows. A failed poll goes back to `pollInterval`,
 * so an unreachable bucket is not hammered.
 */
export class PollSchedule {
  private readonly waits = new Map<string, number>();

  /** How long after its last poll started the job is due again. */
  interval(job: PollTiming): number {
    return Math.min(this.waits.get(job.id) ?? job.pollInterval, job.pollInterval);
  }

  /** Records how a poll of the job ended: `found` when it recorded new or changed objects. */
  polled(job: PollTiming, found: boolean): void {
    const next = found ? job.activePollInterval : Math.min(2 * this.interval(job), job.pollInterval);
    if (next >= job.pollInterval) this.waits.delete(job.id);
    else this.waits.set(job.id, next);
  }

  /** A failed poll, a removed or edited job: back to its `pollInterval`. */
  reset(jobId: string): void {
    this.waits.delete(jobId);
  }
}
