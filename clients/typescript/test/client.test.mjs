// SluiceClient against a real sluiced: every RPC, the error classes, auth, tenants, TLS,
// deadlines and the retry rules.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  CancelledError, FailedPreconditionError, InvalidArgumentError, LeaseLostError, NotFoundError,
  PermissionDeniedError, SluiceClient, SluiceError, SluiceTimeoutError, TooLargeError,
  UnauthenticatedError, UnavailableError, errorClassFor, GrpcCode, isTransient, jsonBytes,
  parseJson, resultBytes, uuidv7,
} from '../dist/index.js';
import { Sluiced, TOKEN, freePort, tempDir } from './harness.mjs';

let srv;
let client;
const q = (name) => `${name}-${Math.random().toString(36).slice(2, 8)}`;

before(async () => {
  srv = await new Sluiced({ tokens: [TOKEN, 'acme-token@acme'] }).start();
  client = new SluiceClient({ address: srv.grpc, token: TOKEN });
});
after(async () => {
  client?.close();
  await srv?.destroy();
});

async function leaseOne(queue, opts = {}) {
  const { tasks } = await client.leaseTasks(
    { queue, workerId: opts.workerId ?? 'w1', maxTasks: 1, waitMs: 2000 }, opts);
  assert.equal(tasks.length, 1, `one task of ${queue}`);
  return tasks[0];
}

