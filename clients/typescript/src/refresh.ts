// Runs floating-limit refresh tasks for a Worker: finds the handler for the key, keeps the
// refresh lease alive with its own HeartbeatRefresh timer, and reports the new max or a failure.
import type { SluiceClient } from './client.js';
import { LeaseLostError } from './errors.js';
import {
  MAX_CODE_BYTES, MAX_MESSAGE_BYTES, type RefreshContext, type RefreshHandler,
  RefreshTimeoutError, WorkerStoppedError, clip, failureCode,
} from './handler.js';
import type { RefreshOutcome, RefreshTask } from './types.js';

/** Refresh handlers by key, or one handler for every key. */
export type RefreshHandlers = Record<string, RefreshHandler> | RefreshHandler;

export interface RefreshHooks {
  /** A refresh was reported (newMax) or failed (error), or was lost. */
  onDone(kind: 'refreshed' | 'refreshFailed' | 'refreshLost', rt: RefreshTask, detail: unknown): void;
  /** A call failed in a way the worker should surface. */
  onError(e: unknown, key: string): void;
}

const MIN_HEARTBEAT_MS = 50;
const MAX_HEARTBEAT_MS = 10_000;

interface Running {
  rt: RefreshTask;
  ctl: AbortController;
  timer: NodeJS.Timeout | undefined;
  /** Fires at the Worker's refreshTimeoutMs: the handler's run is reported failed. */
  deadline: NodeJS.Timeout | undefined;
  lost: boolean;
  /** The outcome is being reported: heartbeats stop, and the report's answer decides. */
  reporting: boolean;
  interval: number;
}

