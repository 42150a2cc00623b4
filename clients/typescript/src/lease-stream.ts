// LeaseStream: LeaseTasks calls over one sluice.v1.Sluice/LeaseStream stream. Each lease() sends
// one request and resolves with its answer; answers come in request order, so a worker may send
// its next request before the previous one is answered (pipelining), without a new call's
// set-up per request.
import type * as grpc from '@grpc/grpc-js';
import { GrpcCode, type SluiceError, fromServiceError, makeError } from './errors.js';
import type * as pb from './gen/sluice/v1/sluice.js';
import { abortError } from './retry.js';
import type { LeaseRequest, LeaseResponse } from './types.js';

/** Converts a request and its answer between the wire and the client's types (client.ts). */
export interface LeaseCodec {
  toWire(req: LeaseRequest): pb.LeaseTasksRequest;
  fromWire(res: pb.LeaseTasksResponse, req: LeaseRequest): LeaseResponse;
}

interface Pending {
  req: LeaseRequest;
  resolve: (r: LeaseResponse) => void;
  reject: (e: unknown) => void;
  /** performance.now() after which the answer is overdue. */
  due: number;
  /** Its signal aborted while requests were queued behind it: its answer is dropped. */
  abandoned: boolean;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** How often overdue answers are looked for. */
const WATCH_MS = 250;

/**
 * One open lease stream (SluiceClient.openLeaseStream). Requests are answered in order. When a
 * request fails the stream ends: that request and every later one reject with the error (the
 * server applied none of the later ones; for a broken or timed-out stream, requests may have
 * been applied with their answers lost, as with a failed LeaseTasks call). An answer overdue by
 * the attempt timeout (plus the request's waitMs) cancels the stream with a
 * SluiceTimeoutError (DEADLINE_EXCEEDED). A request whose signal aborts cancels the stream:
 * use signals on long-polls that nothing else is queued behind. Open a new stream after one
 * ends; `ended` says whether it has.
 */
export class LeaseStream {
  /** Requests in flight, oldest first (a handful: shift() is cheap). */
  private readonly pending: Pending[] = [];
  private end: SluiceError | undefined;
  private finished = false;
  private readonly watch: NodeJS.Timeout;

  /** @internal Created by SluiceClient.openLeaseStream. */
  constructor(
    private readonly call: grpc.ClientDuplexStream<pb.LeaseTasksRequest, pb.LeaseTasksResponse>,
    private readonly codec: LeaseCodec,
    private readonly attemptTimeoutMs: number,
    private readonly onEnd: () => void,
  ) {
    call.on('data', (res: pb.LeaseTasksResponse) => this.answer(res));
    call.on('error', (e: grpc.ServiceError) => this.fail(fromServiceError(e, 1)));
    call.on('status', (s: grpc.StatusObject) => {
      if (s.code === GrpcCode.OK) {
        this.fail(makeError(GrpcCode.UNAVAILABLE, '',
          'the lease stream ended before answering every request', {}));
      }
    });
    this.watch = setInterval(() => this.checkOverdue(), WATCH_MS);
    this.watch.unref();
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.length;
  }

  /** Whether the stream has ended (every later lease() rejects). */
  get ended(): boolean {
    return this.end !== undefined;
  }

  /**
   * Sends one LeaseTasks request (LeaseRequest as for SluiceClient.leaseTasks) and resolves
   * with its answer. `signal` aborting rejects it at once (CancelledError) and cancels the
   * stream when nothing else is in flight on it; otherwise the stream goes on and the answer,
   * when it comes, is dropped (tasks it leased wait for their leases to expire, as with a
   * cancelled LeaseTasks call; a request sent behind a waiting one ends its wait early), and
   * once only such requests are left in flight the stream is cancelled.
   */
  lease(req: LeaseRequest, opts: { signal?: AbortSignal } = {}): Promise<LeaseResponse> {
    if (this.end) return Promise.reject(this.end);
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    let wire: pb.LeaseTasksRequest;
    try {
      wire = this.codec.toWire(req);
    } catch (e) {
      return Promise.reject(e);  // bad input: nothing is sent
    }
    return new Promise<LeaseResponse>((resolve, reject) => {
      const p: Pending = {
        req, resolve, reject, signal, onAbort: undefined, abandoned: false,
        due: performance.now() + this.attemptTimeoutMs + (req.waitMs ?? 0),
      };
      if (signal) {
        p.onAbort = () => this.abort(p, abortError(signal));
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.pending.push(p);
      this.call.write(wire);
    });
  }

  /** Half-closes: requests in flight are still answered, then the stream ends. */
  close(): void {
    if (this.end) return;
    this.end = makeError(GrpcCode.CANCELLED, '', 'the lease stream was closed', {});
    if (this.pending.length === 0) this.finish();
    this.call.end();
  }

  /** Cancels the stream: requests in flight reject with `reason` (default CancelledError). */
  cancel(reason?: SluiceError): void {
    this.fail(reason ?? makeError(GrpcCode.CANCELLED, '', 'the lease stream was cancelled', {}));
    this.call.cancel();
  }

  private abort(p: Pending, e: SluiceError): void {
    if (this.pending.every((x) => x === p || x.abandoned)) {
      this.cancel(e);
      return;
    }
    p.abandoned = true;
    p.onAbort = undefined;
    p.reject(e);
  }

  private answer(res: pb.LeaseTasksResponse): void {
    const p = this.pending.shift();
    if (p === undefined) {
      this.cancel(makeError(GrpcCode.INTERNAL, '',
        'the lease stream answered a request it was not sent', {}));
      return;
    }
    try {
      if (p.abandoned) return;
      if (p.onAbort) p.signal!.removeEventListener('abort', p.onAbort);
      let out: LeaseResponse;
      try {
        out = this.codec.fromWire(res, p.req);
      } catch (e) {
        p.reject(e);
        return;
      }
      p.resolve(out);
    } finally {
      if (this.end && this.pending.length === 0) {
        this.finish();
      } else if (this.pending.length > 0 && this.pending.every((x) => x.abandoned)) {
        // Only requests nobody waits for are left (a long-poll whose signal aborted while this
        // one was in flight): cancel, or the server would lease into answers that are dropped.
        this.cancel();
      }
    }
  }

  /** Ends the stream: every request in flight rejects with `e`. */
  private fail(e: SluiceError): void {
    this.end ??= e;
    const left = this.pending.splice(0);
    for (const p of left) {
      if (p.abandoned) continue;
      if (p.onAbort) p.signal!.removeEventListener('abort', p.onAbort);
      p.reject(e);
    }
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.watch);
    this.onEnd();
  }

  private checkOverdue(): void {
    const p = this.pending[0];
    if (p !== undefined && performance.now() > p.due) {
      this.cancel(makeError(GrpcCode.DEADLINE_EXCEEDED, '', 'a lease stream answer is overdue', {}));
    }
  }
}