describe('producers', () => {
  test('enqueue generates a UUIDv7 id and a retried enqueue finds the same job', async () => {
    const queue = q('enq');
    const h = await client.enqueue({ queue, json: { n: 1 }, metadata: { a: 'b' }, priority: 7 });
    assert.match(h.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(h.created, true);
    assert.equal(h.enqueuedStatus, 'waiting');
    const again = await client.enqueue({ queue, id: h.id, payload: 'other' });
    assert.equal(again.created, false);
    const job = await h.get();
    assert.deepEqual(parseJson(job.payload), { n: 1 });
    assert.equal(job.priority, 7);
    assert.deepEqual(job.metadata, { a: 'b' });
    assert.equal(job.status, 'waiting');
  });

  test('enqueue with id "" lets the server generate one', async () => {
    const h = await client.enqueue({ queue: q('srvid'), id: '' });
    assert.ok(h.id.length > 0);
    assert.equal(h.created, true);
  });

  test('enqueueBatch stores all jobs in order; a bad job rejects the batch', async () => {
    const queue = q('batch');
    const hs = await client.enqueueBatch([0, 1, 2].map((i) => ({ queue, json: i })));
    assert.equal(hs.length, 3);
    for (const [i, h] of hs.entries()) {
      assert.equal(h.created, true);
      assert.deepEqual(parseJson((await h.get()).payload), i);
    }
    await assert.rejects(client.enqueueBatch([{ queue }, { queue: '' }]),
      (e) => e instanceof InvalidArgumentError && e.code === 'invalid_argument' &&
        /jobs\[1\]/.test(e.message));
  });

  test('scheduled jobs, expedite, cancel, restart, delete through a JobHandle', async () => {
    const queue = q('ops');
    const h = await client.enqueue({ queue, startAtMs: Date.now() + 3_600_000 });
    assert.equal(await h.status(), 'scheduled');
    await h.expedite();
    assert.equal(await h.status(), 'waiting');
    const c = await h.cancel();
    assert.deepEqual(c, { status: 'cancelled', cancelRequested: false });
    assert.deepEqual(await h.cancel(), { status: 'cancelled', cancelRequested: false }, 'idempotent');
    await h.restart();
    assert.equal(await h.status(), 'waiting');
    await assert.rejects(h.restart(), FailedPreconditionError);
    await h.delete();
    await assert.rejects(h.get(), NotFoundError);
    await assert.rejects(client.job('no-such-job').status(), (e) =>
      e instanceof NotFoundError && e.code === 'not_found' && e.grpcCode === GrpcCode.NOT_FOUND);
  });

  test('retry policy and limits round-trip; omitted retry fields take the engine defaults', async () => {
    const queue = q('spec');
    const h = await client.enqueue({
      queue, leaseMs: 5000, retry: { maxRetries: 1 },
      limits: [{ key: 'k1', max: 2 },
        { kind: 'floating', key: 'f1', max: 3, refreshIntervalMs: 60000, metadata: { x: 'y' } }],
    });
    const job = await h.get();
    assert.equal(job.leaseMs, 5000);
    assert.deepEqual(job.retry,
      { maxRetries: 1, initialBackoffMs: 1000, maxBackoffMs: 60000, multiplier: 2, jitter: false });
    assert.deepEqual(job.limits, [
      { kind: 'fixed', key: 'k1', max: 2, refreshIntervalMs: 0, metadata: {} },
      { kind: 'floating', key: 'f1', max: 3, refreshIntervalMs: 60000, metadata: { x: 'y' } },
    ]);
    await h.cancel();
  });
});

describe('workers (raw RPCs)', () => {
  test('lease, heartbeat, report success; getJob with attempts; getJobResult', async () => {
    const queue = q('raw');
    const h = await client.enqueue({ queue, payload: 'hi', leaseMs: 4000 });
    const t = await leaseOne(queue);
    assert.equal(t.jobId, h.id);
    assert.equal(t.attempt, 1);
    assert.equal(t.leaseMs, 4000);
    assert.equal(t.payload.toString(), 'hi');
    assert.equal(typeof t.leaseToken, 'bigint');
    const hb = await client.heartbeat(t);
    assert.equal(hb.cancelRequested, false);
    assert.ok(hb.leaseExpiresMs >= t.leaseExpiresMs);
    await client.reportOutcome(t, { kind: 'success', result: 'done' });
    const r = await h.result();
    assert.equal(r.status, 'succeeded');
    assert.equal(r.finished, true);
    assert.equal(r.text(), 'done');
    const job = await h.get({ includeAttempts: true });
    assert.equal(job.attempts.length, 1);
    assert.equal(job.attempts[0].status, 'succeeded');
    assert.equal(job.attempts[0].workerId, 'w1');
    // A second report and a heartbeat with the spent token: lease lost, not failed precondition.
    await assert.rejects(client.reportOutcome(t), (e) =>
      e instanceof LeaseLostError && e.code === 'lease_lost' &&
      e.grpcCode === GrpcCode.FAILED_PRECONDITION);
    await assert.rejects(client.heartbeat(t), LeaseLostError);
  });

  test('failure with a code retries; no_retry fails; cancelled ends cancelled', async () => {
    const queue = q('fail');
    const h = await client.enqueue({ queue, retry: { maxRetries: 3, initialBackoffMs: 1 } });
    let t = await leaseOne(queue);
    await client.reportOutcome(t, { kind: 'failure', code: 'boom', message: 'it broke', data: 'd' });
    t = await leaseOne(queue);
    assert.equal(t.attempt, 2);
    await client.reportOutcome(t, { kind: 'failure', code: 'fatal', noRetry: true });
    const r = await h.result();
    assert.equal(r.status, 'failed');
    assert.equal(r.errorCode, 'fatal');
    const job = await h.get({ includeAttempts: true });
    assert.equal(job.attempts[0].errorCode, 'boom');
    assert.equal(job.attempts[0].errorMessage, 'it broke');
    assert.equal(job.attempts[0].errorData.toString(), 'd');

    const h2 = await client.enqueue({ queue });
    const t2 = await leaseOne(queue);
    const c = await h2.cancel();
    assert.deepEqual(c, { status: 'running', cancelRequested: true });
    assert.equal((await client.heartbeat(t2)).cancelRequested, true);
    await client.reportOutcome(t2, { kind: 'cancelled' });
    assert.equal(await h2.status(), 'cancelled');
  });

  test('reportOutcomes answers per report', async () => {
    const queue = q('many');
    await client.enqueueBatch([{ queue }, { queue }]);
    const { tasks } = await client.leaseTasks({ queue, workerId: 'w', maxTasks: 2, waitMs: 1000 });
    assert.equal(tasks.length, 2);
    const stale = { ...tasks[1], leaseToken: tasks[1].leaseToken + 1000n };
    const res = await client.reportOutcomes([
      { task: tasks[0], outcome: { kind: 'success', result: jsonBytes({ ok: 1 }) } },
      { task: stale },
    ]);
    assert.equal(res[0], null);
    assert.ok(res[1] instanceof LeaseLostError);
    assert.equal(res[1].code, 'lease_lost');
    await client.reportOutcome(tasks[1]);
  });

  test('a heartbeat from another worker id is lease lost', async () => {
    const queue = q('hbw');
    await client.enqueue({ queue });
    const t = await leaseOne(queue);
    await assert.rejects(client.heartbeat({ ...t, workerId: 'someone-else' }), LeaseLostError);
    await client.reportOutcome(t);
  });

  test('leaseTasks long-polls: an enqueue wakes it at once', async () => {
    const queue = q('poll');
    const started = Date.now();
    const p = client.leaseTasks({ queue, workerId: 'w', maxTasks: 5, waitMs: 10_000 });
    setTimeout(() => void client.enqueue({ queue }), 300);
    const { tasks } = await p;
    assert.equal(tasks.length, 1);
    assert.ok(Date.now() - started < 3000);
    await client.reportOutcome(tasks[0]);
    const empty = await client.leaseTasks({ queue, workerId: 'w', maxTasks: 1, waitMs: 200 });
    assert.deepEqual(empty, { tasks: [], refreshes: [], reportStatuses: [] });
  });

  test('leaseTasks with reports: applied first, one status each in order; a bad lease request applies none', async () => {
    const queue = q('ride');
    const [a, b, c] = await client.enqueueBatch([{ queue, json: 'a' }, { queue, json: 'b' }, { queue, json: 'c' }]);
    const { tasks } = await client.leaseTasks({ queue, workerId: 'w1', maxTasks: 2, waitMs: 0 });
    assert.equal(tasks.length, 2);
    const [t1, t2] = tasks;
    // A bad lease request (no worker id): nothing is applied, the call fails as a whole.
    await assert.rejects(client.leaseTasks({ queue, workerId: '', maxTasks: 1, reports: [{ task: t1 }] }),
      InvalidArgumentError);
    assert.equal((await client.getJob(t1.jobId)).status, 'running');
    const res = await client.leaseTasks({
      queue, workerId: 'w1', maxTasks: 5, waitMs: 0,
      reports: [
        { task: t1, outcome: { kind: 'success', result: 'one' } },
        { task: { ...t2, leaseToken: t2.leaseToken + 7n }, outcome: { kind: 'success' } },
        { task: t2, outcome: { kind: 'failure', code: 'nope', noRetry: true } },
      ],
    });
    assert.equal(res.reportStatuses.length, 3);
    assert.equal(res.reportStatuses[0], null);
    assert.ok(res.reportStatuses[1] instanceof LeaseLostError);
    assert.equal(res.reportStatuses[1].code, 'lease_lost');
    assert.equal(res.reportStatuses[2], null);
    // ... and the lease that followed fetched the third job.
    assert.deepEqual(res.tasks.map((t) => t.jobId), [c.id]);
    const byId = { [a.id]: await a.result(), [b.id]: await b.result() };
    assert.equal(byId[t1.jobId].text(), 'one');
    assert.equal(byId[t2.jobId].errorCode, 'nope');
    await client.reportOutcome(res.tasks[0]);
  });

  test('leaseStream: requests sent before their answers come back are answered in order, with their reports', async () => {
    const queue = q('stream');
    const hs = await client.enqueueBatch(Array.from({ length: 8 }, (_, i) => ({ queue, json: i })));
    const s = client.leaseStream();
    const [r1, r2, r3] = await Promise.all([1, 2, 3].map((n) => s.lease({ queue, workerId: 'w1', maxTasks: n })));
    assert.deepEqual([r1.tasks.length, r2.tasks.length, r3.tasks.length], [1, 2, 3]);
    const tasks = [...r1.tasks, ...r2.tasks, ...r3.tasks];
    assert.equal(new Set(tasks.map((t) => t.jobId)).size, 6);
    assert.ok(tasks.every((t) => t.workerId === 'w1' && t.leaseMs > 0 && typeof t.leaseToken === 'bigint'));
    // Reports ride on the next request: applied first, one status each, then 2 more leased.
    const p = s.lease({
      queue, workerId: 'w1', maxTasks: 5,
      reports: tasks.map((t, i) => ({ task: i === 0 ? { ...t, leaseToken: t.leaseToken + 1n } : t, outcome: { kind: 'success', result: `r${i}` } })),
    });
    assert.equal(s.inFlight, 1);
    const res = await p;
    assert.equal(s.inFlight, 0);
    assert.ok(res.reportStatuses[0] instanceof LeaseLostError);
    assert.deepEqual(res.reportStatuses.slice(1), [null, null, null, null, null]);
    assert.equal(res.tasks.length, 2);
    const done = await Promise.all(hs.map((h) => h.status()));
    assert.equal(done.filter((st) => st === 'succeeded').length, 5);
    s.close();
    assert.ok(s.ended);
    await assert.rejects(s.lease({ queue, workerId: 'w1' }), CancelledError);
  });

  test('leaseStream: a failed request rejects with its error class, so do the ones behind it, and the stream ends', async () => {
    const queue = q('streamfail');
    await client.enqueue({ queue, id: `${queue}-job` });
    const s = client.leaseStream();
    const bad = s.lease({ queue, workerId: '', maxTasks: 1 });  // no worker id: INVALID_ARGUMENT
    const behind = s.lease({ queue, workerId: 'w', maxTasks: 1 });
    await assert.rejects(bad, (e) => e instanceof InvalidArgumentError && e.code === 'invalid_argument');
    await assert.rejects(behind, InvalidArgumentError);
    assert.ok(s.ended);
    assert.equal((await client.getJob(`${queue}-job`)).status, 'waiting', 'the request behind the bad one was not applied');
    // Bad input is refused before anything is sent.
    const s2 = client.leaseStream();
    await assert.rejects(s2.lease({ queue, workerId: 'w', maxTasks: -1 }), RangeError);
    assert.equal(s2.ended, false);
    s2.close();
  });

  test('leaseStream: aborting a waiting request cancels the stream at once', async () => {
    const s = client.leaseStream();
    const ctl = new AbortController();
    const t0 = Date.now();
    const p = s.lease({ queue: q('streamabort'), workerId: 'w', maxTasks: 1, waitMs: 20_000 }, { signal: ctl.signal });
    setTimeout(() => ctl.abort(), 100);
    await assert.rejects(p, CancelledError);
    assert.ok(Date.now() - t0 < 2000);
    assert.ok(s.ended);
    // With a request queued behind it, an aborted wait rejects at once and the stream goes on:
    // the request behind it ends the wait early and is answered.
    const queue = q('streamabort2');
    await client.enqueue({ queue });
    const s2 = client.leaseStream();
    const ctl2 = new AbortController();
    const waiting = s2.lease({ queue: q('idle'), workerId: 'w', maxTasks: 1, waitMs: 20_000 }, { signal: ctl2.signal });
    const behind = s2.lease({ queue, workerId: 'w', maxTasks: 1 });
    ctl2.abort();
    await assert.rejects(waiting, CancelledError);
    const t1 = Date.now();
    assert.equal((await behind).tasks.length, 1);
    assert.ok(Date.now() - t1 < 2000 && !s2.ended);
    await client.reportOutcome((await behind).tasks[0]);
    s2.close();
    const bad = new SluiceClient({ address: srv.grpc, token: 'not-a-valid-token' });
    await assert.rejects(bad.leaseStream().lease({ queue: 'x', workerId: 'w' }), UnauthenticatedError);
    bad.close();
  });

  test('keepalive pings during a long-poll are accepted by sluiced (no GOAWAY)', async () => {
    // The client pings every 10 s by default; sluiced (gRPC's server defaults) only refuses
    // pings well under a second apart (measured: 600 ms refused, 1000 ms accepted).
    const c = new SluiceClient({
      address: srv.grpc, token: TOKEN, retry: false,
      channelOptions: { 'grpc.keepalive_time_ms': 1500, 'grpc.keepalive_timeout_ms': 1000 },
    });
    for (let i = 0; i < 2; ++i) {
      const r = await c.leaseTasks({ queue: q('ka'), workerId: 'w', maxTasks: 1, waitMs: 2500 });
      assert.equal(r.tasks.length, 0);
    }
    c.close();
  });
});

describe('results', () => {
  test('awaitResult waits server-side and returns as soon as the job ends', async () => {
    const queue = q('await');
    const h = await client.enqueue({ queue });
    const t = await leaseOne(queue);
    let calls = 0;
    const orig = client.getJobResult.bind(client);
    const counting = Object.create(client);
    counting.getJobResult = (...a) => { ++calls; return orig(...a); };
    const started = Date.now();
    const p = SluiceClient.prototype.awaitResult.call(counting, h.id, { pollMs: 20_000 });
    setTimeout(() => void client.reportOutcome(t, { kind: 'success', result: jsonBytes([1, 2]) }), 700);
    const r = await p;
    const took = Date.now() - started;
    assert.equal(r.status, 'succeeded');
    assert.deepEqual(r.json(), [1, 2]);
    assert.equal(calls, 1, 'one server-side wait, no polling');
    assert.ok(took >= 600 && took < 2500, `took ${took} ms`);
  });

  test('awaitResult loops its server-side waits and times out', async () => {
    const queue = q('await2');
    const h = await client.enqueue({ queue });
    const started = Date.now();
    await assert.rejects(h.awaitResult({ timeoutMs: 700, pollMs: 250 }), (e) =>
      e instanceof SluiceTimeoutError && e.code === 'timeout' && !e.serverCode);
    const took = Date.now() - started;
    assert.ok(took >= 650 && took < 2500, `took ${took} ms`);
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 200);
    await assert.rejects(h.awaitResult({ signal: ctl.signal }), CancelledError);
    await h.cancel();
    const r = await h.awaitResult({ timeoutMs: 2000 });
    assert.equal(r.status, 'cancelled');
  });

  test('awaitResult keeps its timeoutMs when the server stalls', async () => {
    // A stopped sluiced accepts the connection's bytes and never answers: each GetJobResult
    // would wait out the client's own deadlines (30 s by default) without the caller's bound.
    const stalled = await new Sluiced().start();
    const c = new SluiceClient({ address: stalled.grpc, token: TOKEN });
    try {
      const h = await c.enqueue({ queue: 'stall' });
      stalled.proc.kill('SIGSTOP');
      const started = Date.now();
      await assert.rejects(h.awaitResult({ timeoutMs: 500 }), (e) =>
        e instanceof SluiceTimeoutError && !e.serverCode);
      const took = Date.now() - started;
      assert.ok(took >= 450 && took < 1500, `took ${took} ms`);
    } finally {
      stalled.proc.kill('SIGCONT');
      c.close();
      await stalled.destroy();
    }
  });

  test('awaitResult refuses a pollMs that would busy-poll and a timeoutMs that is no duration', async () => {
    const h = await client.enqueue({ queue: q('await3') });
    await assert.rejects(h.awaitResult({ pollMs: 0 }), RangeError);
    await assert.rejects(h.awaitResult({ pollMs: 1.5 }), RangeError);
    await assert.rejects(h.awaitResult({ timeoutMs: Number.NaN }), RangeError);
    await assert.rejects(h.awaitResult({ timeoutMs: -1 }), RangeError);
    await h.cancel();
  });

  test('getJobResult with waitMs returns unfinished after the wait', async () => {
    const h = await client.enqueue({ queue: q('gjr') });
    const started = Date.now();
    const r = await client.getJobResult(h.id, { waitMs: 300 });
    assert.equal(r.finished, false);
    assert.equal(r.status, 'waiting');
    assert.ok(Date.now() - started >= 250);
    await h.cancel();
  });
});

