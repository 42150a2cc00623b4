// SluiceClient: every RPC of sluice.v1.Sluice, typed, with token auth, TLS, per-call deadlines
// and retries (backoff + jitter) of idempotent calls on UNAVAILABLE and DEADLINE_EXCEEDED.
import * as grpc from '@grpc/grpc-js';
import {
  concurrencyKeyFromWire, countsFromWire, floatingFromWire, jobFromWire, jobPageFromWire,
  jobStatus, listRequestToWire, nodeInfoFromWire, outcomeToWire, queryResultFromWire,
  refreshFromWire, requiredU32, resultFromWire, specToWire, taskFromWire, u32, wireKind,
} from './convert.js';
import {
  ClosedError, GrpcCode, InternalError, NotFoundError, SluiceError, SluiceTimeoutError, fromServiceError,
  isTransient, makeError,
} from './errors.js';
import * as pb from './gen/sluice/v1/sluice.js';
import { uuidv7 } from './ids.js';
import { JobHandle } from './job-handle.js';
import { type LeaseCodec, LeaseStream } from './lease-stream.js';
import {
  type ResolvedRetry, type RetryOptions, abortError, backoffMs, resolveRetry, sleep, withRetries,
} from './retry.js';
import type {
  CancelResult, ConcurrencyKey, FloatingLimit, HeartbeatResult, Job, JobFilter, JobPage,
  JobResult, JobSpec, LeaseRequest, LeaseResponse, LimitKind, ListJobsOptions, NodeInfo, Outcome,
  QueryResult, QueueCounts, RefreshOutcome, RefreshRef, TaskRef,
} from './types.js';

/** TLS settings: PEM strings or Buffers. `true` uses the system's root certificates. */
export interface TlsOptions {
  /** Trusted roots (e.g. a self-signed server certificate); default: the system's. */
  rootCerts?: string | Buffer;
  /** Client certificate chain and key, for servers that ask for one. */
  certChain?: string | Buffer;
  privateKey?: string | Buffer;
  /** Expected server name when it differs from the address's host (tests, IP addresses). */
  serverName?: string;
}

export interface SluiceClientOptions {
  /** host:port of sluiced's gRPC listener, e.g. "127.0.0.1:7070". */
  address: string;
  /** Bearer token sent on every call (`authorization: Bearer <token>`). */
  token?: string;
  /** Tenant of every call unless a call names its own (default ''; ignored by bound tokens). */
  tenant?: string;
  /** TLS: `true` (system roots) or TlsOptions. Default plaintext. */
  tls?: boolean | TlsOptions;
  /** Whole-call deadline, retries included (default 30,000 ms). */
  timeoutMs?: number;
  /** Deadline of one try; long-polls add their wait to it (default 10,000 ms). */
  attemptTimeoutMs?: number;
  /** Retries of idempotent calls; `false` disables them. */
  retry?: RetryOptions | false;
  /** Generate a UUIDv7 for jobs enqueued without an id (default true). */
  generateIds?: boolean;
  /** Extra @grpc/grpc-js channel options (keepalive, message sizes, ...). */
  channelOptions?: grpc.ChannelOptions;
  /** Metrics hook: sees every transient failure that is about to be retried. */
  onRetry?: (info: RetryInfo) => void;
}

/** What the onRetry hook sees. */
export interface RetryInfo {
  /** The RPC's method name in camelCase ("enqueue", "reportOutcomes", ...). */
  method: string;
  /** The try that failed (1-based). */
  attempt: number;
  error: SluiceError;
}

/** Options every call takes. */
export interface CallOptions {
  /** The tenant of this call (default: the client's). */
  tenant?: string;
  /** Whole-call deadline in ms, retries included (default: the client's timeoutMs). */
  timeoutMs?: number;
  /** Deadline of one try in ms (default: the client's attemptTimeoutMs). */
  attemptTimeoutMs?: number;
  /** Aborts the call (it rejects with CancelledError). */
  signal?: AbortSignal;
  /** This call's retry settings; `false` sends it once. Non-idempotent calls never retry. */
  retry?: RetryOptions | false;
}

