// sluice-engine: the Sluice job queue engine in-process, for Node.js.
//
// An idiomatic layer over the N-API addon (src/addon.cc), which itself calls only the C ABI
// (capi/include/sluice/sluice.h). Every engine call returns a Promise and runs off the event
// loop; leases long-poll on the addon's own threads, so waiting workers never block the loop or
// libuv's pool. Failures reject with a SluiceError subclass carrying the C status (`status`)
// and its stable name (`code`), one class per status.

/* eslint-disable @typescript-eslint/no-var-requires */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const native: NativeModule = require('../build/Release/sluice_node.node');

// ---- Errors ------------------------------------------------------------------------------------

/** Base class of every error the engine reports; `code` and `status` are stable (errors.md). */
export class SluiceError extends Error {
  /** The stable lowercase status name: "not_found", "lease_lost", ... */
  readonly code: string;
  /** The numeric sluice_status value. */
  readonly status: number;

  constructor(message: string, status: number, code: string) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
  }
}

/** No such job (or key) in this tenant. */
export class NotFoundError extends SluiceError {}
/** Malformed input; nothing changed. */
export class InvalidArgumentError extends SluiceError {}
/** A field exceeds its size limit; nothing changed. */
export class TooLargeError extends SluiceError {}
/** Stale token or expired lease: stop working on the task and never report it. */
export class LeaseLostError extends SluiceError {}
/** The job's state forbids the operation. */
export class FailedPreconditionError extends SluiceError {}
/** The engine is closed or closing. */
export class ClosedError extends SluiceError {}
/** Storage failed (io_error); the engine stopped acknowledging until reopened. */
export class StorageError extends SluiceError {}
/** Stored data could not be decoded. */
export class CorruptionError extends SluiceError {}
/** A bounded call ran out of time (a query past its timeoutMs). (Not `TimeoutError`, to avoid
 *  DOM's name.) */
export class SluiceTimeoutError extends SluiceError {}
/** Reserved. */
export class AlreadyExistsError extends SluiceError {}
/** Transient conflict; retry the call as is. */
export class BusyError extends SluiceError {}
/** An unexpected failure inside the library (a bug). */
export class InternalError extends SluiceError {}
/** Allocation failed. */
export class NoMemoryError extends SluiceError {}
/** The caller cancelled the call: a query whose AbortSignal aborted. */
export class CancelledError extends SluiceError {}

/** sluice_status values (never renumbered). */
export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  INVALID_ARGUMENT: 2,
  TOO_LARGE: 3,
  LEASE_LOST: 4,
  FAILED_PRECONDITION: 5,
  CLOSED: 6,
  IO_ERROR: 7,
  CORRUPTION: 8,
  TIMEOUT: 9,
  ALREADY_EXISTS: 10,
  BUSY: 11,
  INTERNAL: 12,
  NO_MEMORY: 13,
  CANCELLED: 14,
} as const;

type ErrorClass = new (message: string, status: number, code: string) => SluiceError;

const errorClasses: Record<number, ErrorClass> = {
  [Status.NOT_FOUND]: NotFoundError,
  [Status.INVALID_ARGUMENT]: InvalidArgumentError,
  [Status.TOO_LARGE]: TooLargeError,
  [Status.LEASE_LOST]: LeaseLostError,
  [Status.FAILED_PRECONDITION]: FailedPreconditionError,
  [Status.CLOSED]: ClosedError,
  [Status.IO_ERROR]: StorageError,
  [Status.CORRUPTION]: CorruptionError,
  [Status.TIMEOUT]: SluiceTimeoutError,
  [Status.ALREADY_EXISTS]: AlreadyExistsError,
  [Status.BUSY]: BusyError,
  [Status.INTERNAL]: InternalError,
  [Status.NO_MEMORY]: NoMemoryError,
  [Status.CANCELLED]: CancelledError,
};

