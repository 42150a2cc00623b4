// What a Worker's handlers see and throw: the job context, the outcome rules (return → success,
// throw → failure with a code, JobCancelled → cancelled) and the abort reasons.
import { parseJson, resultBytes } from './payload.js';
import type { Outcome, Task } from './types.js';

/** A running job as its handler sees it. */
export interface JobContext {
  /** The job's id. */
  readonly id: string;
  readonly queue: string;
  /** 1-based attempt number (> 1: an earlier attempt failed or its lease expired). */
  readonly attempt: number;
  readonly payload: Buffer;
  readonly metadata: Record<string, string>;
  /** The leased task (ids, lease token, lease length). */
  readonly task: Task;
  /**
   * Aborted when the job's cancellation is requested (reason: CancelRequestedError), when the
   * lease is lost (LeaseLostError: the outcome will not be reported), or when stop() runs out
   * of time (WorkerStoppedError). Pass it to fetch() and friends, or check it between steps.
   */
  readonly signal: AbortSignal;
  /** The payload parsed as JSON (undefined when empty). */
  json<T = unknown>(): T;
  /** The payload as UTF-8 text. */
  text(): string;
}

/** A job handler: its return value is the result (see resultBytes), a throw is a failure. */
export type JobHandler = (job: JobContext) => unknown;

/**
 * Throw to fail the attempt with a chosen code (and optionally data, or no retry). Any other
 * thrown value fails with its string `code` property when it has one, else "handler_error".
 */
export class JobFailure extends Error {
  readonly code: string;
  readonly noRetry: boolean;
  readonly data: Uint8Array | string | undefined;

  constructor(code: string, message = '',
    opts: { noRetry?: boolean; data?: Uint8Array | string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'JobFailure';
    this.code = code;
    this.noRetry = opts.noRetry ?? false;
    this.data = opts.data;
  }
}

/** Throw to end the attempt as cancelled (the job ends cancelled, without a retry). */
export class JobCancelled extends Error {
  constructor(message = 'the handler cancelled the job') {
    super(message);
    this.name = 'JobCancelled';
  }
}

/** The abort reason when the job's cancellation was requested. */
export class CancelRequestedError extends Error {
  readonly code = 'cancel_requested';
  constructor(jobId: string) {
    super(`job "${jobId}": cancellation requested`);
    this.name = 'CancelRequestedError';
  }
}

/** The abort reason when stop() ran out of time; the attempt fails with "worker_stopped". */
export class WorkerStoppedError extends Error {
  readonly code = 'worker_stopped';
  constructor() {
    super('the worker stopped before the handler finished');
    this.name = 'WorkerStoppedError';
  }
}

/**
 * The abort reason, and the refreshFailed detail, of a refresh handler that did not return
 * within the Worker's refreshTimeoutMs; reported as a failure with code "refresh_timeout".
 */
export class RefreshTimeoutError extends Error {
  readonly code = 'refresh_timeout';
  constructor(readonly key: string, readonly timeoutMs: number) {
    super(`the refresh handler for "${key}" did not return within ${timeoutMs} ms`);
    this.name = 'RefreshTimeoutError';
  }
}

// Caps from the server's defaults (docs/operations.md): a report over them would be refused and
// the job would hang until its lease expired.
export const MAX_CODE_BYTES = 128;
export const MAX_MESSAGE_BYTES = 8 * 1024;

export function clip(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s) <= maxBytes) return s;
  let out = Buffer.from(s).subarray(0, maxBytes).toString('utf8');
  while (Buffer.byteLength(out) > maxBytes) out = out.slice(0, -1);  // a split character
  return out;
}

/** The failure code of a thrown value. */
export function failureCode(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return clip(code, MAX_CODE_BYTES);
  return 'handler_error';
}

function messageOf(e: unknown): string {
  if (e instanceof Error) return clip(e.message, MAX_MESSAGE_BYTES);
  return clip(String(e), MAX_MESSAGE_BYTES);
}

