// Worker: leases tasks from one or more queues with long-polls sized to its free slots, runs a
// handler per task under an AbortSignal, heartbeats each lease on a timer (every third of the
// lease), reports outcomes in batches, and runs floating-limit refresh tasks.
//
// Reporting: a finished outcome rides on its queue's next LeaseTasks call (LeaseTasksRequest.
// reports: report and fetch in one round trip) when that loop leases anyway; such a call never
// long-polls (waitMs 0), so stop() never has to cancel a call whose reports' fate it would not
// learn. While the loop's call is in flight (a long-poll, or a call carrying earlier reports),
// a second lane per queue sends the outcomes that finished meanwhile on a LeaseTasks of their
// own (waitMs 0, asking for the slots they freed), so two report-and-fetch round trips overlap
// as a lease and a ReportOutcomes did. Outcomes go alone in a ReportOutcomes batch when no lease
// is coming: stopping, backing off after an error, or after reportLingerMs without free slots,
// and for reports whose LeaseTasks call failed as a whole (they may or may not have been
// applied: a repeat is fenced by the lease token, and a LEASE_LOST answer to it is checked
// against the job's attempts).
//
// Rules it keeps (docs/decisions.md, LESSONS.md):
//  - at most `concurrency` handlers run at once;
//  - a lease is kept alive by heartbeats until its outcome is acknowledged;
//  - after a lease is lost (LEASE_LOST, or the lease ran out locally without a successful
//    heartbeat) the handler's signal aborts, heartbeats stop and nothing is ever reported;
//  - a task id already running here is a duplicate delivery and is ignored;
//  - no sleeping while work flows: a loop waits only on the server's long-poll, on a free slot,
//    or (after an error) on a backoff.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { SluiceClient } from './client.js';
import { ChurnMap } from './churn-map.js';
import {
  GrpcCode, InvalidArgumentError, LeaseLostError, SluiceError, TooLargeError, UnimplementedError,
  isTransient,
} from './errors.js';
import {
  CancelRequestedError, type JobHandler, LazyAbort, WorkerStoppedError, makeContext, successOutcome,
  thrownOutcome,
} from './handler.js';
import type { LeaseStream } from './lease-stream.js';
import { RefreshRunner, type RefreshHandlers } from './refresh.js';
import { type ResolvedRetry, type RetryOptions, backoffMs, resolveRetry, sleep } from './retry.js';
import type { LeaseRequest, LeaseResponse, Outcome, RefreshTask, Task } from './types.js';

/** The longest delay setTimeout keeps (a longer one fires after 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface WorkerOptions {
  /** The queue or queues to lease from (one long-poll loop each). */
  queues: string | string[];
  /** Runs one job; see JobHandler for the outcome rules. */
  handler: JobHandler;
  /** Most handlers running at once (default 1). */
  concurrency?: number;
  /** Recorded on attempts and checked on heartbeats (default host-pid-random). */
  workerId?: string;
  /** Tenant to work for (default: the client's). */
  tenant?: string;
  /** Floating-limit refresh handlers by key, or one for every key. */
  refresh?: RefreshHandlers;
  /**
   * Longest a refresh handler may run (default 60,000 ms; 0: no limit). Past it, its signal is
   * aborted and the refresh is reported failed with code "refresh_timeout": the server keeps
   * the old max and retries later with backoff, instead of the key waiting on a handler that
   * never returns. What the handler returns afterwards is ignored. At most 2^31-1 (about 24
   * days), the longest timer Node.js keeps.
   */
  refreshTimeoutMs?: number;
  /** Long-poll bound of one LeaseTasks (default 30,000 ms; 2,000 with several queues). */
  leaseWaitMs?: number;
  /** Backoff of a lease loop or report flush after a failed call (default 100 ms to 5 s). */
  errorBackoff?: RetryOptions;
  /** Most reports per ReportOutcomes call, or per LeaseTasks call (default 256). */
  maxReportBatch?: number;
  /**
   * Send finished outcomes on the queue's next LeaseTasks call when the worker leases anyway,
   * so one round trip reports a batch and fetches the next (default true). False: every batch
   * is a ReportOutcomes call of its own.
   */
  reportWithLease?: boolean;
  /**
   * Longest a finished outcome waits for its queue's next lease call before it is sent alone
   * with ReportOutcomes (default 10 ms). A call already in flight without a long-poll is
   * waited for instead: its successor takes the outcome.
   */
  reportLingerMs?: number;
  /**
   * Lease over one LeaseStream per queue (default true): requests answered in order on one
   * long-lived call, without a call's set-up each. False, or a server without LeaseStream
   * (UNIMPLEMENTED, said once on 'error'): a LeaseTasks call per lease.
   */
  leaseStream?: boolean;
  /**
   * Lease requests in flight per queue while its work flows (default 2 over a stream, else 1).
   * The free slots are split between them, so the server applies the reports of one batch and
   * leases the next while this process runs the last. Only one of them ever long-polls. While a
   * queue's handlers finish at once (before its next request could go), the queue prefetches
   * instead (see prefetch: its lanes, up to 4 requests in flight, whatever this setting and
   * leaseStream say; with prefetch 0, one request carries every free slot); these lanes resume
   * as soon as an answer's handlers take time.
   */
  leasePipeline?: number;
  /**
   * Tasks leased ahead of free handler slots while a queue's handlers finish at once (before
   * its next request could go): up to this many more than `concurrency`, in requests of up to
   * `concurrency` tasks each that are in flight together, so the server applies one batch's
   * reports and leases the next while this process runs the last (default 2 × concurrency; 0:
   * never). Handlers never run more than `concurrency` at once: a task that arrives while every
   * slot is taken waits here (its lease kept by heartbeats) and starts when a handler finishes.
   * As soon as an answer's handlers take time (or its tasks had to wait for a slot), the worker
   * leases no more than its free slots again, so slower jobs are not held back from other
   * workers; a task still waiting after a whole lease lets it lapse (leaseLost 'expired') and
   * runs elsewhere. Only a Worker of one queue prefetches.
   */
  prefetch?: number;
  /** Start leasing in the constructor (default true); else call start(). */
  autostart?: boolean;
}

/** Counters since the worker started; a snapshot from metrics(). */
export interface WorkerMetrics {
  /** Handlers running now. */
  running: number;
  /** Outcomes waiting for the server's acknowledgement now. */
  reporting: number;
  /** Tasks leased ahead (see prefetch) that wait for a handler slot now. */
  waiting: number;
  leased: number;
  /** Tasks that had to wait here for a handler slot (leased ahead, see prefetch). */
  waited: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  leaseLost: number;
  duplicates: number;
  leaseCalls: number;
  leaseErrors: number;
  heartbeats: number;
  heartbeatErrors: number;
  /** Heartbeat timers that fired a third of a lease late: the event loop was blocked. */
  heartbeatsLate: number;
  /** ReportOutcomes calls. */
  reportCalls: number;
  reportErrors: number;
  /** LeaseTasks calls that carried reports. */
  leaseReportCalls: number;
  /** Reports answered in a LeaseTasks response (report_statuses). */
  reportsWithLease: number;
  /** Reports sent in ReportOutcomes calls (a resent report counts again). */
  reportsAlone: number;
  /** Reports whose answer was lost in transit and that were found applied (GetJob). */
  reportsRecovered: number;
  refreshesReported: number;
  refreshesFailed: number;
}