/** Builds the error class for a status (unknown statuses become a plain SluiceError). */
export function errorFromStatus(status: number, message: string): SluiceError {
  const cls = errorClasses[status] ?? SluiceError;
  return new cls(message, status, native.statusName(status));
}

native.setErrorFactory((status: number, code: string, message: string) => {
  const cls = errorClasses[status] ?? SluiceError;
  return new cls(message, status, code);
});

// ---- Types -------------------------------------------------------------------------------------

/** Bytes in: a Uint8Array (Buffer) or a string, sent as UTF-8. Bytes out are always Buffers. */
export type Bytes = Uint8Array | string;

export type Durability = 'sync' | 'async';
export type JobStatus = 'scheduled' | 'waiting' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export type AttemptStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';
export type LimitKind = 'fixed' | 'floating';

/** Options of Engine.open. Omitted numbers take the engine defaults. */
export interface EngineOptions {
  /** 'sync' (default): fsync before acknowledging. 'async': survives kill -9, not power loss. */
  durability?: Durability;
  /** Lease length for jobs without leaseMs (default 30000). */
  defaultLeaseMs?: number;
  /** Background reaper period (default 100). */
  reaperIntervalMs?: number;
  /** Most tasks one lease call may return (default 1000). */
  maxLeaseBatch?: number;
  /** Payload (and result) cap in bytes (default 1 MiB). */
  maxPayloadBytes?: number;
}

/** How failed attempts are retried. Omitted fields: 3 retries, 1000 ms doubling to 60000 ms. */
export interface RetryPolicy {
  maxRetries?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  multiplier?: number;
  jitter?: boolean;
}

/** A concurrency limit of a job. */
export interface ConcurrencyLimit {
  /** 'fixed' (default) or 'floating'. */
  kind?: LimitKind;
  key: string;
  /** Fixed: the max; floating: the default max. Default 1. */
  max?: number;
  /** Floating only: how often the key's max is refreshed. */
  refreshIntervalMs?: number;
  /** Floating only: handed to refresh handlers. */
  metadata?: Record<string, string>;
}

/** A job to enqueue. */
export interface JobSpec {
  queue: string;
  /** Empty: a UUIDv7 is generated. An existing id returns the stored job (created false). */
  id?: string;
  tenant?: string;
  /** 0..99, 0 first; default 50. */
  priority?: number;
  /** Epoch ms; 0 or past: due now. */
  startAtMs?: number;
  /** Omitted: the engine default. */
  retry?: RetryPolicy;
  /** 0: the engine default. */
  leaseMs?: number;
  payload?: Bytes;
  metadata?: Record<string, string>;
  limits?: ConcurrencyLimit[];
}

export interface EnqueueResult {
  id: string;
  /** False when the id existed: the job is unchanged. */
  created: boolean;
  status: JobStatus;
}

export interface LeaseRequest {
  queue: string;
  workerId: string;
  tenant?: string;
  /** 1..maxLeaseBatch; default 1. */
  maxTasks?: number;
  /** Long-poll bound when nothing is due; default 0 (return at once). */
  waitMs?: number;
  /** Also hand out floating-limit refresh tasks. */
  withRefreshes?: boolean;
}

/** A leased attempt. Pass it back to heartbeat, complete, fail or reportCancelled. */
export interface Task {
  taskId: string;
  jobId: string;
  tenant: string;
  queue: string;
  attempt: number;
  priority: number;
  payload: Buffer;
  metadata: Record<string, string>;
  leaseToken: bigint;
  leaseExpiresMs: number;
  /** The worker id the task was leased with (heartbeats must present it). */
  workerId: string;
}

/** A floating-limit refresh: compute the key's max and report it with refreshComplete. */
export interface RefreshTask {
  tenant: string;
  key: string;
  metadata: Record<string, string>;
  currentMax: number;
  defaultMax: number;
  lastRefreshedMs: number;
  leaseToken: bigint;
  leaseExpiresMs: number;
}