export class RefreshRunner {
  private readonly running = new Map<string, Running>();  // by key + token
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly client: SluiceClient,
    private readonly handlers: RefreshHandlers | undefined,
    private readonly workerId: string,
    /** Longest a handler may run before its refresh is reported failed (0: no limit). */
    private readonly timeoutMs: number,
    private readonly hooks: RefreshHooks,
  ) {}

  get size(): number {
    return this.running.size;
  }

  /** Resolves once no refresh is running. */
  idle(): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Aborts every running refresh (stop() ran out of time); they are not reported. */
  abandon(): void {
    for (const r of this.running.values()) this.lose(r, new WorkerStoppedError());
  }

  private handlerFor(key: string): RefreshHandler | undefined {
    if (typeof this.handlers === 'function') return this.handlers;
    if (this.handlers && Object.prototype.hasOwnProperty.call(this.handlers, key)) {
      return this.handlers[key];
    }
    return undefined;
  }

  /** Starts one refresh task (never throws; outcomes go to the hooks). */
  start(rt: RefreshTask): void {
    const id = `${rt.key}\u0000${rt.leaseToken}`;
    if (this.running.has(id)) return;  // the same refresh lease delivered twice
    const handler = this.handlerFor(rt.key);
    // The lease's length from the server when it sends it; else estimated from the expiry
    // (which trusts the two clocks to agree).
    const leaseLen = rt.leaseMs > 0 ? rt.leaseMs : Math.max(0, rt.leaseExpiresMs - Date.now());
    const r: Running = {
      rt, ctl: new AbortController(), timer: undefined, deadline: undefined, lost: false,
      reporting: false,
      interval: Math.min(MAX_HEARTBEAT_MS, Math.max(MIN_HEARTBEAT_MS, leaseLen / 3)),
    };
    this.running.set(id, r);
    if (!handler) {
      // No handler: say so at once instead of letting the refresh lease expire.
      void this.report(r, {
        errorCode: 'no_refresh_handler',
        errorMessage: `worker "${this.workerId}" has no refresh handler for key "${rt.key}"`,
      }, new Error(`no refresh handler for key "${rt.key}"`));
      return;
    }
    this.schedule(id, r);
    if (this.timeoutMs > 0) {
      r.deadline = setTimeout(() => {
        r.deadline = undefined;
        if (r.lost || r.reporting) return;
        const e = new RefreshTimeoutError(rt.key, this.timeoutMs);
        r.ctl.abort(e);
        void this.report(r, { errorCode: e.code, errorMessage: clip(e.message, MAX_MESSAGE_BYTES) }, e);
      }, this.timeoutMs);
    }
    const ctx: RefreshContext = {
      key: rt.key, tenant: rt.tenant, metadata: rt.metadata, currentMax: rt.currentMax,
      defaultMax: rt.defaultMax, lastRefreshedMs: rt.lastRefreshedMs, signal: r.ctl.signal,
    };
    Promise.resolve().then(() => handler(ctx)).then(
      (v) => {
        if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) {
          return this.report(r, { newMax: v }, v);
        }
        const e = new TypeError(`refresh handler for "${rt.key}" returned ${shown(v)}, not an ` +
          'integer in 0..4294967295');
        return this.report(r, { errorCode: 'invalid_refresh_value', errorMessage: e.message }, e);
      },
      (e: unknown) => this.report(r, thrownRefreshOutcome(e), e),
    ).catch((e: unknown) => {
      // A bug here must not leave the refresh heartbeating forever: report a failure.
      this.hooks.onError(e, rt.key);
      if (!r.lost && !r.reporting) {
        void this.report(r, { errorCode: 'refresh_error', errorMessage: 'the refresh failed' }, e);
      }
    });
  }

  private schedule(id: string, r: Running, delay = r.interval): void {
    r.timer = setTimeout(() => void this.heartbeat(id, r), Math.max(0, delay));
  }

  /**
   * One heartbeat. The next is due an interval (a third of the lease) after this one was sent,
   * however long it took, and each gives up after three quarters of an interval: one stalled
   * call leaves two more tries before the lease runs out.
   */
  private async heartbeat(id: string, r: Running): Promise<void> {
    if (r.lost || r.reporting || !this.running.has(id)) return;
    const sentAt = performance.now();
    try {
      await this.client.heartbeatRefresh(r.rt,
        { timeoutMs: Math.max(MIN_HEARTBEAT_MS, r.interval * 0.75) });
    } catch (e) {
      if (r.lost || r.reporting || !this.running.has(id)) return;
      if (e instanceof LeaseLostError) {
        this.lose(r, e);
        return;
      }
      this.hooks.onError(e, r.rt.key);
    }
    if (!r.lost && !r.reporting && this.running.has(id)) {
      this.schedule(id, r, sentAt + r.interval - performance.now());
    }
  }

  private lose(r: Running, reason: unknown): void {
    if (r.lost) return;
    r.lost = true;
    r.ctl.abort(reason);
    this.finish(r);
    this.hooks.onDone('refreshLost', r.rt, reason);
  }

  private async report(r: Running, outcome: RefreshOutcome, detail: unknown): Promise<void> {
    if (r.lost || r.reporting) return;  // lease lost: never report; reported once
    r.reporting = true;
    if (r.timer) clearTimeout(r.timer);
    r.timer = undefined;
    try {
      await this.client.reportRefreshOutcome(r.rt, outcome);
      if (r.lost) return;
      this.finish(r);
      this.hooks.onDone('newMax' in outcome ? 'refreshed' : 'refreshFailed', r.rt, detail);
    } catch (e) {
      if (r.lost) return;
      this.finish(r);
      if (e instanceof LeaseLostError) this.hooks.onDone('refreshLost', r.rt, e);
      else this.hooks.onError(e, r.rt.key);
    }
  }

  private finish(r: Running): void {
    if (r.timer) clearTimeout(r.timer);
    r.timer = undefined;
    if (r.deadline) clearTimeout(r.deadline);
    r.deadline = undefined;
    this.running.delete(`${r.rt.key}\u0000${r.rt.leaseToken}`);
    if (this.running.size === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }
}

/** A value as text for a message, never throwing, at most 200 characters. */
function shown(v: unknown): string {
  let s: string;
  try {
    s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  } catch {
    s = Object.prototype.toString.call(v);
  }
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
}

/**
 * The failure a refresh handler's throw is reported as: its string `code` (else
 * refresh_error) and its message, both cut to the server's caps in bytes. Never throws.
 */
function thrownRefreshOutcome(e: unknown): RefreshOutcome {
  let code = 'refresh_error';
  let message = 'the refresh handler threw';
  try {
    const c = failureCode(e);
    if (c !== 'handler_error') code = c;
    message = e instanceof Error ? e.message : String(e);
  } catch { /* a thrown value that cannot be shown */ }
  return { errorCode: clip(code, MAX_CODE_BYTES), errorMessage: clip(message, MAX_MESSAGE_BYTES) };
}