/** Where an 'error' event came from. */
export interface ErrorContext {
  op: 'lease' | 'heartbeat' | 'report' | 'refresh' | 'listener';
  queue?: string;
  taskId?: string;
  jobId?: string;
  key?: string;
}

export interface StopResult {
  /** Every handler and report finished within the timeout. */
  drained: boolean;
  /** Tasks left to their lease expiry (they will run again elsewhere). */
  abandoned: number;
}

/** Events: listen with worker.on(name, listener). Listener exceptions never reach the worker. */
export interface WorkerEvents {
  /** A call failed (transport, server); the worker keeps going and retries by itself. */
  error: [error: unknown, context: ErrorContext];
  /** A handler started. */
  active: [task: Task];
  /** The success was acknowledged by the server. */
  completed: [task: Task, result: Buffer, durationMs: number];
  /** The failure was acknowledged (the server retries the job if it can). */
  failed: [task: Task, error: unknown, durationMs: number];
  /** The cancellation was acknowledged. */
  cancelled: [task: Task, durationMs: number];
  /**
   * The lease was lost; the handler's signal aborted and nothing is reported. A task gets
   * at most one of completed, failed, cancelled and leaseLost: a lease that runs out locally
   * while the task's report is in flight is told only if the report was not taken.
   */
  leaseLost: [task: Task, reason: 'heartbeat' | 'expired' | 'report' | 'superseded' | 'stopped'];
  /** A task already running here was delivered again and ignored. */
  duplicate: [task: Task];
  /** A heartbeat said the job's cancellation was requested (the signal aborted). */
  cancelRequested: [task: Task];
  /** A refresh handler's max was reported. */
  refreshed: [key: string, newMax: number];
  /** A refresh failed (handler threw, no handler, bad value) and the failure was reported. */
  refreshFailed: [key: string, error: unknown];
  /** stop() finished. */
  stopped: [result: StopResult];
}

type Phase = 'waiting' | 'running' | 'reporting' | 'done';

/**
 * What a queue's lease loop does now: waits for free slots; has a LeaseTasks call in flight
 * that carries reports and does not wait ('fast'), or one that may long-poll ('polling'); waits
 * out a backoff after an error; or has ended.
 */
type LoopState = 'reserving' | 'fast' | 'polling' | 'backoff' | 'done';

interface Running {
  task: Task;
  ctl: LazyAbort;
  phase: Phase;
  lost: boolean;
  cancelRequested: boolean;
  stopAborted: boolean;
  startedAt: number;
  /** Local clock (performance.now) after which the lease must be presumed expired. */
  expiresAt: number;
  /** Local clock when it was leased (received). */
  leasedAt: number;
  timer: NodeJS.Timeout | undefined;
  timerDue: number;
  hbFailures: number;
  outcome?: Outcome;
  /** The thrown value behind a failure outcome (for the 'failed' event). */
  thrown?: unknown;
  inFlight: boolean;
  /** Local clock when the outcome was queued for reporting. */
  queuedAt: number;
  /** Report by ReportOutcomes only (a LeaseTasks call carrying it failed). */
  direct: boolean;
  /** A call carrying the report failed as a whole: it may have been applied all the same. */
  maybeApplied: boolean;
  /** Most reports of a call carrying it: half the batch the server refused as a whole. */
  splitCap: number;
  /**
   * The lease ran out by the local clock while the report was in flight: the report's answer
   * says whether the server took the outcome first. Told as leaseLost when the task finishes
   * without that answer having been a success.
   */
  untoldLoss?: LeaseLostReason;
}

type LeaseLostReason = WorkerEvents['leaseLost'][1];

const MIN_HEARTBEAT_MS = 50;
const MAX_LEASE_BATCH = 1000;
/**
 * Most outcome bytes (results, error data and messages) one request carries: well under the
 * server's request cap (32 MiB by default), so a burst of large results goes in several calls.
 */
const MAX_REPORT_BYTES = 4 << 20;
const now = (): number => performance.now();
// A function, not an inline test, so that TypeScript does not narrow `phase` across awaits.
const gone = (r: { lost: boolean; phase: string }): boolean => r.lost || r.phase === 'done';

/** The outcome bytes of a batch of reports (outcomeBytes summed). */
function batchBytes(batch: { outcome?: Outcome }[]): number {
  let n = 0;
  for (const r of batch) n += outcomeBytes(r.outcome!);
  return n;
}

/** The bytes an outcome adds to a request, roughly (its variable-size fields). */
function outcomeBytes(o: Outcome): number {
  if (o.kind === 'success') return 16 + (o.result?.length ?? 0);
  if (o.kind === 'cancelled') return 16;
  return 16 + o.code.length + (o.message?.length ?? 0) + (o.data?.length ?? 0);
}