export interface LeaseResponse {
  tasks: Task[];
  refreshes: RefreshTask[];
}

export interface HeartbeatResult {
  leaseExpiresMs: number;
  /** The job was cancelled: stop and call reportCancelled. */
  cancelRequested: boolean;
}

/** What a task needs to be reported: a leased Task fits. */
export interface TaskRef {
  taskId: string;
  tenant: string;
  leaseToken: bigint;
}

export interface FailureInfo {
  /** Required, e.g. "timeout" or "bad_input". */
  code: string;
  message?: string;
  data?: Bytes;
  /** Fail the job now even with retries left. */
  noRetry?: boolean;
}

export type Outcome =
  | { kind: 'success'; result?: Bytes }
  | ({ kind: 'failure' } & FailureInfo)
  | { kind: 'cancelled' };

export interface Completion {
  task: TaskRef;
  /** Default: success without a result. */
  outcome?: Outcome;
}

export interface CancelResult {
  /** 'cancelled' when it ended at once, 'running' when cancellation was requested. */
  status: JobStatus;
  cancelRequested: boolean;
}

export interface Attempt {
  number: number;
  taskId: string;
  workerId: string;
  status: AttemptStatus;
  startedMs: number;
  finishedMs: number;
  result: Buffer;
  errorCode: string;
  errorMessage: string;
  errorData: Buffer;
}

export interface Job {
  id: string;
  tenant: string;
  queue: string;
  priority: number;
  status: JobStatus;
  cancelRequested: boolean;
  startAtMs: number;
  nextRunMs: number;
  leaseMs: number;
  retry: Required<RetryPolicy>;
  payload: Buffer;
  metadata: Record<string, string>;
  limits: Required<ConcurrencyLimit>[];
  attemptCount: number;
  retriesUsed: number;
  createdMs: number;
  updatedMs: number;
  finishedMs: number;
  /** Filled only with includeAttempts. */
  attempts: Attempt[];
}

export interface JobResult {
  status: JobStatus;
  /** Whether status is terminal. */
  finished: boolean;
  result: Buffer;
  errorCode: string;
  errorMessage: string;
  errorData: Buffer;
}

export interface FloatingLimit {
  tenant: string;
  key: string;
  currentMax: number;
  defaultMax: number;
  refreshIntervalMs: number;
  lastRefreshedMs: number;
  metadata: Record<string, string>;
  consecutiveFailures: number;
  nextRefreshMs: number;
  refreshInFlight: boolean;
  holders: number;
  waiters: number;
}

export interface ConcurrencyKeyState {
  holders: number;
  waiters: number;
  max: number;
}

export interface EngineStats {
  enqueued: number;
  leased: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  retried: number;
  leaseExpired: number;
  pendingTasks: number;
  running: number;
  limitKeys: number;
  limitHolders: number;
  limitWaiters: number;
}

/** Result of a refresh task: the key's new max (0 pauses it), or a failure. */
export type RefreshOutcome = { newMax: number } | { errorCode: string; errorMessage?: string };

export interface TenantOption {
  tenant?: string;
}

/** How much of each listed job to return. */
export type JobView =
  /** id, queue, status and createdMs only, read from the index (other fields empty or 0). */
  | 'index'
  /** Every field except payload and attempts (the default). */
  | 'summary'
  /** With payload (attempts are never listed: use getJob). */
  | 'full';

/**
 * Which jobs a listing returns. Always one tenant ('' by default); every other field narrows it.
 * Indexed (no full scan): metadata, queue, statuses and the creation-time range; the first
 * metadata pair drives the scan when there is one (pass pairs to fix the order), then the queue,
 * then the statuses. idPrefix and further metadata pairs are checked on the rows the index yields.
 */
