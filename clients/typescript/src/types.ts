// The client's public data types: plain objects with camelCase fields, numbers for times and
// counts (epoch ms and ms), bigint for lease tokens, Buffers for bytes. The wire types generated
// from the .proto stay internal (src/gen). Query cells: see QueryCell.
import type { SluiceError } from './errors.js';
import type { Bytes } from './payload.js';

export type JobStatus =
  | 'scheduled' | 'waiting' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'unspecified';
export type AttemptStatus = 'running' | 'succeeded' | 'failed' | 'cancelled' | 'unspecified';
export type LimitKind = 'fixed' | 'floating';

/** How a job's failed attempts are retried. Omitted fields: 3 retries, 1000 ms doubling to 60 s. */
export interface RetryPolicy {
  /** Retries after the first attempt; 0 = never retry. */
  maxRetries?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** >= 1. */
  multiplier?: number;
  /** Full jitter: each backoff uniform in [0, backoff]. */
  jitter?: boolean;
}

/** A concurrency limit of a job; a job runs only once every limit in its list granted a slot. */
export interface ConcurrencyLimit {
  /** 'fixed' (default) or 'floating' (workers compute the max through refresh handlers). */
  kind?: LimitKind;
  /** Non-empty; scoped to the tenant. */
  key: string;
  /** Fixed: the limit (default 1). Floating: the default max until the first refresh. */
  max?: number;
  /** Floating only (required there): how often workers recompute the max. */
  refreshIntervalMs?: number;
  /** Floating only: handed to refresh handlers. */
  metadata?: Record<string, string>;
}

/** A job to enqueue. */
export interface JobSpec {
  queue: string;
  /**
   * The job's id; the client generates a UUIDv7 when omitted (option generateIds), so a retried
   * Enqueue finds the job it created instead of creating a second one. '' asks the server to
   * generate one (then the call is not retried).
   */
  id?: string;
  /** 0..99, 0 runs first; default 50. */
  priority?: number;
  /** Epoch ms; 0 or past: due now. */
  startAtMs?: number;
  /** Omitted: the server's default policy. */
  retry?: RetryPolicy;
  /** The lease length of each attempt; 0/omitted: the server default (30 s). */
  leaseMs?: number;
  /** Opaque bytes (a string is sent as UTF-8). Exclusive with `json`. */
  payload?: Bytes;
  /** A JSON value sent as the payload (jsonBytes). Exclusive with `payload`. */
  json?: unknown;
  metadata?: Record<string, string>;
  limits?: ConcurrencyLimit[];
}

/** A leased job attempt. Heartbeat it and report its outcome with (taskId, leaseToken). */
export interface Task {
  taskId: string;
  jobId: string;
  tenant: string;
  queue: string;
  /** 1-based attempt number. */
  attempt: number;
  priority: number;
  payload: Buffer;
  metadata: Record<string, string>;
  leaseToken: bigint;
  /** Server clock, epoch ms. */
  leaseExpiresMs: number;
  /** The lease length: heartbeat well within it (the Worker does every third). */
  leaseMs: number;
  /** The worker id it was leased with (heartbeats must present it). */
  workerId: string;
}

/** A floating-limit refresh task: compute the key's current max and report it. */
export interface RefreshTask {
  tenant: string;
  key: string;
  metadata: Record<string, string>;
  currentMax: number;
  defaultMax: number;
  /** 0: never refreshed. */
  lastRefreshedMs: number;
  leaseToken: bigint;
  leaseExpiresMs: number;
  /** The refresh lease's length in ms (0 from a server that does not send it). */
  leaseMs: number;
}

export interface LeaseRequest {
  queue: string;
  workerId: string;
  /** 1..max_lease_batch (default 1). */
  maxTasks?: number;
  /** Long-poll bound when nothing is due (default 0: answer at once). */
  waitMs?: number;
  /**
   * Outcomes of earlier attempts, applied like reportOutcomes before leasing (one round trip
   * reports and fetches). Every report must be of the call's tenant. A bad lease request applies
   * none of them; when the call fails as a whole they may or may not have been applied (a
   * repeat is fenced by the lease token: it gets LeaseLostError).
   */
  reports?: { task: TaskRef; outcome?: Outcome }[];
}

export interface LeaseResponse {
  tasks: Task[];
  refreshes: RefreshTask[];
  /**
   * One entry per request report, in order: null when it was applied, else its SluiceError
   * (LeaseLostError, ...). Shorter than the reports only from a server that does not know
   * them (it ignored them: nothing was applied).
   */
  reportStatuses: (SluiceError | null)[];
}

export interface HeartbeatResult {
  leaseExpiresMs: number;
  /** The job was cancelled: stop and report (cancelled, or any outcome). */
  cancelRequested: boolean;
}

/** What identifies a leased task for heartbeats and reports: a Task fits. */
export interface TaskRef {
  taskId: string;
  leaseToken: bigint;
  tenant?: string;
}

/** What identifies a refresh lease: a RefreshTask fits. */
export interface RefreshRef {
  key: string;
  leaseToken: bigint;
  tenant?: string;
}

