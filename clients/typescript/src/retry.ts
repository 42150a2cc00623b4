// Retry with exponential backoff and full jitter, and abortable waits. Only the caller decides
// whether a call is idempotent; this module only decides when to try again.
import { CancelledError, GrpcCode, isTransient } from './errors.js';

/** How a client retries idempotent calls that failed transiently. */
export interface RetryOptions {
  /** Tries in all, the first included (default 8; 1 disables retries). */
  maxAttempts?: number;
  /** Backoff before the first retry, before jitter (default 100 ms). */
  initialBackoffMs?: number;
  /** Cap of one backoff (default 3000 ms). */
  maxBackoffMs?: number;
  /** Growth per retry (default 2). */
  multiplier?: number;
}

export type ResolvedRetry = Required<RetryOptions>;

export const DEFAULT_RETRY: ResolvedRetry = {
  maxAttempts: 8,
  initialBackoffMs: 100,
  maxBackoffMs: 3000,
  multiplier: 2,
};

export function resolveRetry(r: RetryOptions | false | undefined,
  base: ResolvedRetry = DEFAULT_RETRY): ResolvedRetry {
  if (r === false) return { ...base, maxAttempts: 1 };
  const out = { ...base, ...Object.fromEntries(Object.entries(r ?? {}).filter(([, v]) => v !== undefined)) };
  if (!(out.maxAttempts >= 1) || !(out.initialBackoffMs >= 0) || !(out.maxBackoffMs >= 0) ||
      !(out.multiplier >= 1)) {
    throw new RangeError('retry: maxAttempts >= 1, backoffs >= 0 and multiplier >= 1 are required');
  }
  return out;
}

/** Full jitter: uniform in [0, min(max, initial * multiplier^(retry-1))]; retry is 1-based. */
export function backoffMs(r: ResolvedRetry, retry: number): number {
  const cap = Math.min(r.maxBackoffMs, r.initialBackoffMs * Math.pow(r.multiplier, retry - 1));
  return Math.random() * cap;
}

/** Resolves after ms, or rejects with CancelledError when the signal aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function abortError(signal: AbortSignal): CancelledError {
  return new CancelledError('the call was aborted', {
    grpcCode: GrpcCode.CANCELLED, cause: signal.reason,
  });
}

/**
 * Runs `attempt(n)` (n = 1, 2, ...) until it succeeds, fails with a non-transient error (per
 * `opts.transient`, default isTransient), the
 * attempts are used up, `deadline` (epoch ms) would pass during the backoff, or the signal
 * aborts. `onRetry` sees each transient error before its backoff.
 */
export async function withRetries<T>(
  r: ResolvedRetry,
  attempt: (n: number) => Promise<T>,
  opts: {
    deadline: number; signal?: AbortSignal; onRetry?: (e: unknown, n: number) => void;
    /** Which failures may be retried (default: isTransient). */
    transient?: (e: unknown) => boolean;
  },
): Promise<T> {
  const transient = opts.transient ?? isTransient;
  for (let n = 1; ; ++n) {
    try {
      return await attempt(n);
    } catch (e) {
      if (n >= r.maxAttempts || !transient(e) || opts.signal?.aborted) throw e;
      const wait = backoffMs(r, n);
      if (Date.now() + wait >= opts.deadline) throw e;
      opts.onRetry?.(e, n);
      await sleep(wait, opts.signal);
    }
  }
}