/** Options of query(): its bounds, and the usual call options except the deadline. */
export interface QueryOptions extends Omit<CallOptions, 'timeoutMs' | 'retry'> {
  /**
   * The query's time budget in ms (default: the server's maximum, 5 s unless configured; the
   * server caps it). Running out rejects with SluiceTimeoutError (`code` 'timeout'). The call's
   * deadline is this plus attemptTimeoutMs, so the server's answer arrives first.
   */
  timeoutMs?: number;
  /** Row cap (default and maximum: the server's, 10,000 unless configured). */
  maxRows?: number;
  /** Every INTEGER cell as a bigint (default: a number when safe, else a bigint; QueryCell). */
  bigints?: boolean;
}

type Service = typeof pb.SluiceService;
type Method = keyof Service;
type Req<M extends Method> = Parameters<Service[M]['requestSerialize']>[0];
type Res<M extends Method> = ReturnType<Service[M]['responseDeserialize']>;

interface CallPlan {
  /** Safe to send again after a transient failure. */
  idempotent: boolean;
  /** Server-side wait of a long-poll, added to each try's deadline. */
  waitMs?: number;
  /** Sees each try's error before the retry decision (e.g. to remember an earlier try). */
  onRetry?: (e: unknown) => void;
  /** Which failures an idempotent call retries (default: isTransient). */
  transient?: (e: unknown) => boolean;
}

const DEFAULT_MAX_RECEIVE = 64 * 1024 * 1024;

function reportsToWire(reports: { task: TaskRef; outcome?: Outcome }[]): pb.ReportOutcomeRequest[] {
  return reports.map((r) => ({
    tenant: '', taskId: r.task.taskId, leaseToken: r.task.leaseToken,
    outcome: outcomeToWire(r.outcome),
  }));
}

/** Per-report statuses: null for OK, else the error (`attempts`: tries of the call). */
function statusesFromWire(statuses: pb.ReportStatus[], attempts: number): (SluiceError | null)[] {
  return statuses.map((s) => (s.code === GrpcCode.OK ? null
    : makeError(s.code, s.sluiceCode, s.message, { attempts })));
}

/** A response without a field the server always sets: a server bug, reported as INTERNAL. */
function missing(rpc: string, field: string): SluiceError {
  return new InternalError(`${rpc} answered without its ${field}`,
    { grpcCode: GrpcCode.INTERNAL, sluiceCode: 'internal', serverCode: false });
}

/**
 * A connection to one sluiced. Thread rule: share one client across the process; calls may run
 * concurrently. close() cancels calls in flight (they reject with ClosedError) and refuses new
 * ones. Every method rejects with a SluiceError subclass (errors.ts), never a raw gRPC error.
 */
export class SluiceClient {
  readonly address: string;
  readonly tenant: string;
  private readonly raw: grpc.Client;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly retry: ResolvedRetry;
  private readonly generateIds: boolean;
  private readonly onRetryHook: ((info: RetryInfo) => void) | undefined;
  private readonly active = new Set<{ cancel(): void }>();
  private closed = false;