export interface FailureInfo {
  /** Required: machine-readable, e.g. "timeout" or "bad_input". */
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

/** Result of a refresh: the key's new max (0 pauses it), or a failure (the old max stays). */
export type RefreshOutcome = { newMax: number } | { errorCode: string; errorMessage?: string };

export interface CancelResult {
  /** 'cancelled' when it ended at once; 'running' when cancellation was requested. */
  status: JobStatus;
  cancelRequested: boolean;
}

export interface Attempt {
  number: number;
  taskId: string;
  workerId: string;
  status: AttemptStatus;
  startedMs: number;
  /** 0 while running. */
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

/** A job's result; `json()` and `text()` decode `result`. */
export interface JobResult {
  status: JobStatus;
  /** Whether status is terminal. */
  finished: boolean;
  /** SUCCEEDED: the handler's result bytes. */
  result: Buffer;
  /** FAILED: the last error. */
  errorCode: string;
  errorMessage: string;
  errorData: Buffer;
  /** The result parsed as JSON (undefined when empty). */
  json<T = unknown>(): T;
  /** The result as UTF-8 text. */
  text(): string;
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

export interface ConcurrencyKey {
  key: string;
  kind: LimitKind;
  holders: number;
  waiters: number;
  max: number;
}

export interface NodeLimits {
  maxMessageBytes: number;
  maxIdBytes: number;
  maxTenantBytes: number;
  maxQueueBytes: number;
  maxWorkerIdBytes: number;
  maxPayloadBytes: number;
  maxResultBytes: number;
  maxErrorCodeBytes: number;
  maxErrorMessageBytes: number;
  maxErrorDataBytes: number;
  maxMetadataEntries: number;
  maxMetadataKeyBytes: number;
  maxMetadataValueBytes: number;
  maxLimitsPerJob: number;
  maxLimitKeyBytes: number;
  maxBatchJobs: number;
  maxLeaseBatch: number;
  maxWaitMs: number;
  /** Most jobs per listJobs page (larger limits are capped). */
  maxListPage: number;
  /** Longest SQL text of a query. */
  maxQueryBytes: number;
  /** Longest a query may run (the server's cap on timeoutMs). */
  queryTimeoutMs: number;
  /** Most rows a query may return. */
  queryMaxRows: number;
  /** Largest result a query may return. */
  queryMaxResultBytes: number;
}

export interface NodeInfo {
  version: string;
  nodeId: string;
  durability: string;
  startedMs: number;
  /** The tenant a bound token acts for ('' otherwise). */
  callerTenant: string;
  callerTenantBound: boolean;
  limits: NodeLimits;
  defaultLeaseMs: number;
}

// ---- Finding jobs ------------------------------------------------------------------------------

/** A job status a listing can filter on. */
export type ListableStatus = Exclude<JobStatus, 'unspecified'>;

/** Which jobs listJobs / iterJobs return (always of one tenant); every field narrows it. */
export interface JobFilter {
  /** Only this queue (default: every queue). */
  queue?: string;
  /** Any of these statuses (default: every status); scheduled vs waiting is derived from now. */
  statuses?: ListableStatus[];
  /** Exactly this job. */
  id?: string;
  /** Ids starting with this. */
  idPrefix?: string;
  /**
   * Metadata pairs that must all match. The first pair drives the server's index scan, so put
   * the most selective first (an object keeps its insertion order).
   */
  metadata?: Record<string, string> | [string, string][];
  /** Created at or after this (epoch ms). */
  createdFromMs?: number;
  /** Created before this (epoch ms). */
  createdToMs?: number;
}

/** How much of each listed job comes back. */
export type JobView =
  /** id, queue, status and createdMs only (read from the index: cheapest). */
  | 'index'
  /** Every field except payload and attempts (the default). */
  | 'summary'
  /** With the payload (attempts never: getJob has them). */
  | 'full';

/** Order and page of a listing. */
export interface ListJobsOptions {
  /** '' or omitted for the first page, else the previous page's nextCursor. */
  cursor?: string;
  /** Page size (default 50; the server caps it, see NodeLimits.maxListPage). */
  limit?: number;
  /** Creation time descending (default ascending). */
  newestFirst?: boolean;
  view?: JobView;
}

/** One page of a listing. */
export interface JobPage {
  /**
   * May be shorter than the limit, even empty, while more remain (one call visits a bounded
   * number of index entries): keep paging while nextCursor is not ''.
   */
  jobs: Job[];
  /** '' when the listing is complete. */
  nextCursor: string;
  /** Index entries and records the server read for this page. */
  keysVisited: number;
}

/** Jobs of one queue by status. */
export interface QueueCounts {
  queue: string;
  scheduled: number;
  waiting: number;
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
}

/**
 * One cell of a query result, by SQLite storage class: NULL is `null`, REAL a `number`, TEXT a
 * `string`, BLOB a `Buffer`, and INTEGER a `number` when it is a safe integer
 * (|v| <= Number.MAX_SAFE_INTEGER, which covers counts and epoch-ms times) or a `bigint` when it
 * is not, so no integer is ever rounded. Pass `bigints: true` to get every INTEGER as a bigint.
 */
export type QueryCell = null | number | bigint | string | Buffer;

/** What query() returns. */
export interface QueryResult {
  /** Result column names, in order. */
  columns: string[];
  /** One array of cells per row, in column order. */
  rows: QueryCell[][];
  /** Index entries and records the server's tables read. */
  keysVisited: number;
}