describe('limits and node', () => {
  test('floating limits: get, list, set; concurrency keys', async () => {
    const queue = q('fl');
    const key = q('fkey');
    await client.enqueue({
      queue, limits: [{ kind: 'floating', key, max: 2, refreshIntervalMs: 3_600_000, metadata: { m: '1' } }],
    });
    // The key's state is created when its first job is due and asks for a slot (at lease).
    const first = await client.leaseTasks({ queue, workerId: 'w', maxTasks: 1, waitMs: 1000 });
    await client.reportOutcomes(first.tasks.map((task) => ({ task })));
    for (const rt of first.refreshes) await client.reportRefreshOutcome(rt, { errorCode: 'later' });
    let f = await client.getFloatingLimit(key);
    assert.equal(f.key, key);
    assert.equal(f.defaultMax, 2);
    assert.equal(f.refreshIntervalMs, 3_600_000);
    assert.deepEqual(f.metadata, { m: '1' });
    await client.setFloatingLimit(key, 9);
    f = await client.getFloatingLimit(key);
    assert.equal(f.currentMax, 9);
    const listed = await client.listFloatingLimits({ limit: 1000 });
    assert.ok(listed.some((l) => l.key === key && l.currentMax === 9));
    const page = await client.listFloatingLimits({ afterKey: key, limit: 1000 });
    assert.ok(!page.some((l) => l.key <= key));
    await assert.rejects(client.getFloatingLimit('nope-' + key), NotFoundError);

    const fixedKey = q('fixed');
    await client.enqueue({ queue, limits: [{ key: fixedKey, max: 1 }] });
    const { tasks } = await client.leaseTasks({ queue, workerId: 'w', maxTasks: 10, waitMs: 1000 });
    assert.ok(tasks.length >= 1);
    const ck = await client.getConcurrencyKey('fixed', fixedKey);
    assert.equal(ck.key, fixedKey);
    assert.equal(ck.kind, 'fixed');
    assert.equal(ck.max, 1);
    const keys = await client.listConcurrencyKeys({ limit: 1000 });
    assert.ok(keys.some((k) => k.key === fixedKey));
    await client.reportOutcomes(tasks.map((task) => ({ task })));
  });

  test('refresh tasks: heartbeatRefresh and reportRefreshOutcome', async () => {
    const queue = q('rf');
    const key = q('rkey');
    await client.enqueue({ queue, limits: [{ kind: 'floating', key, max: 1, refreshIntervalMs: 60_000 }] });
    const { refreshes } = await client.leaseTasks({ queue, workerId: 'w', maxTasks: 1, waitMs: 2000 });
    assert.equal(refreshes.length, 1);
    const rt = refreshes[0];
    assert.equal(rt.key, key);
    assert.equal(rt.currentMax, 1);
    assert.equal(rt.lastRefreshedMs, 0);
    const exp = await client.heartbeatRefresh(rt);
    assert.ok(exp >= rt.leaseExpiresMs);
    await client.reportRefreshOutcome(rt, { newMax: 4 });
    assert.equal((await client.getFloatingLimit(key)).currentMax, 4);
    await assert.rejects(client.reportRefreshOutcome(rt, { newMax: 5 }), LeaseLostError);
    await assert.rejects(client.heartbeatRefresh(rt), LeaseLostError);
  });

  test('getNodeInfo', async () => {
    const info = await client.getNodeInfo();
    assert.equal(info.durability, 'async');
    assert.equal(info.callerTenantBound, false);
    assert.equal(info.limits.maxLeaseBatch, 1000);
    assert.equal(info.defaultLeaseMs, 30000);
    assert.ok(info.version.length > 0);
  });
});