  constructor(options: SluiceClientOptions) {
    if (!options?.address) throw new TypeError('SluiceClient: address is required');
    this.address = options.address;
    this.tenant = options.tenant ?? '';
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 10_000;
    this.retry = resolveRetry(options.retry);
    this.generateIds = options.generateIds ?? true;
    this.onRetryHook = options.onRetry;
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': DEFAULT_MAX_RECEIVE,
      'grpc.max_send_message_length': -1,
      // Pings while calls are in flight find a dead connection (a silent network stall) within
      // ~15 s instead of at each call's deadline; sluiced accepts them (tested).
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      // grpc-js backs reconnects off up to 120 s by default, failing every call fast meanwhile:
      // a worker would stay idle for minutes after a short outage. Cap it at 5 s.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5_000,
      ...options.channelOptions,
    };
    let creds: grpc.ChannelCredentials;
    if (options.tls) {
      const t: TlsOptions = options.tls === true ? {} : options.tls;
      const buf = (v: string | Buffer | undefined): Buffer | null =>
        v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(v);
      creds = grpc.credentials.createSsl(buf(t.rootCerts), buf(t.privateKey), buf(t.certChain));
      if (t.serverName) channelOptions['grpc.ssl_target_name_override'] = t.serverName;
    } else {
      creds = grpc.credentials.createInsecure();
    }
    this.raw = new grpc.Client(options.address, creds, channelOptions);
  }

  /** Closes the channel; calls in flight reject with ClosedError. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.active) c.cancel();
    this.active.clear();
    this.raw.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- Producers -----------------------------------------------------------------------------

  /**
   * Stores one job and returns its handle (`created` false when the id existed: nothing
   * changed). With an id (generated by default) the call is retried on transient failures and
   * a retry never creates a second job.
   */
  async enqueue(spec: JobSpec, opts: CallOptions = {}): Promise<JobHandle> {
    const id = this.jobId(spec);
    const tenant = this.tenantOf(opts);
    const res = await this.call('enqueue', { tenant, job: specToWire(spec, id, 'job') }, opts,
      { idempotent: id !== '' });
    return new JobHandle(this, res.id, tenant, res.created, jobStatus(res.status));
  }

  /**
   * Stores many jobs in one atomic write (all or none; 1..max_batch_jobs). Retried only when
   * every job has an id (the default).
   */
  async enqueueBatch(specs: JobSpec[], opts: CallOptions = {}): Promise<JobHandle[]> {
    const tenant = this.tenantOf(opts);
    const jobs = specs.map((s, i) => specToWire(s, this.jobId(s), `jobs[${i}]`));
    const res = await this.call('enqueueBatch', { tenant, jobs }, opts,
      { idempotent: jobs.every((j) => j.id !== '') });
    return res.results.map((r) =>
      new JobHandle(this, r.id, tenant, r.created, jobStatus(r.status)));
  }

  /** A handle on an existing job (no call is made). */
  job(id: string, opts: { tenant?: string } = {}): JobHandle {
    return new JobHandle(this, id, opts.tenant ?? this.tenant);
  }

  // ---- Workers -------------------------------------------------------------------------------

  /**
   * Long-poll lease of up to maxTasks tasks of one queue (plus floating-limit refresh tasks).
   * With `reports`, the outcomes of earlier attempts are applied first (like reportOutcomes)
   * and their statuses come back in `reportStatuses`: report and fetch in one round trip.
   * Not retried: a lost response leaves its tasks leased until their leases expire, and a
   * retry would lease others. The Worker class calls this in its loop.
   */
  async leaseTasks(req: LeaseRequest, opts: CallOptions = {}): Promise<LeaseResponse> {
    const codec = this.leaseCodec(this.tenantOf(opts));
    const res = await this.call('leaseTasks', codec.toWire(req), opts,
      { idempotent: false, waitMs: req.waitMs ?? 0 });
    return codec.fromWire(res, req);
  }

  /**
   * Opens a lease stream: LeaseTasks calls over one long-lived call, answered in order, so a
   * worker may send its next request before the previous one is answered, and no request pays
   * for a call's set-up (LeaseStream; the Worker leases this way). Each answer is due within
   * the attempt timeout plus the request's waitMs, or the stream is cancelled. Not retried: open
   * a new stream after one ends.
   */
  leaseStream(opts: { tenant?: string; attemptTimeoutMs?: number } = {}): LeaseStream {
    if (this.closed) throw this.closedError();
    const def = pb.SluiceService.leaseStream;
    const md = new grpc.Metadata();
    if (this.token !== undefined) md.set('authorization', `Bearer ${this.token}`);
    const call = this.raw.makeBidiStreamRequest(def.path, def.requestSerialize,
      def.responseDeserialize, md, {});
    this.active.add(call);
    return new LeaseStream(call, this.leaseCodec(this.tenantOf(opts)),
      opts.attemptTimeoutMs ?? this.attemptTimeoutMs, () => this.active.delete(call));
  }

  /** LeaseTasks requests and answers of one tenant, between the wire and the client's types. */
  private leaseCodec(tenant: string): LeaseCodec {
    return {
      toWire: (req) => ({
        tenant, queue: req.queue, workerId: req.workerId,
        maxTasks: req.maxTasks === undefined ? 1 : u32(req.maxTasks, 'maxTasks'),
        waitMs: u32(req.waitMs, 'waitMs'), reports: reportsToWire(req.reports ?? []),
      }),
      fromWire: (res, req) => ({
        tasks: res.tasks.map((t) => taskFromWire(t, tenant, req.workerId)),
        refreshes: res.refreshes.map((r) => refreshFromWire(r, tenant)),
        reportStatuses: statusesFromWire(res.reportStatuses, 1),
      }),
    };
  }

  /** Extends a task's lease; LeaseLostError when it is no longer this worker's. Retried. */
  async heartbeat(task: TaskRef & { workerId: string }, opts: CallOptions = {}):
  Promise<HeartbeatResult> {
    const res = await this.call('heartbeat', {
      tenant: task.tenant ?? this.tenantOf(opts), taskId: task.taskId, workerId: task.workerId,
      leaseToken: task.leaseToken,
    }, opts, { idempotent: true });
    return { leaseExpiresMs: Number(res.leaseExpiresMs), cancelRequested: res.cancelRequested };
  }

  /**
   * Ends one attempt (default outcome: success without a result). Retried: the report is fenced
   * by the lease token, so a repeat can never apply twice. A LeaseLostError whose `attempts` > 1
   * may mean an earlier try was applied and its answer lost.
   */
  async reportOutcome(task: TaskRef, outcome?: Outcome, opts: CallOptions = {}): Promise<void> {
    await this.call('reportOutcome', {
      tenant: task.tenant ?? this.tenantOf(opts), taskId: task.taskId,
      leaseToken: task.leaseToken, outcome: outcomeToWire(outcome),
    }, opts, { idempotent: true });
  }

  /**
   * Ends many attempts in one atomic write; resolves with one entry per report: null when it
   * was applied, else its SluiceError (LeaseLostError, ...). Every report must be of one tenant
   * (the call's). Retried like reportOutcome.
   */
  async reportOutcomes(reports: { task: TaskRef; outcome?: Outcome }[], opts: CallOptions = {}):
  Promise<(SluiceError | null)[]> {
    const tenant = this.tenantOf(opts);
    let attempts = 0;
    const res = await this.call('reportOutcomes', { tenant, reports: reportsToWire(reports) },
      opts, { idempotent: true, onRetry: () => { ++attempts; } });
    return statusesFromWire(res.statuses, attempts + 1);
  }

  /** Extends a refresh task's lease; resolves with the new expiry (epoch ms). Retried. */
  async heartbeatRefresh(ref: RefreshRef, opts: CallOptions = {}): Promise<number> {
    const res = await this.call('heartbeatRefresh', {
      tenant: ref.tenant ?? this.tenantOf(opts), key: ref.key, leaseToken: ref.leaseToken,
    }, opts, { idempotent: true });
    return Number(res.leaseExpiresMs);
  }

  /** Ends a refresh task with a new max or a failure (the old max stays). Retried (fenced). */
  async reportRefreshOutcome(ref: RefreshRef, outcome: RefreshOutcome, opts: CallOptions = {}):
  Promise<void> {
    const wire: pb.ReportRefreshOutcomeRequest['outcome'] = 'newMax' in outcome
      ? { $case: 'newMax', value: requiredU32(outcome.newMax, 'newMax') }
      : {
        $case: 'error',
        value: { code: outcome.errorCode, message: outcome.errorMessage ?? '', data: Buffer.alloc(0) },
      };
    await this.call('reportRefreshOutcome', {
      tenant: ref.tenant ?? this.tenantOf(opts), key: ref.key, leaseToken: ref.leaseToken,
      outcome: wire,
    }, opts, { idempotent: true });
  }

  // ---- Operators -----------------------------------------------------------------------------

  /** Reads a job (with its attempts when asked). NotFoundError for unknown ids. */
  async getJob(id: string, opts: CallOptions & { includeAttempts?: boolean } = {}): Promise<Job> {
    const res = await this.call('getJob', {
      tenant: this.tenantOf(opts), id, includeAttempts: opts.includeAttempts ?? false,
    }, opts, { idempotent: true });
    if (!res.job) throw missing('GetJob', 'job');
    return jobFromWire(res.job);
  }

  /**
   * Reads a job's result. With waitMs > 0 the server waits up to that long for a terminal state
   * (then `finished` may still be false). JobHandle.awaitResult loops on this.
   */
  async getJobResult(id: string, opts: CallOptions & { waitMs?: number } = {}): Promise<JobResult> {
    const waitMs = u32(opts.waitMs, 'waitMs');
    const res = await this.call('getJobResult', { tenant: this.tenantOf(opts), id, waitMs }, opts,
      { idempotent: true, waitMs });
    return resultFromWire(res);
  }

  /**
   * Waits until the job is terminal, by server-side waits of up to `pollMs` each (no client
   * sleeps). Transient failures are retried with backoff until the timeout. Rejects with
   * SluiceTimeoutError when `timeoutMs` (default: none) passes first.
   */
  async awaitResult(id: string, opts: CallOptions & { pollMs?: number } = {}): Promise<JobResult> {
    if (opts.timeoutMs !== undefined && !(Number.isFinite(opts.timeoutMs) && opts.timeoutMs >= 0)) {
      throw new RangeError('timeoutMs: a finite number >= 0 is required');
    }
    const chunk = opts.pollMs ?? 30_000;
    if (!Number.isSafeInteger(chunk) || chunk < 1 || chunk > 0xffff_ffff) {
      // 0 would answer at once, every time: a busy poll of the server.
      throw new RangeError('pollMs: an integer in 1..4294967295 is required');
    }
    const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
    let failures = 0;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new SluiceTimeoutError(`job "${id}" did not finish in time`,
          { grpcCode: GrpcCode.DEADLINE_EXCEEDED, sluiceCode: 'timeout', serverCode: false });
      }
      try {
        // Each call ends by the caller's deadline, retries included: its wait, its tries and
        // their backoff all fit in what is left.
        const r = await this.getJobResult(id, {
          ...opts,
          timeoutMs: left === Infinity ? undefined : Math.ceil(left),
          waitMs: Math.min(chunk, Math.floor(left)),
        });
        failures = 0;
        if (r.finished) return r;
      } catch (e) {
        if (!isTransient(e) || opts.signal?.aborted) throw e;
        const rest = deadline - Date.now();
        if (rest > 0) {
          await sleep(Math.min(backoffMs(this.retry, ++failures), rest), opts.signal);
        }
      }
    }
  }

  /** Cancels a job: pending ends cancelled; running gets cancel_requested. Retried. */
  async cancelJob(id: string, opts: CallOptions = {}): Promise<CancelResult> {
    const res = await this.call('cancelJob', { tenant: this.tenantOf(opts), id }, opts,
      { idempotent: true });
    return { status: jobStatus(res.status), cancelRequested: res.cancelRequested };
  }

  /**
   * Puts a failed or cancelled job back to waiting. Not retried: after a lost answer the job
   * may already have run and failed again, and a repeat would run it once more.
   */
  async restartJob(id: string, opts: CallOptions = {}): Promise<void> {
    await this.call('restartJob', { tenant: this.tenantOf(opts), id }, opts, { idempotent: false });
  }

  /** Makes a scheduled job due now. Retried. */
  async expediteJob(id: string, opts: CallOptions = {}): Promise<void> {
    await this.call('expediteJob', { tenant: this.tenantOf(opts), id }, opts, { idempotent: true });
  }

  /**
   * Deletes a job that is not running. Retried; a NOT_FOUND answering a retry whose earlier try
   * failed in transit counts as deleted (that try did it).
   */
  async deleteJob(id: string, opts: CallOptions = {}): Promise<void> {
    let retried = false;
    try {
      await this.call('deleteJob', { tenant: this.tenantOf(opts), id }, opts,
        { idempotent: true, onRetry: () => { retried = true; } });
    } catch (e) {
      if (!(retried && e instanceof NotFoundError)) throw e;
    }
  }

  /** Reads one floating limit key. */
  async getFloatingLimit(key: string, opts: CallOptions = {}): Promise<FloatingLimit> {
    const tenant = this.tenantOf(opts);
    const res = await this.call('getFloatingLimit', { tenant, key }, opts, { idempotent: true });
    if (!res.limit) throw missing('GetFloatingLimit', 'limit');
    return floatingFromWire(res.limit, tenant);
  }

  /** Lists floating keys in key order: pass the last key of a page as `afterKey` for the next. */
  async listFloatingLimits(opts: CallOptions & { afterKey?: string; limit?: number } = {}):
  Promise<FloatingLimit[]> {
    const tenant = this.tenantOf(opts);
    const res = await this.call('listFloatingLimits',
      { tenant, afterKey: opts.afterKey ?? '', limit: u32(opts.limit, 'limit') }, opts,
      { idempotent: true });
    return res.limits.map((l) => floatingFromWire(l, tenant));
  }

  /** Operator override of a floating key's current max (as if refreshed now). Retried. */
  async setFloatingLimit(key: string, max: number, opts: CallOptions = {}): Promise<void> {
    await this.call('setFloatingLimit', { tenant: this.tenantOf(opts), key, max: requiredU32(max, 'max') },
      opts, { idempotent: true });
  }

  /** Live holders, waiters and max of one concurrency key. */
  async getConcurrencyKey(kind: LimitKind, key: string, opts: CallOptions = {}):
  Promise<ConcurrencyKey> {
    const res = await this.call('getConcurrencyKey',
      { tenant: this.tenantOf(opts), kind: wireKind(kind), key }, opts, { idempotent: true });
    if (!res.key) throw missing('GetConcurrencyKey', 'key');
    return concurrencyKeyFromWire(res.key);
  }

  /** The tenant's active concurrency keys, busiest first. */
  async listConcurrencyKeys(opts: CallOptions & { limit?: number } = {}): Promise<ConcurrencyKey[]> {
    const res = await this.call('listConcurrencyKeys',
      { tenant: this.tenantOf(opts), limit: u32(opts.limit, 'limit') }, opts, { idempotent: true });
    return res.keys.map(concurrencyKeyFromWire);
  }

  // ---- Finding jobs --------------------------------------------------------------------------

  /**
   * One page of the tenant's jobs matching `filter`, in creation order (`newestFirst` reverses
   * it). Pass the page's `nextCursor` back as `cursor` (with the same filter and order) for the
   * next page; a page may be short or empty while more remain. Retried (a read).
   */
  async listJobs(filter: JobFilter = {}, opts: CallOptions & ListJobsOptions = {}): Promise<JobPage> {
    const res = await this.call('listJobs', listRequestToWire(this.tenantOf(opts), filter, opts),
      opts, { idempotent: true });
    return jobPageFromWire(res);
  }

  /** Every page of a listing, fetched one after the other as the loop asks for them. */
  async* iterJobPages(filter: JobFilter = {},
    opts: CallOptions & Omit<ListJobsOptions, 'cursor'> = {}): AsyncGenerator<JobPage, void, undefined> {
    let cursor = '';
    for (;;) {
      const page = await this.listJobs(filter, { ...opts, cursor });
      yield page;
      if (page.nextCursor === '') return;
      cursor = page.nextCursor;
    }
  }

  /**
   * Every job matching `filter`, page by page (`limit` is the page size): `for await (const job
   * of client.iterJobs({ queue: 'emails', statuses: ['failed'] })) ...`. Jobs that match
   * throughout are seen exactly once even while others are written.
   */
  async* iterJobs(filter: JobFilter = {},
    opts: CallOptions & Omit<ListJobsOptions, 'cursor'> = {}): AsyncGenerator<Job, void, undefined> {
    for await (const page of this.iterJobPages(filter, opts)) yield* page.jobs;
  }

  /**
   * Job counts by status for one queue, or for every queue of the tenant (queue omitted or ''),
   * in queue order. Served from counters: cheap. Retried (a read).
   */
  async countJobs(queue = '', opts: CallOptions = {}): Promise<QueueCounts[]> {
    const res = await this.call('countJobs', { tenant: this.tenantOf(opts), queue }, opts,
      { idempotent: true });
    return res.queues.map(countsFromWire);
  }

  /**
   * Runs one read-only SQL statement (SQLite) over the tenant's tables (jobs, job_metadata,
   * attempts, queues, concurrency_keys, floating_limits; docs/query.md) and returns its columns
   * and typed rows (QueryCell). Rejects with SluiceTimeoutError (code 'timeout') when its time
   * budget runs out, TooLargeError over the row or size cap, InvalidArgumentError for bad or
   * writing SQL, CancelledError when `signal` aborts (the server stops the query at once).
   * Retried only when it never reached the server (UNAVAILABLE): a query that ran out of time
   * would only run out again.
   */
  async query(sql: string, opts: QueryOptions = {}): Promise<QueryResult> {
    const timeoutMs = u32(opts.timeoutMs, 'timeoutMs');
    const req = {
      tenant: this.tenantOf(opts), sql, timeoutMs, maxRows: u32(opts.maxRows, 'maxRows'),
    };
    const res = await this.call('query', req, { ...opts, timeoutMs: undefined },
      {
        idempotent: true, waitMs: timeoutMs,
        transient: (e) => e instanceof SluiceError && e.grpcCode === GrpcCode.UNAVAILABLE,
      });
    return queryResultFromWire(res, opts.bigints ?? false);
  }

  /** What the node is: version, limits, default lease, and the caller's tenant binding. */
  async getNodeInfo(opts: CallOptions = {}): Promise<NodeInfo> {
    return nodeInfoFromWire(await this.call('getNodeInfo', {}, opts, { idempotent: true }));
  }

  // ---- Plumbing ------------------------------------------------------------------------------

  private tenantOf(opts: { tenant?: string }): string {
    return opts.tenant ?? this.tenant;
  }

  private jobId(spec: JobSpec): string {
    if (spec.id !== undefined) return spec.id;
    return this.generateIds ? uuidv7() : '';
  }

  /** One RPC with the plan's retry rule, deadlines and abort handling. */
  private call<M extends Method>(method: M, req: Req<M>, opts: CallOptions, plan: CallPlan):
  Promise<Res<M>> {
    if (this.closed) return Promise.reject(this.closedError());
    const wait = plan.waitMs ?? 0;
    const attemptMs = (opts.attemptTimeoutMs ?? this.attemptTimeoutMs) + wait;
    // An explicit timeoutMs is the call's deadline; the default stretches to fit a long-poll.
    const deadline = Date.now() + (opts.timeoutMs ?? Math.max(this.timeoutMs, attemptMs));
    const retry = plan.idempotent && opts.retry !== false
      ? (opts.retry ? resolveRetry(opts.retry, this.retry) : this.retry)
      : { ...this.retry, maxAttempts: 1 };
    return withRetries(retry,
      (n) => this.once(method, req, n, Math.min(deadline, Date.now() + attemptMs), opts.signal),
      {
        deadline, signal: opts.signal, transient: plan.transient,
        onRetry: (e, n) => {
          plan.onRetry?.(e);
          try {
            this.onRetryHook?.({ method, attempt: n, error: e as SluiceError });
          } catch { /* a metrics hook must not break the call */ }
        },
      });
  }

  private once<M extends Method>(method: M, req: Req<M>, attempt: number, deadline: number,
    signal: AbortSignal | undefined): Promise<Res<M>> {
    return new Promise<Res<M>>((resolve, reject) => {
      if (this.closed) {
        reject(this.closedError());
        return;
      }
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      const def = pb.SluiceService[method];
      const md = new grpc.Metadata();
      if (this.token !== undefined) md.set('authorization', `Bearer ${this.token}`);
      let onAbort: (() => void) | undefined;
      const call: grpc.ClientUnaryCall = this.raw.makeUnaryRequest(
        def.path,
        def.requestSerialize as (v: Req<M>) => Buffer,
        def.responseDeserialize as (b: Buffer) => Res<M>,
        req, md, { deadline },
        (err: grpc.ServiceError | null, res?: Res<M>) => {
          this.active.delete(call);
          if (onAbort) signal!.removeEventListener('abort', onAbort);
          if (err) {
            if (this.closed) reject(this.closedError());
            else if (signal?.aborted) reject(abortError(signal));
            else reject(fromServiceError(err, attempt));
          } else {
            resolve(res as Res<M>);
          }
        });
      this.active.add(call);
      if (signal) {
        onAbort = () => call.cancel();
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  private closedError(): ClosedError {
    return new ClosedError('the client is closed', {
      grpcCode: GrpcCode.CANCELLED, sluiceCode: 'closed', serverCode: false,
    });
  }
}
