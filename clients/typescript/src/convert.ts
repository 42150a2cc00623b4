// Conversions between the generated wire messages (src/gen) and the public types (types.ts).
import * as pb from './gen/sluice/v1/sluice.js';
import { EMPTY, jsonBytes, parseJson, toBuffer } from './payload.js';
import type {
  Attempt, AttemptStatus, ConcurrencyKey, ConcurrencyLimit, FloatingLimit, Job, JobResult,
  JobSpec, JobStatus, LimitKind, NodeInfo, Outcome, RefreshTask, RetryPolicy, Task,
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
export const wireKind = (k: LimitKind | undefined): pb.ConcurrencyLimit_Kind =>
  k === 'floating' ? pb.ConcurrencyLimit_Kind.FLOATING : pb.ConcurrencyLimit_Kind.FIXED;

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
    maxRetries: r.maxRetries ?? 3,
    initialBackoffMs: u64(r.initialBackoffMs ?? 1000, `${what}.initialBackoffMs`),
    maxBackoffMs: u64(r.maxBackoffMs ?? 60000, `${what}.maxBackoffMs`),
    multiplier: r.multiplier ?? 2,
    jitter: r.jitter ?? false,
  };
}

function limitToWire(l: ConcurrencyLimit, what: string): pb.ConcurrencyLimit {
  return {
    kind: wireKind(l.kind),
    key: l.key,
    max: l.max ?? 1,
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
    priority: s.priority,
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
    },
  };
}