export interface JobFilter {
  tenant?: string;
  /** Omitted or '': every queue. */
  queue?: string;
  /** Omitted or empty: every status ('waiting' vs 'scheduled' is derived from the clock). */
  statuses?: JobStatus[];
  /** Exactly this job. */
  id?: string;
  /** Ids starting with this. */
  idPrefix?: string;
  /** Every pair must match. */
  metadata?: Record<string, string> | [string, string][];
  /** Inclusive, epoch ms; default 0. */
  createdFromMs?: number;
  /** Exclusive, epoch ms; default: no upper bound. */
  createdToMs?: number;
}

/** One page of a listing: a filter, an order and a page. */
export interface ListJobsRequest extends JobFilter {
  /** Newest first (by creation time, then enqueue order); default oldest first. */
  newestFirst?: boolean;
  /** Page size, 1..1000; default 50. */
  limit?: number;
  /** The previous page's nextCursor; omitted or '' for the first page. */
  cursor?: string;
  /** Default 'summary'. */
  view?: JobView;
}

/**
 * One page of jobs. A page may be shorter than the limit (even empty) while more remain: keep
 * paging while nextCursor is not ''. Paging never skips or repeats a job that matches throughout.
 */
export interface JobPage {
  jobs: Job[];
  /** '' when the listing is complete; an opaque string otherwise. */
  nextCursor: string;
  /** Index entries and records read (the call's cost). */
  keysVisited: number;
}

/** Options of Engine.iterJobs: the filter, an order, a page size and a view. */
export interface IterJobsOptions extends JobFilter {
  newestFirst?: boolean;
  /** Jobs fetched per page (1..1000); default 100. */
  pageSize?: number;
  view?: JobView;
}

/** Job counts of one queue by status. */
export interface QueueCounts {
  queue: string;
  counts: Record<JobStatus, number>;
}

/**
 * One query cell: INTEGER is a number when it is a safe integer, else a bigint; REAL a number;
 * TEXT a string; BLOB a Buffer; NULL null.
 */
export type QueryCell = null | number | bigint | string | Buffer;

/** Bounds of one query. Omitted numbers take the engine defaults. */
export interface QueryOptions {
  /** Default 5000: the query rejects with SluiceTimeoutError after this long. */
  timeoutMs?: number;
  /** Default 10000: more rows reject with TooLargeError. */
  maxRows?: number;
  /** Default 4 MiB: a bigger result rejects with TooLargeError. */
  maxResultBytes?: number;
  /** Aborting it stops the query: it rejects with CancelledError. */
  signal?: AbortSignal;
}

export interface QueryResult {
  columns: string[];
  rows: QueryCell[][];
  /** Index entries and records the query read (its cost). */
  keysVisited: number;
}

// ---- The addon's surface (positional, normalised arguments) -------------------------------

interface NativeCompletion {
  tenant: string;
  taskId: string;
  leaseToken: bigint;
  outcome: NativeOutcome;
}

interface NativeOutcome {
  kind: 'success' | 'failure' | 'cancelled';
  result?: Bytes;
  code?: string;
  message?: string;
  data?: Bytes;
  noRetry?: boolean;
}