describe('errors, auth, tenants', () => {
  test('invalid argument and too large carry the server code', async () => {
    await assert.rejects(client.enqueue({ queue: '' }), (e) =>
      e instanceof InvalidArgumentError && e.serverCode && e.code === 'invalid_argument');
    await assert.rejects(client.enqueue({ queue: 'x', priority: 100 }), InvalidArgumentError);
    await assert.rejects(client.enqueue({ queue: 'x', payload: Buffer.alloc(1024 * 1024 + 1) }),
      (e) => e instanceof TooLargeError && e.code === 'too_large');
    await assert.rejects(client.enqueue({ queue: 'x', payload: 'a', json: 1 }), TypeError);
  });

  test('numbers that are no uint32 are refused before anything is sent', async () => {
    let retries = 0;
    const c = new SluiceClient({ address: srv.grpc, token: TOKEN, onRetry: () => { ++retries; } });
    const queue = q('nums');
    const bad = [
      () => c.enqueue({ queue, priority: -1 }),
      () => c.enqueue({ queue, priority: 1.5 }),
      () => c.enqueue({ queue, retry: { maxRetries: 2 ** 32 } }),
      () => c.enqueue({ queue, limits: [{ key: 'k', max: 1.5 }] }),
      () => c.enqueue({ queue, limits: [{ kind: 'floting', key: 'k' }] }),
      () => c.enqueueBatch([{ queue }, { queue, priority: Number.NaN }]),
      () => c.setFloatingLimit('nums-k', 1.5),
      () => c.setFloatingLimit('nums-k', undefined),
      () => c.getJobResult('x', { waitMs: -5 }),
      () => c.listFloatingLimits({ limit: -1 }),
      () => c.listConcurrencyKeys({ limit: 0.5 }),
      () => c.getConcurrencyKey('floting', 'k'),
      () => c.reportRefreshOutcome({ key: 'k', leaseToken: 1n }, { newMax: 2.5 }),
    ];
    for (const [i, f] of bad.entries()) {
      await assert.rejects(f(), (e) => e instanceof RangeError, `case ${i}`);
    }
    assert.equal(retries, 0, 'nothing was sent, so nothing was retried');
    assert.deepEqual((await c.listJobs({ queue })).jobs, [], 'no job was created');
    await assert.rejects(c.getFloatingLimit('nums-k'), NotFoundError);
    c.close();
  });

  test('unauthenticated and permission denied', async () => {
    const bad = new SluiceClient({ address: srv.grpc, token: 'wrong' });
    await assert.rejects(bad.getNodeInfo(), (e) =>
      e instanceof UnauthenticatedError && e.grpcCode === GrpcCode.UNAUTHENTICATED);
    bad.close();
    const none = new SluiceClient({ address: srv.grpc });
    await assert.rejects(none.getNodeInfo(), UnauthenticatedError);
    none.close();
    const acme = new SluiceClient({ address: srv.grpc, token: 'acme-token' });
    const info = await acme.getNodeInfo();
    assert.equal(info.callerTenant, 'acme');
    assert.equal(info.callerTenantBound, true);
    const h = await acme.enqueue({ queue: q('t') });
    await assert.rejects(acme.enqueue({ queue: 'x' }, { tenant: 'other' }), (e) =>
      e instanceof PermissionDeniedError && e.code === 'permission_denied');
    // The operator sees the job only in tenant acme.
    await assert.rejects(client.getJob(h.id), NotFoundError);
    assert.equal((await client.getJob(h.id, { tenant: 'acme' })).tenant, 'acme');
    const opAcme = new SluiceClient({ address: srv.grpc, token: TOKEN, tenant: 'acme' });
    assert.equal((await opAcme.job(h.id).get()).id, h.id);
    opAcme.close();
    acme.close();
  });

  test('error classes follow (gRPC code, sluice-code)', () => {
    assert.equal(errorClassFor(GrpcCode.FAILED_PRECONDITION, 'lease_lost'), LeaseLostError);
    assert.equal(errorClassFor(GrpcCode.FAILED_PRECONDITION, 'failed_precondition'), FailedPreconditionError);
    assert.equal(errorClassFor(GrpcCode.NOT_FOUND, 'not_found'), NotFoundError);
    assert.equal(errorClassFor(GrpcCode.DEADLINE_EXCEEDED, ''), SluiceTimeoutError);
    assert.equal(errorClassFor(GrpcCode.UNAVAILABLE, ''), UnavailableError);
    const transport = new (errorClassFor(GrpcCode.INTERNAL, ''))('x', { grpcCode: GrpcCode.INTERNAL });
    const storage = new (errorClassFor(GrpcCode.INTERNAL, 'io_error'))('x', { grpcCode: GrpcCode.INTERNAL, sluiceCode: 'io_error' });
    assert.equal(isTransient(transport), true);
    assert.equal(isTransient(storage), false);
    assert.equal(storage.code, 'io_error');
    assert.equal(storage.name, 'StorageError');
  });

  test('per-call deadline: a long-poll cut short by timeoutMs', async () => {
    const started = Date.now();
    await assert.rejects(
      client.leaseTasks({ queue: q('dl'), workerId: 'w', maxTasks: 1, waitMs: 5000 }, { timeoutMs: 300 }),
      (e) => e instanceof SluiceTimeoutError && e.code === 'deadline_exceeded' && !e.serverCode);
    assert.ok(Date.now() - started < 2000);
  });

  test('an unreachable server: idempotent calls retry with backoff, enqueue without id does not', async () => {
    const port = await freePort();
    const c = new SluiceClient({
      address: `127.0.0.1:${port}`, token: TOKEN,
      retry: { maxAttempts: 4, initialBackoffMs: 20, maxBackoffMs: 50 },
    });
    await assert.rejects(c.getNodeInfo(), (e) =>
      e instanceof UnavailableError && e.attempts === 4 && e.code === 'unavailable');
    await assert.rejects(c.enqueue({ queue: 'x' }), (e) => e instanceof UnavailableError && e.attempts === 4);
    await assert.rejects(c.enqueue({ queue: 'x', id: '' }), (e) => e instanceof UnavailableError && e.attempts === 1);
    await assert.rejects(c.restartJob('x'), (e) => e instanceof UnavailableError && e.attempts === 1);
    await assert.rejects(c.leaseTasks({ queue: 'x', workerId: 'w' }), (e) => e.attempts === 1);
    await assert.rejects(c.getNodeInfo({ retry: false }), (e) => e.attempts === 1);
    c.close();
    await assert.rejects(c.getNodeInfo(), (e) => e.code === 'closed' && !isTransient(e) && !e.serverCode);
  });

  test('a server that comes up during the retries is reached', async () => {
    const port = await freePort();
    const c = new SluiceClient({
      address: `127.0.0.1:${port}`, token: TOKEN,
      retry: { maxAttempts: 100, initialBackoffMs: 50, maxBackoffMs: 200 },
    });
    const late = new Sluiced({ grpcListen: `127.0.0.1:${port}` });
    const up = new Promise((r) => setTimeout(r, 500)).then(() => late.start());
    const info = await c.getNodeInfo();
    assert.ok(info.version);
    await up;
    c.close();
    await late.destroy();
  });

  test('TLS with a self-signed certificate; plaintext is refused', async () => {
    const dir = tempDir('sluice-tls-');
    const key = path.join(dir, 'tls.key');
    const cert = path.join(dir, 'tls.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
      '-keyout', key, '-out', cert, '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    const tls = await new Sluiced({ args: ['--tls-cert', cert, '--tls-key', key] }).start();
    try {
      const c = new SluiceClient({ address: tls.grpc, token: TOKEN, tls: { rootCerts: fs.readFileSync(cert), serverName: 'localhost' } });
      const h = await c.enqueue({ queue: 'tls', payload: 'secure' });
      assert.equal((await h.get()).payload.toString(), 'secure');
      c.close();
      const plain = new SluiceClient({ address: tls.grpc, token: TOKEN, retry: false, attemptTimeoutMs: 2000 });
      await assert.rejects(plain.getNodeInfo(), SluiceError);
      plain.close();
    } finally {
      await tls.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('helpers', () => {
  test('payload helpers and ids', () => {
    assert.deepEqual(parseJson(jsonBytes({ a: [1, 'x'] })), { a: [1, 'x'] });
    assert.equal(parseJson(Buffer.alloc(0)), undefined);
    assert.equal(resultBytes(undefined).length, 0);
    assert.equal(resultBytes('txt').toString(), 'txt');
    assert.equal(resultBytes({ k: 1 }).toString(), '{"k":1}');
    assert.equal(resultBytes(Uint8Array.of(1, 2)).length, 2);
    // Bytes of any kind are stored as they are, never as JSON.
    assert.deepEqual([...resultBytes(Uint8Array.of(1, 2, 3).buffer)], [1, 2, 3]);
    assert.deepEqual([...resultBytes(new Uint16Array([0x0102]))], [...Buffer.from(new Uint16Array([0x0102]).buffer)]);
    const backing = Uint8Array.of(9, 8, 7, 6);
    assert.deepEqual([...resultBytes(new DataView(backing.buffer, 1, 2))], [8, 7]);
    assert.deepEqual([...resultBytes(backing.subarray(2))], [7, 6]);
    const ids = Array.from({ length: 5000 }, () => uuidv7());
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...ids].sort(), ids, 'time-ordered within a process');
  });
});