function defaultWorkerId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`.slice(0, 128);
}

/**
 * A Worker. Create it with a client (which it does not close), let it run, stop() it.
 * Handlers run on this process's event loop and heartbeats are timers on the same loop: a
 * handler that blocks the loop (CPU-bound code without awaits) for longer than two thirds of
 * its lease loses the lease. Split such work with `await` points, run it in worker_threads, or
 * give its jobs a longer leaseMs (README: CPU-bound handlers).
 */
export class Worker extends EventEmitter<WorkerEvents> {
  readonly workerId: string;
  readonly queues: readonly string[];
  readonly concurrency: number;
  private readonly client: SluiceClient;
  private readonly handler: JobHandler;
  private readonly tenant: string;
  private readonly leaseWaitMs: number;
  private readonly backoff: ResolvedRetry;
  private readonly maxReportBatch: number;
  private readonly reportWithLease: boolean;
  private readonly lingerMs: number;
  /** False once a server ignored the reports of a LeaseTasks (it predates them). */
  private leaseTakesReports = true;
  /** Leasing over LeaseStream (false: option, or the server lacks it). */
  private useStream: boolean;
  private readonly pipeline: number;
  /** WorkerOptions.prefetch, and the lease lanes a queue uses while it prefetches. */
  private readonly prefetch: number;
  private readonly prefetchLanes: number;
  /** Tasks leased ahead, waiting for a handler slot (oldest first). */
  private readonly waiting: Running[] = [];
  /** stop()'s timeout passed: waiting tasks are not started any more. */
  private noMoreStarts = false;
  private readonly streams = new Map<string, LeaseStream>();
  /** Queues whose last lease answer (of any lane) had tasks. */
  private readonly hotQueues = new Set<string>();
  private readonly hotWaiters = new Map<string, (() => void)[]>();
  /**
   * Hot queues whose last answer's handlers had all finished by the time its lane went on
   * (synchronous or at-once handlers): one request in flight carrying every free slot serves
   * them better than several sharing the slots (the server's cost is per request), so the
   * other lanes rest until an answer's handlers take time again.
   */
  private readonly quickQueues = new Set<string>();
  private readonly refresher: RefreshRunner;
  private readonly loopState = new Map<string, LoopState>();
  /** Queues whose second lane has a LeaseTasks call in flight. */
  private readonly secondFast = new Set<string>();
  private readonly laneWaiters = new Map<string, (() => void)[]>();

  /** Tasks held here (running, or their outcome being reported), by task id and by job id. */
  private readonly tasks = new ChurnMap<string, Running>();
  private readonly byJob = new ChurnMap<string, Running>();
  private busy = 0;       // handlers running
  private reserved = 0;   // slots promised to lease calls in flight
  private reporting = 0;  // outcomes not yet acknowledged
  private slotWaiters: (() => void)[] = [];
  /** Slot waiters woken by notifySlots that have not yet looked at the free slots. */
  private wokenWaiters = 0;
  /**
   * Most reports per call: maxReportBatch, halved each time the server refuses a batch as a
   * whole for having more reports than its max_lease_batch.
   */
  private reportCap: number;
  /** The server's max_lease_batch (GetNodeInfo at start; until it answers, the default). */
  private leaseCap = MAX_LEASE_BATCH;
  /**
   * Most outcome bytes per request: half the server's request cap, at most 4 MiB; halved
   * each time the server refuses a batch as a whole for being over its request cap.
   */
  private reportBudget = MAX_REPORT_BYTES;
  private idleWaiters: (() => void)[] = [];
  private readonly reportQueue: Running[] = [];
  private flushing = false;
  private flushFailures = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private lingerDue = 0;

  private started = false;
  private stopping = false;
  /** stop() has finished: nothing is reported or retried any more. */
  private stopped = false;
  private stopPromise: Promise<StopResult> | undefined;
  private readonly pollAbort = new AbortController();
  private loops: Promise<void>[] = [];
  private readonly counters: Omit<WorkerMetrics, 'running' | 'reporting' | 'waiting'> = {
    leased: 0, waited: 0, succeeded: 0, failed: 0, cancelled: 0, leaseLost: 0, duplicates: 0,
    leaseCalls: 0, leaseErrors: 0, heartbeats: 0, heartbeatErrors: 0, heartbeatsLate: 0,
    reportCalls: 0, reportErrors: 0, leaseReportCalls: 0, reportsWithLease: 0, reportsAlone: 0,
    reportsRecovered: 0, refreshesReported: 0, refreshesFailed: 0,
  };

  constructor(client: SluiceClient, options: WorkerOptions) {
    super();
    const queues = typeof options.queues === 'string' ? [options.queues] : [...options.queues];
    if (queues.length === 0 || queues.some((q) => typeof q !== 'string' || q === '')) {
      throw new TypeError('Worker: queues must name at least one non-empty queue');
    }
    if (typeof options.handler !== 'function') throw new TypeError('Worker: handler is required');
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError('Worker: concurrency must be an integer >= 1');
    }
    this.client = client;
    this.queues = queues;
    this.handler = options.handler;
    this.concurrency = concurrency;
    this.workerId = options.workerId ?? defaultWorkerId();
    this.tenant = options.tenant ?? client.tenant;
    this.leaseWaitMs = options.leaseWaitMs ?? (queues.length > 1 ? 2_000 : 30_000);
    this.backoff = resolveRetry(options.errorBackoff,
      { maxAttempts: Infinity, initialBackoffMs: 100, maxBackoffMs: 5_000, multiplier: 2 });
    this.maxReportBatch = options.maxReportBatch ?? 256;
    this.reportCap = this.maxReportBatch;
    if (!Number.isInteger(this.maxReportBatch) || this.maxReportBatch < 1) {
      throw new RangeError('Worker: maxReportBatch must be an integer >= 1');
    }
    this.reportWithLease = options.reportWithLease ?? true;
    this.useStream = options.leaseStream ?? true;
    this.pipeline = options.leasePipeline ?? (this.useStream ? 2 : 1);
    if (!Number.isInteger(this.pipeline) || this.pipeline < 1) {
      throw new RangeError('Worker: leasePipeline must be an integer >= 1');
    }
    this.prefetch = options.prefetch ?? 2 * concurrency;
    if (!Number.isInteger(this.prefetch) || this.prefetch < 0) {
      throw new RangeError('Worker: prefetch must be an integer >= 0');
    }
    this.prefetchLanes = this.prefetch > 0 && queues.length === 1
      ? Math.min(4, 1 + Math.ceil(this.prefetch / concurrency)) : 1;
    this.lingerMs = options.reportLingerMs ?? 10;
    if (!(this.lingerMs >= 0)) throw new RangeError('Worker: reportLingerMs must be >= 0');
    const refreshTimeoutMs = options.refreshTimeoutMs ?? 60_000;
    if (!(refreshTimeoutMs >= 0 && refreshTimeoutMs <= MAX_TIMER_MS)) {
      // (setTimeout takes a longer delay as 1 ms)
      throw new RangeError(`Worker: refreshTimeoutMs must be in 0..${MAX_TIMER_MS}`);
    }
    this.refresher = new RefreshRunner(client, options.refresh, this.workerId, refreshTimeoutMs, {
      onDone: (kind, rt, detail) => this.onRefreshDone(kind, rt, detail),
      onError: (e, key) => this.emitError(e, { op: 'refresh', key }),
    });
    if (options.autostart ?? true) this.start();
  }

  /** Starts leasing (once; the constructor does it unless autostart is false). */
  start(): this {
    if (this.stopping) throw new Error('Worker: start() after stop()');
    if (this.started) return this;
    this.started = true;
    // The server's limits size the requests (the loops start at once with the defaults; a
    // lease refused meanwhile is retried after a backoff, and a refused report batch is split).
    this.client.getNodeInfo({ tenant: this.tenant }).then((info) => {
      if (info.limits.maxLeaseBatch > 0) this.leaseCap = info.limits.maxLeaseBatch;
      if (info.limits.maxMessageBytes > 0) {  // never above what a refusal taught meanwhile
        this.reportBudget = Math.min(this.reportBudget,
          Math.max(1024, Math.floor(info.limits.maxMessageBytes / 2)));
      }
    }, () => { /* unreachable server: the lease loops say so, and the defaults stay */ });
    this.loops = this.queues.map((q) => this.leaseLoop(q).catch((e: unknown) => {
      this.emitError(e, { op: 'lease', queue: q });  // a bug: the loop ended
    }));
    for (const q of this.queues) this.hotWaiters.set(q, []);
    for (let lane = 1; lane < Math.max(this.pipeline, this.prefetchLanes); ++lane) {
      for (const q of this.queues) {
        this.loops.push(this.leaseRounds(q, lane).catch((e: unknown) => {
          this.emitError(e, { op: 'lease', queue: q });  // a bug: the lane ended
        }));
      }
    }
    if (this.reportWithLease) {
      for (const q of this.queues) {
        this.laneWaiters.set(q, []);
        this.loops.push(this.secondLane(q).catch((e: unknown) => {
          this.emitError(e, { op: 'lease', queue: q });  // a bug: the lane ended
        }));
      }
    }
    return this;
  }

  /** Handlers running now. */
  get running(): number {
    return this.busy;
  }

  metrics(): WorkerMetrics {
    return { running: this.busy, reporting: this.reporting, waiting: this.waiting.length, ...this.counters };
  }

  /**
   * Stops leasing at once (long-polls in flight are cancelled), lets running handlers finish
   * and their outcomes be reported, and resolves when that is done. After `timeoutMs` (default
   * 30 s) the handlers still running get their signal aborted (WorkerStoppedError) and `graceMs`
   * (default 1 s) more to end (they are reported as failed with code "worker_stopped", which the
   * server retries); whatever is still unfinished then is abandoned: no heartbeats, no reports,
   * so its lease expires and the job runs again. Calling stop() again returns the same promise.
   * `Infinity` (or any wait beyond a timer's range, about 24.8 days) waits as long as it takes;
   * a negative or NaN wait rejects with RangeError and stops nothing.
   */
  stop(opts: { timeoutMs?: number; graceMs?: number } = {}): Promise<StopResult> {
    if (this.stopPromise === undefined) {
      const timeoutMs = opts.timeoutMs ?? 30_000;
      const graceMs = opts.graceMs ?? 1_000;
      for (const [name, v] of [['timeoutMs', timeoutMs], ['graceMs', graceMs]] as const) {
        if (!(typeof v === 'number' && v >= 0)) {
          return Promise.reject(new RangeError(`Worker.stop: ${name} must be a number >= 0`));
        }
      }
      this.stopPromise = this.doStop(timeoutMs, graceMs);
    }
    return this.stopPromise;
  }

  // ---- Leasing -------------------------------------------------------------------------------

  private async leaseLoop(queue: string): Promise<void> {
    try {
      await this.leaseRounds(queue, 0);
    } finally {
      this.setLoopState(queue, 'done');
    }
  }

  /**
   * One lease lane of a queue. Lane 0 leases whenever it has free slots, long-polling when it
   * carries no reports. The other lanes (leasePipeline > 1) lease only while the queue's work
   * flows (its last answer had tasks), never long-poll, and stop at an empty answer until lane 0
   * finds work again. While work flows each call asks for at most its share of the slots; while
   * the queue prefetches, prefetchLanes lanes each ask for up to `concurrency` tasks.
   */
  private async leaseRounds(queue: string, lane: number): Promise<void> {
    let failures = 0;
    let hot = this.queues.length === 1;  // the last lease returned work
    const share = Math.ceil(this.concurrency / this.pipeline);
    while (!this.stopping) {
      if (lane > 0 && !this.laneWanted(queue, lane)) {
        await new Promise<void>((r) => this.hotWaiters.get(queue)!.push(r));
        continue;
      }
      if (lane === 0) this.setLoopState(queue, 'reserving');
      // (Decided again each time the lane looks at the slots: the queue may start or stop
      // prefetching while it waits for one.)
      const n = await this.reserve(hot, () => {
        if (this.prefetching(queue)) return [this.concurrency, this.prefetch];
        const flowing = this.pipeline > 1 && this.hotQueues.has(queue) && !this.quickQueues.has(queue);
        return [flowing ? share : MAX_LEASE_BATCH, 0];
      });
      if (n === 0) break;
      if (lane > 0 && !this.laneWanted(queue, lane)) {
        this.reserved -= n;
        this.notifySlots();
        continue;
      }
      const reports = this.takeReports(queue);
      const carrying = reports.length > 0;
      // Only lane 0 long-polls, and only once the queue's work stopped flowing: a request of
      // another lane queued behind a waiting one on the stream would wait for its next slice.
      const waits = lane === 0 && !carrying && !this.hotQueues.has(queue);
      if (lane === 0) this.setLoopState(queue, waits ? 'polling' : 'fast');
      let res: LeaseResponse;
      const viaStream = this.useStream;
      try {
        ++this.counters.leaseCalls;
        if (carrying) ++this.counters.leaseReportCalls;
        // A call carrying reports does not long-poll, and stop() does not cancel it: its answer
        // is what says whether the reports were applied.
        res = await this.lease(queue, {
          queue, workerId: this.workerId, maxTasks: n, waitMs: waits ? this.leaseWaitMs : 0,
          reports: carrying ? reports.map((r) => ({ task: r.task, outcome: r.outcome })) : undefined,
        }, waits ? this.pollAbort.signal : undefined);
      } catch (e) {
        this.reserved -= n;
        // Not applied, or applied with the answer lost: the report path sends them again.
        if (carrying) this.requeueAlone(reports, true);
        this.notifySlots();
        if (this.stopping) break;
        ++this.counters.leaseErrors;
        if (e instanceof UnimplementedError && viaStream) {
          // A server without LeaseStream: a LeaseTasks call per lease from now on (said once;
          // another lane may have met the same answer).
          if (this.useStream) {
            this.useStream = false;
            this.emitError(new SluiceError('the server has no LeaseStream; leasing with ' +
              'LeaseTasks calls from now on', { grpcCode: GrpcCode.UNIMPLEMENTED, cause: e }),
            { op: 'lease', queue });
          }
          continue;
        }
        this.emitError(e, { op: 'lease', queue });
        if (lane === 0) this.setLoopState(queue, 'backoff');
        try {
          await sleep(backoffMs(this.backoff, ++failures), this.pollAbort.signal);
        } catch {
          break;  // stopping
        }
        continue;
      }
      failures = 0;
      this.reserved -= n;
      hot = res.tasks.length > 0;
      if (hot) {
        if (!this.hotQueues.has(queue)) {
          this.hotQueues.add(queue);
          this.wakeHot(queue);
        }
      } else {
        this.hotQueues.delete(queue);
      }
      this.leased(queue, reports, res);
      // Let handlers that finished at once (their settlement is a microtask away) free their
      // slots and queue their outcomes first, so the next lease asks for all of them and
      // reports them in one call.
      if (res.tasks.length > 0) {
        await null;
        if (this.pipeline > 1 || this.prefetch > 0) this.noteQuick(queue, res.tasks);
      }
      this.notifySlots();
    }
  }

  /**
   * Whether a lane other than 0 should lease now: the queue prefetches (a prefetch lane), or its
   * work flows and takes time (a pipeline lane).
   */
  private laneWanted(queue: string, lane: number): boolean {
    if (this.prefetching(queue)) return lane < this.prefetchLanes;
    return lane < this.pipeline && this.hotQueues.has(queue) && !this.quickQueues.has(queue);
  }

  /**
   * Whether the queue leases ahead of free slots now: its work flows and finishes at once. Only
   * a Worker of one queue does: the slots held ahead would keep them from its other queues.
   */
  private prefetching(queue: string): boolean {
    return this.prefetch > 0 && this.queues.length === 1 && !this.stopping &&
      this.hotQueues.has(queue) && this.quickQueues.has(queue);
  }

  /**
   * Marks the queue quick when every task an answer started here has finished already (see
   * quickQueues). Tasks it did not start (duplicates of running ones, leases already lost) do
   * not count; an answer that started none leaves the mark as it was.
   */
  private noteQuick(queue: string, tasks: Task[]): void {
    let judged = 0;
    let running = false;
    for (const t of tasks) {
      const r = this.tasks.get(t.taskId);
      if (r === undefined || r.task !== t) continue;
      ++judged;
      // Still running, or waiting for a slot the handlers before it still hold: handlers take
      // time (no prefetch then: tasks leased ahead would wait on them).
      if (r.phase === 'running' || r.phase === 'waiting') {
        running = true;
        break;
      }
    }
    if (judged === 0) return;
    if (!running) {
      if (!this.quickQueues.has(queue)) {
        this.quickQueues.add(queue);
        if (this.prefetchLanes > 1) this.wakeHot(queue);  // the prefetch lanes lease
      }
    } else if (this.quickQueues.delete(queue)) {
      this.wakeHot(queue);  // the resting lanes lease again
    }
  }

  /** One lease: on the queue's stream (opened on demand), or a LeaseTasks call. */
  private lease(queue: string, req: LeaseRequest, signal: AbortSignal | undefined):
  Promise<LeaseResponse> {
    if (!this.useStream) return this.client.leaseTasks(req, { tenant: this.tenant, signal });
    let stream = this.streams.get(queue);
    if (stream === undefined || stream.ended) {
      try {
        stream = this.client.leaseStream({ tenant: this.tenant });
      } catch (e) {
        return Promise.reject(e);
      }
      this.streams.set(queue, stream);
    }
    return stream.lease(req, { signal });
  }

  private wakeHot(queue: string): void {
    const w = this.hotWaiters.get(queue);
    if (w === undefined || w.length === 0) return;
    this.hotWaiters.set(queue, []);
    for (const f of w) f();
  }

  /** Takes in a LeaseTasks answer: its reports' statuses, then its refreshes and tasks. */
  private leased(queue: string, reports: Running[], res: LeaseResponse): void {
    if (reports.length > 0) this.leaseReported(queue, reports, res.reportStatuses);
    for (const rt of res.refreshes) this.refresher.start(rt);
    // The lease was granted between sentAt and now: a long-poll may have waited 30 s before
    // it, so the local lease clock starts now (late by one network hop at most; the server
    // fences every call by token anyway). Heartbeats restart it from their send time.
    const receivedAt = now();
    for (const t of res.tasks) this.startTask(t, receivedAt);
  }

  /**
   * How many outcomes the queue's second lane should send now: those of the queue that wait
   * for a lease while its first loop has a call in flight (else 0).
   */
  private secondDue(queue: string): number {
    if (!this.reportWithLease || !this.leaseTakesReports || this.stopping ||
        this.secondFast.has(queue)) return 0;
    const state = this.loopState.get(queue);
    // With a pipeline, the other lease lanes take outcomes while work flows (unless they rest
    // because the queue is quick: then, as with one lane, this lane sends them); so do the
    // prefetch lanes while the queue prefetches.
    const othersCarry = this.prefetching(queue) ||
      (this.pipeline > 1 && !this.quickQueues.has(queue));
    if (state !== 'polling' && (state !== 'fast' || othersCarry)) return 0;
    let n = 0;
    for (const r of this.reportQueue) if (!r.direct && r.task.queue === queue) ++n;
    return n;
  }

  private wakeLane(queue: string): void {
    const w = this.laneWaiters.get(queue);
    if (w === undefined || w.length === 0) return;
    this.laneWaiters.set(queue, []);
    for (const f of w) f();
  }

  /**
   * A queue's second lane: while the first loop's call is in flight (a long-poll, or a call
   * carrying reports), outcomes that finished meanwhile go at once on a LeaseTasks of their
   * own (waitMs 0) that asks for as many tasks as they freed slots, instead of waiting for
   * that call to come back: two report-and-fetch round trips overlap. It never long-polls.
   */
  private async secondLane(queue: string): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      const due = this.secondDue(queue);
      if (due === 0) {
        await new Promise<void>((r) => this.laneWaiters.get(queue)!.push(r));
        continue;
      }
      const n = await this.reserve(true, () => [due, 0]);
      if (n === 0) break;  // stopping
      const reports = this.secondDue(queue) > 0 ? this.takeReports(queue) : [];
      if (reports.length === 0) {
        this.reserved -= n;
        this.notifySlots();
        continue;
      }
      this.secondFast.add(queue);
      let res: LeaseResponse;
      try {
        ++this.counters.leaseCalls;
        ++this.counters.leaseReportCalls;
        res = await this.client.leaseTasks(
          { queue, workerId: this.workerId, maxTasks: n, waitMs: 0,
            reports: reports.map((r) => ({ task: r.task, outcome: r.outcome })) },
          { tenant: this.tenant });
      } catch (e) {
        this.secondFast.delete(queue);
        this.reserved -= n;
        this.requeueAlone(reports, true);
        this.notifySlots();
        if (this.stopping) break;
        ++this.counters.leaseErrors;
        this.emitError(e, { op: 'lease', queue });
        try {
          await sleep(backoffMs(this.backoff, ++failures), this.pollAbort.signal);
        } catch {
          break;  // stopping
        }
        continue;
      }
      this.secondFast.delete(queue);
      failures = 0;
      this.reserved -= n;
      this.leased(queue, reports, res);
      if (res.tasks.length > 0) await null;
      this.notifySlots();
      this.flushReports();  // what waited on this call now waits at most the linger
    }
  }

  private setLoopState(queue: string, state: LoopState): void {
    this.loopState.set(queue, state);
    if (state === 'fast' || state === 'polling') this.wakeLane(queue);
    // A loop that will not lease for a while sends nothing: its queue's outcomes go alone.
    if (state === 'backoff' || state === 'done') this.flushReports();
  }

  /**
   * Waits for free slots and reserves them for one lease call: all free slots for the only
   * queue or a queue whose last lease returned work; a fair share for an idle one among many.
   * Returns 0 when stopping.
   */
  private async reserve(hot: boolean,
    plan: () => [most: number, ahead: number] = () => [MAX_LEASE_BATCH, 0]): Promise<number> {
    let woken = false;
    for (;;) {
      if (this.stopping) return 0;
      const [most, ahead] = plan();
      // Handlers are capped at `concurrency`, plus `ahead` tasks leased ahead (waiting here or
      // in flight); leases held (running, waiting, or awaiting acknowledgement) at 4x the
      // concurrency or twice that sum, so a slow server stops the leasing instead of piling up
      // outcomes.
      const held = this.busy + this.waiting.length + this.reserved;
      const free = Math.min(this.concurrency + ahead - held,
        Math.max(4 * this.concurrency, 2 * (this.concurrency + ahead)) - held - this.reporting);
      if (free > 0 && !woken && this.wokenWaiters > 0 && this.queues.length > 1) {
        // Slots go round: a loop that gave its slots back and asks again at once (after an
        // empty long-poll, or handlers that finished at once) lets the loops its release woke
        // take them first (they resume before the next macrotask), or one queue would keep
        // every slot from the others.
        await new Promise<void>((r) => setImmediate(r));
        continue;
      }
      if (free > 0) {
        const share = this.queues.length === 1 || hot
          ? free : Math.max(1, Math.floor(free / this.queues.length));
        const n = Math.min(share, most, this.leaseCap);
        this.reserved += n;
        return n;
      }
      // No lease soon: outcomes that waited long enough for one go alone.
      this.flushReports();
      await new Promise<void>((r) => this.slotWaiters.push(r));
      --this.wokenWaiters;
      woken = true;
    }
  }

  private notifySlots(): void {
    if (this.slotWaiters.length > 0) {
      const w = this.slotWaiters;
      this.slotWaiters = [];
      this.wokenWaiters += w.length;
      for (const f of w) f();
    }
    if (this.tasks.size === 0 && this.busy === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  // ---- Running tasks -------------------------------------------------------------------------

  private startTask(task: Task, leasedAt: number): void {
    if (this.tasks.has(task.taskId)) {
      ++this.counters.duplicates;
      this.safeEmit('duplicate', task);
      return;
    }
    // A newer attempt of a job still running here proves the older lease is gone. One whose
    // outcome is being reported is left to its report's answer: the newer attempt may be the
    // retry that very report asked for.
    const older = this.byJob.get(task.jobId);
    if (older && (older.phase === 'running' || older.phase === 'waiting')) {
      this.loseLease(older, 'superseded');
    }
    const r: Running = {
      task, ctl: new LazyAbort(), phase: 'waiting', lost: false, cancelRequested: false,
      stopAborted: false, startedAt: 0, expiresAt: leasedAt + task.leaseMs, leasedAt,
      timer: undefined, timerDue: 0, hbFailures: 0, inFlight: false, queuedAt: 0, direct: false,
      maybeApplied: false, splitCap: Infinity, untoldLoss: undefined,
    };
    this.tasks.set(task.taskId, r);
    this.byJob.set(task.jobId, r);
    ++this.counters.leased;
    this.scheduleHeartbeat(r, this.heartbeatInterval(r));
    if (this.busy < this.concurrency && this.waiting.length === 0) {
      this.run(r);
    } else {
      // Leased ahead (prefetch), or more than the free slots (a server bug): never more than
      // `concurrency` handlers at once.
      ++this.counters.waited;
      this.waiting.push(r);
    }
  }

  /** Takes a task out of the tasks waiting for a slot. */
  private unwait(r: Running): void {
    const i = this.waiting.indexOf(r);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  /** Starts waiting tasks while handler slots are free. */
  private runWaiting(): void {
    while (this.busy < this.concurrency && this.waiting.length > 0 && !this.noMoreStarts) {
      this.run(this.waiting.shift()!);
    }
  }

  /**
   * Runs a held task's handler; one whose cancellation was requested while it waited is reported
   * cancelled without running (taking no slot: it may be called with every slot taken).
   */
  private run(r: Running): void {
    const task = r.task;
    r.phase = 'running';
    r.startedAt = now();
    ++this.busy;
    if (r.cancelRequested) {
      this.handlerDone(r, () => ({ kind: 'cancelled' }), undefined);
      return;
    }
    this.safeEmit('active', task);
    let result: Promise<unknown>;
    try {
      result = Promise.resolve(this.handler(makeContext(task, r.ctl)));
    } catch (e) {
      result = Promise.reject(e);
    }
    result.then(
      (v) => this.handlerDone(r, () => successOutcome(v), undefined),
      (e: unknown) => this.handlerDone(r, () => (r.stopAborted && !r.cancelRequested
        ? { kind: 'failure', code: 'worker_stopped', message: String((e as Error)?.message ?? e) }
        : thrownOutcome(e, r.cancelRequested)), e),
    ).catch((e: unknown) => this.emitError(e, { op: 'report', taskId: task.taskId }));
  }

  private handlerDone(r: Running, outcome: () => Outcome, thrown: unknown): void {
    --this.busy;
    if (r.lost || r.phase === 'done') {
      this.runWaiting();
      this.notifySlots();
      return;
    }
    try {
      r.outcome = outcome();
    } catch (e) {
      // The return value could not be encoded (e.g. not JSON-serializable): a failure.
      r.outcome = thrownOutcome(e, r.cancelRequested);
      thrown = e;
    }
    r.thrown = thrown;
    r.phase = 'reporting';
    ++this.reporting;
    this.queueReport(r);
    this.runWaiting();
    this.notifySlots();
    this.flushReports();
  }

  private heartbeatInterval(r: Running): number {
    return Math.max(MIN_HEARTBEAT_MS, r.task.leaseMs / 3);
  }

  private scheduleHeartbeat(r: Running, delay: number): void {
    r.timerDue = now() + delay;
    r.timer = setTimeout(() => void this.heartbeat(r), delay);
  }

  private async heartbeat(r: Running): Promise<void> {
    r.timer = undefined;
    if (gone(r)) return;
    const sentAt = now();
    const interval = this.heartbeatInterval(r);
    // (Half an interval early: the timers run a little early or late; the third heartbeat of a
    // lease is due at about its end.)
    if (r.phase === 'waiting' && sentAt - r.leasedAt >= r.task.leaseMs - interval / 2) {
      // Leased ahead and still waiting for a slot after a whole lease (the handlers before it
      // hang): let the lease lapse, so the job runs elsewhere instead of waiting here.
      this.loseLease(r, 'expired');
      return;
    }
    if (sentAt - r.timerDue > interval) ++this.counters.heartbeatsLate;
    const left = r.expiresAt - sentAt;
    if (left <= 0) {
      this.loseLease(r, 'expired');
      return;
    }
    try {
      const hb = await this.client.heartbeat(r.task,
        { tenant: this.tenant, timeoutMs: left, attemptTimeoutMs: Math.min(left, interval) });
      if (gone(r)) return;
      ++this.counters.heartbeats;
      r.hbFailures = 0;
      r.expiresAt = sentAt + r.task.leaseMs;
      if (hb.cancelRequested && !r.cancelRequested) {
        r.cancelRequested = true;
        this.safeEmit('cancelRequested', r.task);
        r.ctl.abort(new CancelRequestedError(r.task.jobId));
        if (r.phase === 'waiting') {
          // Not started yet: report it cancelled now, without running it.
          this.unwait(r);
          this.run(r);  // (heartbeats go on while the outcome is reported)
        }
      }
      this.scheduleHeartbeat(r, interval);
    } catch (e) {
      if (gone(r)) return;
      if (e instanceof LeaseLostError) {
        // While an outcome is being reported, its answer decides (the report may have ended
        // the lease a moment ago); otherwise the lease is gone.
        if (r.phase === 'reporting') return;
        this.loseLease(r, 'heartbeat');
        return;
      }
      ++this.counters.heartbeatErrors;
      this.emitError(e, { op: 'heartbeat', taskId: r.task.taskId, jobId: r.task.jobId });
      const remaining = r.expiresAt - now();
      if (remaining <= 0) {
        this.loseLease(r, 'expired');
        return;
      }
      // Try again sooner than usual, but more than once before the lease runs out.
      this.scheduleHeartbeat(r, Math.max(MIN_HEARTBEAT_MS,
        Math.min(interval, backoffMs(this.backoff, ++r.hbFailures), remaining / 3)));
    }
  }

  /**
   * The lease is gone: abort the handler, stop heartbeating, never report. A report already in
   * flight is left to its answer: the server may have taken the outcome before the lease ran out
   * by its clock, and then the task completed (one event, not leaseLost as well).
   */
  private loseLease(r: Running, reason: LeaseLostReason): void {
    if (gone(r)) return;
    r.lost = true;
    if (r.phase === 'reporting' && r.inFlight && reason !== 'stopped') {
      r.untoldLoss = reason;
      return;
    }
    ++this.counters.leaseLost;
    if (r.phase === 'running') {
      r.ctl.abort(reason === 'stopped' ? new WorkerStoppedError()
        : new LeaseLostError(`task "${r.task.taskId}": lease lost (${reason})`,
          { grpcCode: 9, sluiceCode: 'lease_lost' }));
    }
    if (r.phase === 'reporting' && !r.inFlight) {
      const i = this.reportQueue.indexOf(r);
      if (i >= 0) this.reportQueue.splice(i, 1);
    }
    if (r.phase === 'waiting') this.unwait(r);
    this.safeEmit('leaseLost', r.task, reason);
    if (r.phase === 'reporting' && !r.inFlight) this.finish(r);
    else if (r.phase === 'running') this.release(r);
    else if (r.phase === 'waiting') {
      r.phase = 'done';  // never started
      this.release(r);
    }
  }

  /** Forgets a task whose handler is still running after its lease was lost. */
  private release(r: Running): void {
    if (r.timer) clearTimeout(r.timer);
    r.timer = undefined;
    this.tasks.delete(r.task.taskId);
    if (this.byJob.get(r.task.jobId) === r) this.byJob.delete(r.task.jobId);
    this.notifySlots();
  }

  private finish(r: Running): void {
    if (r.phase === 'reporting') --this.reporting;
    r.phase = 'done';
    this.release(r);
    if (r.untoldLoss !== undefined) {
      // Lost by the local clock while its report was in flight, and the answer did not say the
      // server took the outcome.
      const reason = r.untoldLoss;
      r.untoldLoss = undefined;
      ++this.counters.leaseLost;
      this.safeEmit('leaseLost', r.task, reason);
    }
  }

  // ---- Reporting -----------------------------------------------------------------------------

  private queueReport(r: Running): void {
    r.queuedAt = now();
    this.reportQueue.push(r);
    this.wakeLane(r.task.queue);
  }

  /**
   * When (local clock) a queued outcome goes alone with ReportOutcomes rather than on its
   * queue's next LeaseTasks; Infinity: not while things stay as they are. At once when
   * piggybacking is off or failed for it, when stopping, and when its loop backs off or ended;
   * never while a call of its queue that does not long-poll is in flight (the next call takes
   * it); else once it waited reportLingerMs for a loop that is out of slots or in a long-poll.
   */
  private aloneAt(r: Running): number {
    if (r.direct || this.stopping || !this.reportWithLease || !this.leaseTakesReports) return 0;
    const state = this.loopState.get(r.task.queue);
    if (state === 'fast' || this.secondFast.has(r.task.queue)) return Infinity;
    if (state !== 'reserving' && state !== 'polling') return 0;
    return r.queuedAt + this.lingerMs;
  }

  /** Takes the queue's waiting outcomes for its next LeaseTasks call (marked in flight). */
  private takeReports(queue: string): Running[] {
    if (!this.reportWithLease || !this.leaseTakesReports || this.reportQueue.length === 0) return [];
    const out: Running[] = [];
    let keep = 0;
    let bytes = 0;
    let limit = Math.min(this.reportCap, this.leaseCap);
    for (const r of this.reportQueue) {
      if (out.length < Math.min(limit, r.splitCap) && !r.direct && r.task.queue === queue &&
          (out.length === 0 || bytes + outcomeBytes(r.outcome!) <= this.reportBudget)) {
        limit = Math.min(limit, r.splitCap);
        r.inFlight = true;
        bytes += outcomeBytes(r.outcome!);
        out.push(r);
      } else {
        this.reportQueue[keep++] = r;
      }
    }
    this.reportQueue.length = keep;
    return out;
  }

  /** The answers to the reports a LeaseTasks call carried. */
  private leaseReported(queue: string, batch: Running[], statuses: (SluiceError | null)[]): void {
    if (statuses.length !== batch.length) {
      // A server that predates LeaseTasks reports ignored them: report alone from now on (said
      // once; the second lane may have had such a call in flight too).
      if (this.leaseTakesReports) {
        this.emitError(new SluiceError(
          `LeaseTasks answered ${statuses.length} statuses for ${batch.length} reports; ` +
          'reporting with ReportOutcomes from now on', { grpcCode: GrpcCode.UNIMPLEMENTED }),
        { op: 'report', queue });
      }
      this.leaseTakesReports = false;
      this.requeueAlone(batch, statuses.length > 0);
      return;
    }
    this.counters.reportsWithLease += batch.length;
    batch.forEach((r, i) => this.reported(r, statuses[i] ?? null));
    this.flushReports();
  }

  /** Reports whose LeaseTasks call failed go by ReportOutcomes. */
  private requeueAlone(batch: Running[], maybeApplied: boolean): void {
    for (const r of batch) {
      r.inFlight = false;
      if (r.phase !== 'reporting') continue;
      if (r.lost) {
        this.finish(r);
        continue;
      }
      r.direct = true;
      if (maybeApplied) r.maybeApplied = true;
      this.queueReport(r);
    }
    this.flushReports();
  }

  /** Re-checks waiting outcomes at the first moment one of them stops waiting for a lease. */
  private armLinger(due: number): void {
    if (due === Infinity || (this.lingerTimer && this.lingerDue <= due)) return;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerDue = due;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      this.flushReports();
    }, Math.max(0, due - now()));
  }

  /**
   * Sends the queued outcomes that go alone: one ReportOutcomes call at a time; what queues
   * meanwhile rides the next. The others wait for their queue's next LeaseTasks call.
   */
  private flushReports(): void {
    if (this.flushing || this.flushTimer || this.reportQueue.length === 0) return;
    const t = now();
    const batch: Running[] = [];
    let keep = 0;
    let due = Infinity;
    let bytes = 0;
    let limit = Math.min(this.reportCap, this.leaseCap);
    for (const r of this.reportQueue) {
      const at = this.aloneAt(r);
      if (batch.length < Math.min(limit, r.splitCap) && at <= t &&
          (batch.length === 0 || bytes + outcomeBytes(r.outcome!) <= this.reportBudget)) {
        limit = Math.min(limit, r.splitCap);
        bytes += outcomeBytes(r.outcome!);
        batch.push(r);
        continue;
      }
      this.reportQueue[keep++] = r;
      if (at > t) due = Math.min(due, at);
    }
    this.reportQueue.length = keep;
    this.armLinger(due);
    if (batch.length === 0) return;
    this.flushing = true;
    for (const r of batch) r.inFlight = true;
    ++this.counters.reportCalls;
    this.counters.reportsAlone += batch.length;
    this.client.reportOutcomes(batch.map((r) => ({ task: r.task, outcome: r.outcome })),
      { tenant: this.tenant })
      .then((statuses) => {
        this.flushFailures = 0;
        batch.forEach((r, i) => this.reported(r, statuses[i] ?? null));
      }, (e: unknown) => {
        ++this.counters.reportErrors;
        this.emitError(e, { op: 'report' });
        // Refused as a whole, nothing applied: RESOURCE_EXHAUSTED `too_large` says the batch
        // has more reports than the server's max_lease_batch, without a code that the request
        // is over its --max-message-bytes. The outcomes go again in halves (splitCap), which
        // always gets through, and the limit the refusal names is kept for later requests. A
        // lone report refused so is that report's own answer, unless an earlier try of the
        // call (the client retries transient failures) may have landed. A request far below
        // any message cap (at least 1 KiB) refused without a code is an older sluiced's
        // overload answer: retried like a transient failure.
        const overload = e instanceof TooLargeError && !e.serverCode && batchBytes(batch) < 512;
        const retry = isTransient(e) || overload;
        const refused = e instanceof TooLargeError && !overload;
        const earlierTry = e instanceof SluiceError && e.attempts > 1;
        if (refused && batch.length > 1) {
          const half = Math.floor(batch.length / 2);
          if (e.serverCode && e.code === 'too_large') {
            this.reportCap = Math.max(1, Math.min(this.reportCap, half));
          } else if (batchBytes(batch) / 2 >= 1024) {
            this.reportBudget = Math.min(this.reportBudget, Math.floor(batchBytes(batch) / 2));
          }
        }
        for (const r of batch) {
          r.inFlight = false;
          if (r.phase !== 'reporting') continue;
          if (r.lost) this.finish(r);
          else if (retry) {
            r.maybeApplied = true;  // the answer may be what was lost
            this.queueReport(r);
          } else if (refused && (batch.length > 1 || earlierTry)) {
            if (earlierTry) r.maybeApplied = true;
            r.splitCap = Math.max(1, Math.floor(batch.length / 2));
            this.queueReport(r);
          } else if (refused) this.reported(r, e);
          else this.finish(r);  // not retryable: the lease will expire and the job retry
        }
        // (After stop() has returned nothing is reported any more: no timer keeps the process.)
        if (retry && !this.stopped) {
          this.flushTimer = setTimeout(() => {
            this.flushTimer = undefined;
            this.flushReports();
          }, backoffMs(this.backoff, ++this.flushFailures));
        }
      })
      .catch((e: unknown) => this.emitError(e, { op: 'report' }))
      .finally(() => {
        this.flushing = false;
        this.flushReports();
      });
  }

  /** Handles one report's answer. */
  private reported(r: Running, err: SluiceError | null): void {
    r.inFlight = false;
    if (r.phase !== 'reporting') return;
    if (err === null) {
      this.acknowledged(r);
      return;
    }
    const o = r.outcome!;
    if (r.lost && !(err instanceof LeaseLostError)) {
      // Lost here while the report was in flight: it is not sent again.
      this.emitError(err, { op: 'report', taskId: r.task.taskId, jobId: r.task.jobId });
      this.finish(r);
      return;
    }
    if (err instanceof LeaseLostError) {
      if ((err.attempts > 1 || r.maybeApplied) && (!r.lost || r.untoldLoss !== undefined)) {
        // An earlier try of this call (or a LeaseTasks call that carried it) may have landed
        // and only its answer been lost: the attempt's record on the server says whether our
        // outcome is the one it holds (also when the lease ran out here meanwhile).
        void this.checkLanded(r);
        return;
      }
      this.lostAtReport(r);
      return;
    }
    if ((err instanceof TooLargeError || err instanceof InvalidArgumentError) && o.kind !== 'cancelled' &&
        !(o.kind === 'failure' && o.code === 'report_rejected')) {
      // The outcome itself was refused (e.g. a result over the cap): report that instead, so
      // the job does not wait for its lease to expire.
      this.emitError(err, { op: 'report', taskId: r.task.taskId, jobId: r.task.jobId });
      r.outcome = { kind: 'failure', code: 'report_rejected', message: err.message.slice(0, 4096) };
      r.thrown = err;
      this.queueReport(r);
      return;
    }
    this.emitError(err, { op: 'report', taskId: r.task.taskId, jobId: r.task.jobId });
    if (isTransient(err)) this.queueReport(r);
    else this.finish(r);
  }

  /** The server holds this task's outcome: count it and tell the listeners. */
  private acknowledged(r: Running): void {
    const ms = now() - r.startedAt;
    const o = r.outcome!;
    r.untoldLoss = undefined;  // the server took the outcome: the lease had not run out there
    this.finish(r);
    if (o.kind === 'success') {
      ++this.counters.succeeded;
      this.safeEmit('completed', r.task, o.result as Buffer, ms);
    } else if (o.kind === 'failure') {
      ++this.counters.failed;
      this.safeEmit('failed', r.task, r.thrown ?? new Error(o.code), ms);
    } else {
      ++this.counters.cancelled;
      this.safeEmit('cancelled', r.task, ms);
    }
  }

  private lostAtReport(r: Running): void {
    if (r.lost) {  // already told, or (lost while the report was in flight) finish tells it
      this.finish(r);
      return;
    }
    r.lost = true;
    ++this.counters.leaseLost;
    this.finish(r);
    this.safeEmit('leaseLost', r.task, 'report');
  }

  /** After a retried report met LEASE_LOST: did an earlier try of it land? */
  private async checkLanded(r: Running): Promise<void> {
    r.inFlight = true;  // neither stop() nor a lease loss may finish it meanwhile
    if (r.timer) clearTimeout(r.timer);
    r.timer = undefined;
    const o = r.outcome!;
    let landed = false;
    try {
      const job = await this.client.getJob(r.task.jobId, { tenant: this.tenant, includeAttempts: true });
      const a = job.attempts.find((x) => x.taskId === r.task.taskId);
      landed = a !== undefined && (
        (o.kind === 'success' && a.status === 'succeeded') ||
        (o.kind === 'cancelled' && a.status === 'cancelled') ||
        (o.kind === 'failure' && a.status === 'failed' && a.errorCode === o.code));
    } catch (e) {
      this.emitError(e, { op: 'report', taskId: r.task.taskId, jobId: r.task.jobId });
    }
    r.inFlight = false;
    if (r.phase !== 'reporting') return;
    if (landed) {
      ++this.counters.reportsRecovered;
      this.acknowledged(r);
    } else {
      this.lostAtReport(r);
    }
  }

  // ---- Refreshes, events, stop ---------------------------------------------------------------

  private onRefreshDone(kind: 'refreshed' | 'refreshFailed' | 'refreshLost', rt: RefreshTask,
    detail: unknown): void {
    if (kind === 'refreshed') {
      ++this.counters.refreshesReported;
      this.safeEmit('refreshed', rt.key, detail as number);
    } else if (kind === 'refreshFailed') {
      ++this.counters.refreshesFailed;
      this.safeEmit('refreshFailed', rt.key, detail);
    }
  }

  private emitError(e: unknown, ctx: ErrorContext): void {
    if (this.listenerCount('error') > 0) this.safeEmit('error', e, ctx);
  }

  /** Emits without letting a listener's exception escape into the worker's promise chains. */
  private safeEmit<K extends keyof WorkerEvents>(name: K, ...args: WorkerEvents[K]): void {
    try {
      (this.emit as (n: K, ...a: WorkerEvents[K]) => boolean)(name, ...args);
    } catch (e) {
      if (name !== 'error' && this.listenerCount('error') > 0) {
        try {
          this.emit('error', e, { op: 'listener' });
        } catch { /* a throwing error listener is ignored */ }
      }
    }
  }

  /** Resolves when no handler runs and no outcome waits for its acknowledgement. */
  private idle(): Promise<void> {
    if (this.tasks.size === 0 && this.busy === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private async doStop(timeoutMs: number, graceMs: number): Promise<StopResult> {
    this.stopping = true;
    this.pollAbort.abort();
    this.notifySlots();
    for (const q of this.queues) {
      this.wakeLane(q);
      this.wakeHot(q);
    }
    this.flushReports();  // nothing waits for a lease any more
    await Promise.all(this.loops);
    // The loops are done: a request still on a stream is a long-poll nobody waits for (its
    // signal aborted while another request was in flight). Cancel it, so the server stops
    // leasing into an answer that would be dropped.
    for (const stream of this.streams.values()) {
      if (stream.inFlight > 0) stream.cancel();
      else stream.close();
    }
    this.streams.clear();
    const within = (ms: number, p: Promise<unknown>): Promise<boolean> => {
      // setTimeout takes a longer delay as 1 ms: beyond its range, wait without a timer.
      if (ms > MAX_TIMER_MS) return p.then(() => true);
      let t: NodeJS.Timeout | undefined;
      return Promise.race([
        p.then(() => true),
        new Promise<boolean>((r) => { t = setTimeout(() => r(false), ms); }),
      ]).finally(() => clearTimeout(t));
    };
    const allIdle = (): Promise<unknown> => Promise.all([this.idle(), this.refresher.idle()]);
    let drained = await within(timeoutMs, allIdle());
    if (!drained) {
      this.noMoreStarts = true;  // what still waits for a slot is abandoned below
      for (const r of this.tasks.values()) {
        if (r.phase === 'running' && !r.stopAborted) {
          r.stopAborted = true;
          r.ctl.abort(new WorkerStoppedError());
        }
      }
      this.refresher.abandon();
      drained = await within(graceMs, allIdle());
    }
    let abandoned = 0;
    for (const r of this.tasks.values()) {
      ++abandoned;
      r.inFlight = false;
      this.loseLease(r, 'stopped');
      if (r.phase !== 'done') this.finish(r);
    }
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.reportQueue.length = 0;
    this.stopped = true;
    const result = { drained: drained && abandoned === 0, abandoned };
    this.safeEmit('stopped', result);
    return result;
  }
}