interface NativeEngine {
  close(): Promise<void>;
  enqueue(spec: JobSpec): Promise<EnqueueResult>;
  enqueueBatch(specs: JobSpec[]): Promise<EnqueueResult[]>;
  lease(req: LeaseRequest):
    Promise<{ tasks: Omit<Task, 'workerId'>[]; refreshes: RefreshTask[] }>;
  heartbeat(tenant: string, taskId: string, workerId: string, token: bigint):
    Promise<HeartbeatResult>;
  complete(c: NativeCompletion): Promise<void>;
  completeMany(cs: NativeCompletion[]): Promise<(SluiceError | null)[]>;
  cancel(tenant: string, id: string): Promise<CancelResult>;
  restart(tenant: string, id: string): Promise<void>;
  expedite(tenant: string, id: string): Promise<void>;
  delete(tenant: string, id: string): Promise<void>;
  getJob(tenant: string, id: string, includeAttempts: boolean): Promise<Job>;
  getResult(tenant: string, id: string): Promise<JobResult>;
  reapExpired(): Promise<number>;
  refreshHeartbeat(tenant: string, key: string, token: bigint): Promise<number>;
  refreshComplete(tenant: string, key: string, token: bigint, ok: boolean, newMax: number,
    errorCode: string, errorMessage: string): Promise<void>;
  getFloatingLimit(tenant: string, key: string): Promise<FloatingLimit>;
  setFloatingLimit(tenant: string, key: string, max: number): Promise<void>;
  concurrencyKey(tenant: string, kind: LimitKind, key: string): Promise<ConcurrencyKeyState>;
  stats(): Promise<EngineStats>;
  verifyIndexes(): Promise<void>;
  listJobs(req: ListJobsRequest): Promise<JobPage>;
  countJobs(tenant: string, queue: string): Promise<QueueCounts[]>;
  query(tenant: string, sql: string, timeoutMs: number | undefined, maxRows: number | undefined,
    maxResultBytes: number | undefined, token: NativeCancelToken | undefined):
    Promise<QueryResult>;
}

interface NativeCancelToken {
  cancel(): void;
  readonly cancelled: boolean;
}

interface NativeModule {
  open(path: string, options: EngineOptions): Promise<NativeEngine>;
  CancelToken: new () => NativeCancelToken;
  setErrorFactory(f: (status: number, code: string, message: string) => Error): void;
  version(): string;
  statusName(status: number): string;
}

function toNativeOutcome(o: Outcome | undefined): NativeOutcome {
  if (o === undefined || o.kind === 'success') return { kind: 'success', result: o?.result };
  if (o.kind === 'cancelled') return { kind: 'cancelled' };
  return { kind: 'failure', code: o.code, message: o.message, data: o.data, noRetry: o.noRetry };
}

function toNativeCompletion(c: Completion): NativeCompletion {
  return {
    tenant: c.task.tenant,
    taskId: c.task.taskId,
    leaseToken: c.task.leaseToken,
    outcome: toNativeOutcome(c.outcome),
  };
}