/** The outcome of a handler that returned `value`. */
export function successOutcome(value: unknown): Outcome {
  return { kind: 'success', result: resultBytes(value) };
}

/**
 * The outcome of a handler that threw `e`. `cancelRequested`: the job's cancellation had been
 * requested, so any throw ends it cancelled.
 */
export function thrownOutcome(e: unknown, cancelRequested: boolean): Outcome {
  if (e instanceof JobCancelled || cancelRequested) return { kind: 'cancelled' };
  if (e instanceof JobFailure) {
    const code = clip(e.code || 'handler_error', MAX_CODE_BYTES);
    if (e.data !== undefined && typeof e.data !== 'string' && !(e.data instanceof Uint8Array)) {
      // Not encodable: the attempt fails all the same, saying why, rather than its outcome
      // breaking the report that carries it and the others with it.
      const got = e.data === null ? 'null' : typeof e.data;
      return {
        kind: 'failure', code: 'handler_error', noRetry: e.noRetry,
        message: clip(`JobFailure data must be a Uint8Array or a string (got ${got}); the ` +
          `failure was ${code}: ${e.message}`, MAX_MESSAGE_BYTES),
      };
    }
    return {
      kind: 'failure', code, message: clip(e.message, MAX_MESSAGE_BYTES), data: e.data,
      noRetry: e.noRetry,
    };
  }
  const noRetry = (e as { noRetry?: unknown } | null)?.noRetry === true;
  return { kind: 'failure', code: failureCode(e), message: messageOf(e), noRetry };
}

/**
 * An AbortController made on first use of its signal: most handlers never read theirs, and a
 * controller per job is a measurable share of a fast handler's cost. Aborting before the first
 * use hands out an already aborted signal.
 */
export class LazyAbort {
  private ctl: AbortController | undefined;
  private aborted = false;
  private reason: unknown;

  get signal(): AbortSignal {
    if (this.ctl === undefined) {
      this.ctl = new AbortController();
      if (this.aborted) this.ctl.abort(this.reason);
    }
    return this.ctl.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.ctl?.abort(reason);
  }
}

/**
 * A handler's JobContext. `signal` is a getter on the prototype (its controller is made on first
 * use), so `{ ...job }` does not copy it; `json` and `text` are own functions, so
 * `({ json }) => json()` works.
 */
class Context implements JobContext {
  readonly id: string;
  readonly queue: string;
  readonly attempt: number;
  readonly payload: Buffer;
  readonly metadata: Record<string, string>;
  readonly json: <T = unknown>() => T;
  readonly text: () => string;

  constructor(readonly task: Task, private readonly abort: LazyAbort) {
    this.id = task.jobId;
    this.queue = task.queue;
    this.attempt = task.attempt;
    this.payload = task.payload;
    this.metadata = task.metadata;
    this.json = <T>() => parseJson<T>(task.payload);
    this.text = () => task.payload.toString('utf8');
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }
}

/** Builds a handler's JobContext. */
export function makeContext(task: Task, abort: LazyAbort): JobContext {
  return new Context(task, abort);
}

/** What a refresh handler sees. */
export interface RefreshContext {
  readonly key: string;
  readonly tenant: string;
  /** The key's metadata (from the jobs' floating limit). */
  readonly metadata: Record<string, string>;
  /** The max in force now. */
  readonly currentMax: number;
  readonly defaultMax: number;
  /** When the max was last refreshed (epoch ms; 0: never). */
  readonly lastRefreshedMs: number;
  /**
   * Aborted when the refresh lease is lost, when the handler runs past the Worker's
   * refreshTimeoutMs (reason: RefreshTimeoutError), or when stop() runs out of time.
   */
  readonly signal: AbortSignal;
}

/**
 * Computes a floating key's max: a returned integer >= 0 becomes the key's max (0 pauses it);
 * a throw is reported as a failure (the server keeps the old max and backs off).
 */
export type RefreshHandler = (ctx: RefreshContext) => number | Promise<number>;
