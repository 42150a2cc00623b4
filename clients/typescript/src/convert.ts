// Conversions between the generated wire messages (src/gen) and the public types (types.ts).
import * as pb from './gen/sluice/v1/sluice.js';
import { EMPTY, jsonBytes, parseJson, toBuffer } from './payload.js';
import type {
  Attempt, AttemptStatus, ConcurrencyKey, ConcurrencyLimit, FloatingLimit, Job, JobFilter,
  JobPage, JobResult, JobSpec, JobStatus, JobView, LimitKind, ListJobsOptions, NodeInfo, Outcome,
  QueryCell, QueryResult, QueueCounts, RefreshTask, RetryPolicy, Task,
} from './types.js';

const jobStatusNames: Record<number, JobStatus> = {
  [pb.JobStatus.SCHEDULED]: 'scheduled',
  [pb.JobStatus.WAITING]: 'waiting',
  [pb.JobStatus.RUNNING]: 'running',
  [pb.JobStatus.SUCCEEDED]: 'succeeded',
  [pb.JobStatus.FAILED]: 'failed',
  [pb.JobStatus.CANCELLED]: 'cancelled',
};
const attemptStatusNames: Record<number, AttemptStatus> = {
  [pb.AttemptStatus.ATTEMPT_RUNNING]: 'running',
  [pb.AttemptStatus.ATTEMPT_SUCCEEDED]: 'succeeded',
  [pb.AttemptStatus.ATTEMPT_FAILED]: 'failed',
  [pb.AttemptStatus.ATTEMPT_CANCELLED]: 'cancelled',
};

export const jobStatus = (s: pb.JobStatus): JobStatus => jobStatusNames[s] ?? 'unspecified';
const attemptStatus = (s: pb.AttemptStatus): AttemptStatus =>
  attemptStatusNames[s] ?? 'unspecified';
const limitKind = (k: pb.ConcurrencyLimit_Kind): LimitKind =>
  k === pb.ConcurrencyLimit_Kind.FLOATING ? 'floating' : 'fixed';
/** A limit kind on the wire (undefined: fixed); anything else is refused, not taken as fixed. */
export function wireKind(k: LimitKind | undefined, what = 'kind'): pb.ConcurrencyLimit_Kind {
  if (k === undefined || k === 'fixed') return pb.ConcurrencyLimit_Kind.FIXED;
  if (k === 'floating') return pb.ConcurrencyLimit_Kind.FLOATING;
  throw new RangeError(`${what}: "${String(k)}" is not fixed or floating`);
}