// Argument errors (TypeError, RangeError) reject the returned promise like engine errors do,
// instead of throwing synchronously from a promise-returning method.
function settle<T>(call: () => Promise<T>): Promise<T> {
  try {
    return call();
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The version of the linked engine library ("0.1.0"). */
export function version(): string {
  return native.version();
}

// ---- Engine ------------------------------------------------------------------------------------

/**
 * An open Sluice store. Thread-safe underneath: issue as many calls concurrently as you like.
 * close() stops it (waiting leases end with ClosedError; later calls reject with ClosedError);
 * an engine that is garbage-collected without close() is closed by its finalizer.
 */
export class Engine {
  readonly #native: NativeEngine;
  readonly path: string;

  private constructor(n: NativeEngine, path: string) {
    this.#native = n;
    this.path = path;
  }

  /** Opens (creating when missing) the store in directory `path`. */
  static async open(path: string, options: EngineOptions = {}): Promise<Engine> {
    return new Engine(await native.open(path, options), path);
  }

  /** Enqueues one job. An existing id is not an error: it returns created=false. */
  enqueue(spec: JobSpec): Promise<EnqueueResult> {
    return settle(() => this.#native.enqueue(spec));
  }

  /** Enqueues jobs in one atomic write: one bad spec rejects the whole batch. */
  enqueueBatch(specs: JobSpec[]): Promise<EnqueueResult[]> {
    return settle(() => this.#native.enqueueBatch(specs));
  }

  /** Leases due tasks, long-polling up to waitMs when none is due (then tasks is empty). */
  async lease(req: LeaseRequest): Promise<LeaseResponse> {
    const r = await this.#native.lease(req);
    const workerId = req.workerId;
    for (const t of r.tasks) (t as Task).workerId = workerId;
    return r as LeaseResponse;
  }

  /** Extends a task's lease. LeaseLostError: stop working on it. */
  heartbeat(task: TaskRef & { workerId: string }): Promise<HeartbeatResult> {
    return settle(() =>
      this.#native.heartbeat(task.tenant, task.taskId, task.workerId, task.leaseToken));
  }

  /** Reports success, with optional result bytes. */
  complete(task: TaskRef, result?: Bytes): Promise<void> {
    return this.report(task, { kind: 'success', result });
  }

  /** Reports a failure; the job retries per its policy unless noRetry. */
  fail(task: TaskRef, failure: FailureInfo): Promise<void> {
    return this.report(task, { kind: 'failure', ...failure });
  }

  /** Reports that the task stopped because its job was cancelled. */
  reportCancelled(task: TaskRef): Promise<void> {
    return this.report(task, { kind: 'cancelled' });
  }

  /** Ends any outcome (success, failure or cancelled) in one call. */
  report(task: TaskRef, outcome: Outcome): Promise<void> {
    return settle(() => this.#native.complete(toNativeCompletion({ task, outcome })));
  }

  /**
   * Reports many tasks in one hop off the loop. Resolves to one entry per completion, in order:
   * null when it was recorded, else the SluiceError of that item (e.g. LeaseLostError).
   */
  completeMany(completions: Completion[]): Promise<(SluiceError | null)[]> {
    return settle(() => this.#native.completeMany(completions.map(toNativeCompletion)));
  }

  /** Cancels a job: a pending job ends at once; a running one gets cancelRequested. */
  cancel(id: string, opts: TenantOption = {}): Promise<CancelResult> {
    return settle(() => this.#native.cancel(opts.tenant ?? '', id));
  }

  /** Failed or cancelled -> waiting, with a fresh retry budget. */
  restart(id: string, opts: TenantOption = {}): Promise<void> {
    return settle(() => this.#native.restart(opts.tenant ?? '', id));
  }

  /** Scheduled -> due now. */
  expedite(id: string, opts: TenantOption = {}): Promise<void> {
    return settle(() => this.#native.expedite(opts.tenant ?? '', id));
  }

  /** Removes a job that is not running. */
  delete(id: string, opts: TenantOption = {}): Promise<void> {
    return settle(() => this.#native.delete(opts.tenant ?? '', id));
  }

  /** Reads a job, with its attempts when includeAttempts. */
  getJob(id: string, opts: TenantOption & { includeAttempts?: boolean } = {}): Promise<Job> {
    return settle(() => this.#native.getJob(opts.tenant ?? '', id, opts.includeAttempts ?? false));
  }

  /** A job's result (finished tells whether it is terminal). */
  getResult(id: string, opts: TenantOption = {}): Promise<JobResult> {
    return settle(() => this.#native.getResult(opts.tenant ?? '', id));
  }

  /** Reaps expired leases now (the background reaper does this too); resolves to the count. */
  reapExpired(): Promise<number> {
    return settle(() => this.#native.reapExpired());
  }

  /** Extends a refresh task's lease; resolves to the new expiry. */
  refreshHeartbeat(refresh: RefreshTask): Promise<number> {
    return settle(() =>
      this.#native.refreshHeartbeat(refresh.tenant, refresh.key, refresh.leaseToken));
  }

  /** Reports a refresh: the key's new max (0 pauses it), or a failure (the value is kept). */
  refreshComplete(refresh: RefreshTask, outcome: RefreshOutcome): Promise<void> {
    const { tenant, key, leaseToken } = refresh;
    return settle(() => 'newMax' in outcome
      ? this.#native.refreshComplete(tenant, key, leaseToken, true, outcome.newMax, '', '')
      : this.#native.refreshComplete(tenant, key, leaseToken, false, 0, outcome.errorCode,
        outcome.errorMessage ?? ''));
  }

  /** A floating key's state. */
  getFloatingLimit(key: string, opts: TenantOption = {}): Promise<FloatingLimit> {
    return settle(() => this.#native.getFloatingLimit(opts.tenant ?? '', key));
  }

  /** Operator override of a floating key's current max; a raise grants waiters at once. */
  setFloatingLimit(key: string, max: number, opts: TenantOption = {}): Promise<void> {
    return settle(() => this.#native.setFloatingLimit(opts.tenant ?? '', key, max));
  }

  /** Live holders, waiters and max of a key (zeros when idle). */
  concurrencyKey(key: string, opts: TenantOption & { kind?: LimitKind } = {}):
    Promise<ConcurrencyKeyState> {
    return settle(() =>
      this.#native.concurrencyKey(opts.tenant ?? '', opts.kind ?? 'fixed', key));
  }

  /** Engine counters and gauges. */
  stats(): Promise<EngineStats> {
    return settle(() => this.#native.stats());
  }

  /** Operator check (fsck): verifies every index entry and counter against the job records.
   *  Rejects with CorruptionError naming the first mismatch. Reads the whole store. */
  verifyIndexes(): Promise<void> {
    return settle(() => this.#native.verifyIndexes());
  }

  /**
   * One page of a tenant's jobs matching the request's filter, in creation order. Rejects with
   * InvalidArgumentError for a bad filter, page size or cursor (a cursor only continues the
   * listing, filter and order, it came from).
   */
  listJobs(request: ListJobsRequest = {}): Promise<JobPage> {
    return settle(() => this.#native.listJobs(request));
  }

  /**
   * Every job matching the filter, page by page (pageSize jobs per call to the engine):
   *
   *     for await (const job of engine.iterJobs({ queue: 'email', statuses: ['failed'] })) ...
   */
  async *iterJobs(options: IterJobsOptions = {}): AsyncGenerator<Job, void, undefined> {
    const { pageSize, ...rest } = options;
    let cursor = '';
    do {
      const page = await this.listJobs({ ...rest, limit: pageSize ?? 100, cursor });
      yield* page.jobs;
      cursor = page.nextCursor;
    } while (cursor !== '');
  }

  /**
   * Job counts by status for one queue of a tenant, or for every queue of the tenant that ever
   * had jobs (queue omitted or ''). Read from counters, not by scanning jobs.
   */
  countJobs(tenant = '', queue = ''): Promise<QueueCounts[]> {
    return settle(() => this.#native.countJobs(tenant, queue));
  }

  /**
   * Runs one read-only SQL statement (SQLite dialect) over the tenant's virtual tables jobs,
   * job_metadata, attempts, queues, concurrency_keys and floating_limits (docs/query.md), off
   * the event loop. The tenant is fixed here, never by the SQL. Rejects with
   * InvalidArgumentError for SQL that does not parse or would write, SluiceTimeoutError after
   * timeoutMs, TooLargeError past maxRows or maxResultBytes, and CancelledError when `signal`
   * aborts (also when it had aborted before the call).
   */
  async query(tenant: string, sql: string, options: QueryOptions = {}): Promise<QueryResult> {
    const { signal } = options;
    let token: NativeCancelToken | undefined;
    let onAbort: (() => void) | undefined;
    if (signal !== undefined) {
      const t = new native.CancelToken();
      token = t;
      onAbort = () => t.cancel();
      if (signal.aborted) t.cancel();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
    try {
      return await this.#native.query(tenant, sql, options.timeoutMs, options.maxRows,
        options.maxResultBytes, token);
    } finally {
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Stops the engine: waiting leases end with ClosedError, later calls reject with it.
   *  Idempotent. */
  close(): Promise<void> {
    return settle(() => this.#native.close());
  }
}

/** Parses a Buffer of JSON (a payload or result). */
export function parseJson<T = unknown>(bytes: Uint8Array): T {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  return JSON.parse(text) as T;
}
