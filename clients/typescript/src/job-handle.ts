// JobHandle: one job's id and tenant, with the operations on it.
import type { CallOptions, SluiceClient } from './client.js';
import type { CancelResult, Job, JobResult, JobStatus } from './types.js';

/**
 * A job by id. Returned by enqueue (then `created` and `enqueuedStatus` say what the enqueue
 * did) and by client.job(id). Holds no state of the job itself: every method asks the server.
 */
export class JobHandle {
  constructor(
    private readonly client: SluiceClient,
    readonly id: string,
    readonly tenant: string,
    /** From enqueue: false when the id existed (the job was returned unchanged). */
    readonly created?: boolean,
    /** From enqueue: the job's status then. */
    readonly enqueuedStatus?: JobStatus,
  ) {}

  private opts<T extends CallOptions>(o: T | undefined): T {
    return { ...(o ?? {}), tenant: this.tenant } as T;
  }

  /** The job's current status. */
  async status(opts?: CallOptions): Promise<JobStatus> {
    return (await this.client.getJobResult(this.id, this.opts(opts))).status;
  }

  /** The whole job, with its attempts when asked. */
  get(opts?: CallOptions & { includeAttempts?: boolean }): Promise<Job> {
    return this.client.getJob(this.id, this.opts(opts));
  }

  /** The result now (finished false while the job is not terminal). */
  result(opts?: CallOptions): Promise<JobResult> {
    return this.client.getJobResult(this.id, this.opts(opts));
  }

  /**
   * Waits for the terminal state using the server-side wait (GetJobResult wait_ms, looped), and
   * resolves with the result whatever the terminal status (check `status`). Rejects with
   * SluiceTimeoutError after `timeoutMs` (default: wait forever), CancelledError on `signal`.
   */
  awaitResult(opts?: CallOptions & { pollMs?: number }): Promise<JobResult> {
    return this.client.awaitResult(this.id, this.opts(opts));
  }

  /** Cancels: a pending job ends cancelled; a running one gets cancel_requested. */
  cancel(opts?: CallOptions): Promise<CancelResult> {
    return this.client.cancelJob(this.id, this.opts(opts));
  }

  /** Puts a failed or cancelled job back to waiting with a fresh retry budget. */
  restart(opts?: CallOptions): Promise<void> {
    return this.client.restartJob(this.id, this.opts(opts));
  }

  /** Makes a scheduled job due now. */
  expedite(opts?: CallOptions): Promise<void> {
    return this.client.expediteJob(this.id, this.opts(opts));
  }

  /** Deletes the job (not while running) with its attempts. */
  delete(opts?: CallOptions): Promise<void> {
    return this.client.deleteJob(this.id, this.opts(opts));
  }
}