/** A non-negative integer count or duration as uint64; rejects what would not round-trip. */
function u64(v: number | undefined, what: string): bigint {
  if (v === undefined) return 0n;
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${what}: a non-negative integer is required`);
  return BigInt(v);
}

function i64(v: number | undefined, what: string): bigint {
  if (v === undefined) return 0n;
  if (!Number.isSafeInteger(v)) throw new RangeError(`${what}: an integer is required`);
  return BigInt(v);
}

function retryToWire(r: RetryPolicy, what: string): pb.RetryPolicy {
  // Absent fields take the engine's defaults (core/include/sluice/types.h), as in sluice-engine.
  return {
    maxRetries: u32(r.maxRetries ?? 3, `${what}.maxRetries`),
    initialBackoffMs: u64(r.initialBackoffMs ?? 1000, `${what}.initialBackoffMs`),
    maxBackoffMs: u64(r.maxBackoffMs ?? 60000, `${what}.maxBackoffMs`),
    multiplier: r.multiplier ?? 2,
    jitter: r.jitter ?? false,
  };
}

function limitToWire(l: ConcurrencyLimit, what: string): pb.ConcurrencyLimit {
  return {
    kind: wireKind(l.kind, `${what}.kind`),
    key: l.key,
    max: u32(l.max ?? 1, `${what}.max`),
    refreshIntervalMs: u64(l.refreshIntervalMs, `${what}.refreshIntervalMs`),
    metadata: l.metadata ?? {},
  };
}

export function specToWire(s: JobSpec, id: string, what: string): pb.JobSpec {
  if (s.payload !== undefined && s.json !== undefined) {
    throw new TypeError(`${what}: give payload or json, not both`);
  }
  return {
    id,
    queue: s.queue,
    priority: s.priority === undefined ? undefined : u32(s.priority, `${what}.priority`),
    startAtMs: i64(s.startAtMs, `${what}.startAtMs`),
    retry: s.retry === undefined ? undefined : retryToWire(s.retry, `${what}.retry`),
    leaseMs: u64(s.leaseMs, `${what}.leaseMs`),
    payload: s.json !== undefined ? jsonBytes(s.json) : toBuffer(s.payload),
    metadata: s.metadata ?? {},
    limits: (s.limits ?? []).map((l, i) => limitToWire(l, `${what}.limits[${i}]`)),
  };
}

export function outcomeToWire(o: Outcome | undefined): pb.Outcome {
  if (o === undefined || o.kind === 'success') {
    return { kind: { $case: 'success', value: { result: toBuffer(o?.result) } } };
  }
  if (o.kind === 'cancelled') return { kind: { $case: 'cancelled', value: {} } };
  return {
    kind: {
      $case: 'failure',
      value: {
        error: { code: o.code, message: o.message ?? '', data: toBuffer(o.data) },
        noRetry: o.noRetry ?? false,
      },
    },
  };
}

export function taskFromWire(t: pb.Task, tenant: string, workerId: string): Task {
  return {
    taskId: t.taskId,
    jobId: t.jobId,
    tenant,
    queue: t.queue,
    attempt: t.attempt,
    priority: t.priority,
    payload: t.payload,
    metadata: t.metadata,
    leaseToken: t.leaseToken,
    leaseExpiresMs: Number(t.leaseExpiresMs),
    leaseMs: Number(t.leaseMs),
    workerId,
  };
}

export function refreshFromWire(r: pb.RefreshTask, tenant: string): RefreshTask {
  return {
    tenant,
    key: r.key,
    metadata: r.metadata,
    currentMax: r.currentMax,
    defaultMax: r.defaultMax,
    lastRefreshedMs: Number(r.lastRefreshedMs),
    leaseToken: r.leaseToken,
    leaseExpiresMs: Number(r.leaseExpiresMs),
    leaseMs: Number(r.leaseMs),
  };
}

function attemptFromWire(a: pb.Attempt): Attempt {
  return {
    number: a.number,
    taskId: a.taskId,
    workerId: a.workerId,
    status: attemptStatus(a.status),
    startedMs: Number(a.startedMs),
    finishedMs: Number(a.finishedMs),
    result: a.result,
    errorCode: a.error?.code ?? '',
    errorMessage: a.error?.message ?? '',
    errorData: a.error?.data ?? EMPTY,
  };
}

export function jobFromWire(j: pb.Job): Job {
  const r = j.retry;
  return {
    id: j.id,
    tenant: j.tenant,
    queue: j.queue,
    priority: j.priority,
    status: jobStatus(j.status),
    cancelRequested: j.cancelRequested,
    startAtMs: Number(j.startAtMs),
    nextRunMs: Number(j.nextRunMs),
    leaseMs: Number(j.leaseMs),
    retry: {
      maxRetries: r?.maxRetries ?? 0,
      initialBackoffMs: Number(r?.initialBackoffMs ?? 0n),
      maxBackoffMs: Number(r?.maxBackoffMs ?? 0n),
      multiplier: r?.multiplier ?? 0,
      jitter: r?.jitter ?? false,
    },
    payload: j.payload,
    metadata: j.metadata,
    limits: j.limits.map((l) => ({
      kind: limitKind(l.kind),
      key: l.key,
      max: l.max,
      refreshIntervalMs: Number(l.refreshIntervalMs),
      metadata: l.metadata,
    })),
    attemptCount: j.attemptCount,
    retriesUsed: j.retriesUsed,
    createdMs: Number(j.createdMs),
    updatedMs: Number(j.updatedMs),
    finishedMs: Number(j.finishedMs),
    attempts: j.attempts.map(attemptFromWire),
  };
}

class JobResultView implements JobResult {
  status: JobStatus;
  finished: boolean;
  result: Buffer;
  errorCode: string;
  errorMessage: string;
  errorData: Buffer;

  constructor(r: pb.GetJobResultResponse) {
    this.status = jobStatus(r.status);
    this.finished = r.finished;
    this.result = r.result;
    this.errorCode = r.error?.code ?? '';
    this.errorMessage = r.error?.message ?? '';
    this.errorData = r.error?.data ?? EMPTY;
  }

  json<T = unknown>(): T {
    return parseJson<T>(this.result);
  }

  text(): string {
    return this.result.toString('utf8');
  }
}

export const resultFromWire = (r: pb.GetJobResultResponse): JobResult => new JobResultView(r);

export function floatingFromWire(f: pb.FloatingLimit, tenant: string): FloatingLimit {
  return {
    tenant,
    key: f.key,
    currentMax: f.currentMax,
    defaultMax: f.defaultMax,
    refreshIntervalMs: Number(f.refreshIntervalMs),
    lastRefreshedMs: Number(f.lastRefreshedMs),
    metadata: f.metadata,
    consecutiveFailures: f.consecutiveFailures,
    nextRefreshMs: Number(f.nextRefreshMs),
    refreshInFlight: f.refreshInFlight,
    holders: Number(f.holders),
    waiters: Number(f.waiters),
  };
}

export function concurrencyKeyFromWire(k: pb.ConcurrencyKey): ConcurrencyKey {
  return {
    key: k.key,
    kind: limitKind(k.kind),
    holders: Number(k.holders),
    waiters: Number(k.waiters),
    max: k.max,
  };
}

export function nodeInfoFromWire(n: pb.GetNodeInfoResponse): NodeInfo {
  const l = n.limits;
  const num = (v: number | bigint | undefined): number => Number(v ?? 0);
  return {
    version: n.version,
    nodeId: n.nodeId,
    durability: n.durability,
    startedMs: Number(n.startedMs),
    callerTenant: n.callerTenant,
    callerTenantBound: n.callerTenantBound,
    defaultLeaseMs: Number(n.defaultLeaseMs),
    limits: {
      maxMessageBytes: num(l?.maxMessageBytes),
      maxIdBytes: num(l?.maxIdBytes),
      maxTenantBytes: num(l?.maxTenantBytes),
      maxQueueBytes: num(l?.maxQueueBytes),
      maxWorkerIdBytes: num(l?.maxWorkerIdBytes),
      maxPayloadBytes: num(l?.maxPayloadBytes),
      maxResultBytes: num(l?.maxResultBytes),
      maxErrorCodeBytes: num(l?.maxErrorCodeBytes),
      maxErrorMessageBytes: num(l?.maxErrorMessageBytes),
      maxErrorDataBytes: num(l?.maxErrorDataBytes),
      maxMetadataEntries: num(l?.maxMetadataEntries),
      maxMetadataKeyBytes: num(l?.maxMetadataKeyBytes),
      maxMetadataValueBytes: num(l?.maxMetadataValueBytes),
      maxLimitsPerJob: num(l?.maxLimitsPerJob),
      maxLimitKeyBytes: num(l?.maxLimitKeyBytes),
      maxBatchJobs: num(l?.maxBatchJobs),
      maxLeaseBatch: num(l?.maxLeaseBatch),
      maxWaitMs: num(l?.maxWaitMs),
      maxListPage: num(l?.maxListPage),
      maxQueryBytes: num(l?.maxQueryBytes),
      queryTimeoutMs: num(l?.queryTimeoutMs),
      queryMaxRows: num(l?.queryMaxRows),
      queryMaxResultBytes: num(l?.queryMaxResultBytes),
    },
  };
}

// ---- Finding jobs ------------------------------------------------------------------------------

const wireStatuses: Record<string, pb.JobStatus> = Object.fromEntries(
  Object.entries(jobStatusNames).map(([k, v]) => [v, Number(k) as pb.JobStatus]));

const wireViews: Record<JobView, pb.ListJobsRequest_View> = {
  index: pb.ListJobsRequest_View.INDEX,
  summary: pb.ListJobsRequest_View.SUMMARY,
  full: pb.ListJobsRequest_View.FULL,
};

/** A uint32 request field (undefined: 0); rejects what would not round-trip. */
export function u32(v: number | undefined, what: string): number {
  return v === undefined ? 0 : requiredU32(v, what);
}

/** A uint32 request field that must be given. */
export function requiredU32(v: number, what: string): number {
  if (!Number.isSafeInteger(v) || v < 0 || v > 0xffff_ffff) {
    throw new RangeError(`${what}: an integer in 0..4294967295 is required`);
  }
  return v;
}

export function listRequestToWire(tenant: string, f: JobFilter, o: ListJobsOptions):
pb.ListJobsRequest {
  const statuses = (f.statuses ?? []).map((s, i) => {
    const w = wireStatuses[s];
    if (w === undefined) throw new RangeError(`statuses[${i}]: "${String(s)}" is not a job status`);
    return w;
  });
  const view = wireViews[o.view ?? 'summary'];
  if (view === undefined) throw new RangeError(`view: "${String(o.view)}" is not index, summary or full`);
  const pairs = Array.isArray(f.metadata) ? f.metadata : Object.entries(f.metadata ?? {});
  return {
    tenant,
    queue: f.queue ?? '',
    statuses,
    id: f.id ?? '',
    idPrefix: f.idPrefix ?? '',
    metadata: pairs.map(([key, value]) => ({ key, value })),
    createdFromMs: i64(f.createdFromMs, 'createdFromMs'),
    createdToMs: i64(f.createdToMs, 'createdToMs'),
    newestFirst: o.newestFirst ?? false,
    limit: u32(o.limit, 'limit'),
    cursor: o.cursor ?? '',
    view,
  };
}

export function jobPageFromWire(r: pb.ListJobsResponse): JobPage {
  return { jobs: r.jobs.map(jobFromWire), nextCursor: r.nextCursor, keysVisited: Number(r.keysVisited) };
}

export function countsFromWire(c: pb.QueueCounts): QueueCounts {
  return {
    queue: c.queue,
    scheduled: Number(c.scheduled),
    waiting: Number(c.waiting),
    running: Number(c.running),
    succeeded: Number(c.succeeded),
    failed: Number(c.failed),
    cancelled: Number(c.cancelled),
  };
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function cellFromWire(v: pb.QueryValue, bigints: boolean): QueryCell {
  const c = v.value;
  switch (c?.$case) {
    case undefined:
    case 'null':
      return null;
    case 'integer':
      return bigints || c.value > MAX_SAFE || c.value < -MAX_SAFE ? c.value : Number(c.value);
    case 'real':
    case 'text':
    case 'blob':
      return c.value;
  }
}

export function queryResultFromWire(r: pb.QueryResponse, bigints: boolean): QueryResult {
  return {
    columns: r.columns,
    rows: r.rows.map((row) => row.values.map((v) => cellFromWire(v, bigints))),
    keysVisited: Number(r.keysVisited),
  };
}
