// Worker against a real sluiced: concurrency, outcomes, cancellation, heartbeats, lease loss,
// duplicate delivery, re-delivery after a killed worker, stop(timeout), several queues.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  CancelRequestedError, GrpcCode, JobCancelled, JobFailure, LeaseLostError, SluiceClient,
  TooLargeError, UnavailableError, UnimplementedError, Worker, WorkerStoppedError,
} from '../dist/index.js';
import { PKG, Sluiced, TOKEN, freePort, until } from './harness.mjs';

let srv;
let client;
const q = (name) => `${name}-${Math.random().toString(36).slice(2, 8)}`;
const workers = [];

function worker(opts) {
  const w = new Worker(opts.client ?? client, opts);
  w.errors = [];
  w.on('error', (e, ctx) => w.errors.push({ e, ctx }));
  workers.push(w);
  return w;
}

/**
 * A barrier for handlers: the returned function resolves once it has been called `n` times,
 * so their outcomes are all ready at once (and travel together).
 */
function allStarted(n) {
  let started = 0;
  let go;
  const all = new Promise((r) => { go = r; });
  return () => {
    if (++started === n) go();
    return all;
  };
}

/** A client whose methods can be intercepted; everything else is the real client. */
function wrap(base, overrides) {
  const c = Object.create(base);
  for (const [k, f] of Object.entries(overrides)) c[k] = f;
  if (overrides.leaseTasks && !overrides.leaseStream) {
    // The Worker leases over a stream: route each of its requests through the overridden
    // leaseTasks (answered in order, like the stream) so the test sees and shapes every one.
    c.leaseStream = (opts = {}) => viaLeaseTasks(c, opts);
  }
  return c;
}

/** A LeaseStream look-alike whose requests are LeaseTasks calls of `c` (answered in order). */
function viaLeaseTasks(c, opts) {
  let last = Promise.resolve();
  let inFlight = 0;
  let ended = false;
  return {
    get ended() { return ended; },
    get inFlight() { return inFlight; },
    lease(req, o = {}) {
      if (ended) return Promise.reject(new Error('ended'));
      ++inFlight;
      const call = c.leaseTasks(req, { tenant: opts.tenant, signal: o.signal });
      call.catch(() => {});  // handled below, after the earlier answers
      const answer = last.then(() => call, () => call).finally(() => { --inFlight; });
      answer.catch(() => { ended = true; });
      last = answer.catch(() => {});
      return answer;
    },
    close() { ended = true; },
    cancel() { ended = true; },
  };
}

before(async () => {
  srv = await new Sluiced().start();
  client = new SluiceClient({ address: srv.grpc, token: TOKEN });
});
after(async () => {
  for (const w of workers) await w.stop({ timeoutMs: 1000, graceMs: 100 });
  client?.close();
  await srv?.destroy();
});

describe('running jobs', () => {
  test('concurrency is never exceeded and is reached; leases ask only for free slots', async () => {
    const queue = q('conc');
    const C = 5;
    let running = 0;
    let peak = 0;
    let overAsk = 0;
    const w = worker({
      queues: queue, concurrency: C,
      client: wrap(client, {
        leaseTasks(req, o) {
          if (req.maxTasks > C - w.running) ++overAsk;
          return client.leaseTasks(req, o);
        },
      }),
      handler: async () => {
        peak = Math.max(peak, ++running);
        await delay(Math.random() * 15);
        --running;
      },
    });
    const hs = await client.enqueueBatch(Array.from({ length: 300 }, () => ({ queue })));
    await until(() => w.metrics().succeeded === 300, { timeoutMs: 20_000, what: '300 jobs' });
    assert.equal(peak, C);
    assert.equal(overAsk, 0);
    for (const h of hs.slice(0, 5)) assert.equal(await h.status(), 'succeeded');
    const m = w.metrics();
    assert.equal(m.leased, 300);
    assert.equal(m.duplicates, 0);
    assert.ok(m.reportCalls < 300, `reports are batched (${m.reportCalls} calls)`);
    assert.deepEqual(w.errors, []);
    await w.stop();
  });

  test('outcomes: return is success, throw is failure with a code, JobCancelled cancels', async () => {
    const queue = q('out');
    const w = worker({
      queues: queue, concurrency: 4,
      handler: async (job) => {
        const { kind } = job.json();
        switch (kind) {
          case 'json': return { echo: job.metadata.m };
          case 'text': return 'plain';
          case 'bytes': return Buffer.from([1, 2, 3]);
          case 'arraybuffer': return Uint8Array.of(4, 5).buffer;  // e.g. fetch's arrayBuffer()
          case 'jobfailure': throw new JobFailure('bad_input', 'no good', { noRetry: true, data: 'ctx' });
          case 'coded': throw Object.assign(new Error('refused'), { code: 'ECONNREFUSED' });
          case 'plain': throw new Error('plain error');
          case 'cancel': throw new JobCancelled();
          case 'bigint': return 10n;  // not JSON-serializable: a failure, not a stuck job
          default: throw new Error(`unknown ${kind}`);
        }
      },
    });
    const spec = (kind) => ({ queue, json: { kind }, metadata: { m: kind }, retry: { maxRetries: 0 } });
    const kinds = ['json', 'text', 'bytes', 'arraybuffer', 'jobfailure', 'coded', 'plain', 'cancel',
      'bigint'];
    const hs = await client.enqueueBatch(kinds.map(spec));
    const r = Object.fromEntries(await Promise.all(
      hs.map(async (h, i) => [kinds[i], await h.awaitResult({ timeoutMs: 10_000 })])));
    assert.deepEqual(r.json.json(), { echo: 'json' });
    assert.equal(r.text.text(), 'plain');
    assert.deepEqual([...r.bytes.result], [1, 2, 3]);
    assert.deepEqual([...r.arraybuffer.result], [4, 5]);
    assert.equal(r.jobfailure.status, 'failed');
    assert.equal(r.jobfailure.errorCode, 'bad_input');
    assert.equal(r.jobfailure.errorMessage, 'no good');
    assert.equal(r.jobfailure.errorData.toString(), 'ctx');
    assert.equal(r.coded.errorCode, 'ECONNREFUSED');
    assert.equal(r.plain.errorCode, 'handler_error');
    assert.equal(r.plain.errorMessage, 'plain error');
    assert.equal(r.cancel.status, 'cancelled');
    assert.equal(r.bigint.status, 'failed');
    // The server's answer to the worker's report may arrive after the result's waiters woke.
    await until(() => w.metrics().reporting === 0, { what: 'reports acknowledged' });
    const m = w.metrics();
    assert.equal(m.succeeded, 4);
    assert.equal(m.failed, 4);
    assert.equal(m.cancelled, 1);
    await w.stop();
  });

  test('a failure is retried by the server and the next attempt runs', async () => {
    const queue = q('retry');
    const seen = [];
    const w = worker({
      queues: queue,
      handler: (job) => {
        seen.push(job.attempt);
        if (job.attempt < 3) throw new JobFailure('flaky');
        return 'third time';
      },
    });
    const h = await client.enqueue({ queue, retry: { maxRetries: 5, initialBackoffMs: 10 } });
    const r = await h.awaitResult({ timeoutMs: 10_000 });
    assert.equal(r.text(), 'third time');
    assert.deepEqual(seen, [1, 2, 3]);
    await w.stop();
  });

  test('cancel of a running job aborts the handler signal and ends it cancelled', async () => {
    const queue = q('cancel');
    let reason;
    const events = [];
    const w = worker({
      queues: queue,
      handler: (job) => new Promise((_, reject) => {
        job.signal.addEventListener('abort', () => {
          reason = job.signal.reason;
          reject(job.signal.reason);
        });
      }),
    });
    w.on('cancelRequested', (t) => events.push(['cancelRequested', t.jobId]));
    w.on('cancelled', (t) => events.push(['cancelled', t.jobId]));
    const h = await client.enqueue({ queue, leaseMs: 900 });
    await until(() => w.running === 1, { what: 'the handler to start' });
    const started = Date.now();
    assert.deepEqual(await h.cancel(), { status: 'running', cancelRequested: true });
    const r = await h.awaitResult({ timeoutMs: 5000 });
    assert.equal(r.status, 'cancelled');
    assert.ok(reason instanceof CancelRequestedError);
    assert.ok(Date.now() - started < 2000, 'learned at the next heartbeat (every lease/3)');
    await until(() => events.length === 2, { what: 'the cancelled event' });
    assert.deepEqual(events, [['cancelRequested', h.id], ['cancelled', h.id]]);
    await w.stop();
  });

  test('heartbeats every third of the lease keep a long job on its first attempt', async () => {
    const queue = q('long');
    const w = worker({ queues: queue, handler: () => delay(2000).then(() => 'ok') });
    const h = await client.enqueue({ queue, leaseMs: 600 });
    const r = await h.awaitResult({ timeoutMs: 10_000 });
    assert.equal(r.status, 'succeeded');
    const job = await h.get({ includeAttempts: true });
    assert.equal(job.attempts.length, 1);
    const hb = w.metrics().heartbeats;
    assert.ok(hb >= 5 && hb <= 12, `${hb} heartbeats in 2 s at 200 ms`);
    await w.stop();
  });

  test('a task from a long-poll that waited longer than its lease keeps its lease', async () => {
    const queue = q('lateTask');
    const lost = [];
    const w = worker({ queues: queue, leaseWaitMs: 5000, handler: () => delay(900).then(() => 'kept') });
    w.on('leaseLost', (t, why) => lost.push(why));
    await delay(1200);  // the worker's long-poll has been waiting for 1.2 s
    const h = await client.enqueue({ queue, leaseMs: 600 });
    const r = await h.awaitResult({ timeoutMs: 10_000 });
    assert.equal(r.text(), 'kept');
    assert.deepEqual(lost, []);
    assert.equal((await h.get()).attemptCount, 1);
    await w.stop();
  });

  test('several queues are served by one worker', async () => {
    const [a, b] = [q('qa'), q('qb')];
    const w = worker({ queues: [a, b], concurrency: 4, handler: (job) => job.queue });
    const hs = await client.enqueueBatch(Array.from({ length: 20 }, () => ({ queue: a })));
    hs.push(...await client.enqueueBatch(Array.from({ length: 20 }, () => ({ queue: b }))));
    const rs = await Promise.all(hs.map((h) => h.awaitResult({ timeoutMs: 10_000 })));
    assert.equal(rs.filter((r) => r.text() === a).length, 20);
    assert.equal(rs.filter((r) => r.text() === b).length, 20);
    await w.stop();
  });
});

describe('several queues share the slots', () => {
  test('an idle queue does not keep the only slot from a queue with work', async () => {
    const [idle, busy] = [q('idle'), q('busy')];
    await client.enqueueBatch(Array.from({ length: 3 }, () => ({ queue: busy })));
    // The idle queue's loop starts first and takes the slot for its long-poll; each empty
    // answer must let the other queue have a turn.
    const w = worker({ queues: [idle, busy], concurrency: 1, leaseWaitMs: 200, handler: () => {} });
    await until(() => w.metrics().succeeded === 3, { timeoutMs: 5_000, what: 'the busy queue\'s jobs' });
    await w.stop();
  });

  test('two queues with work take turns with one slot', async () => {
    const [a, b] = [q('turna'), q('turnb')];
    await client.enqueueBatch(Array.from({ length: 40 }, () => ({ queue: a })));
    await client.enqueueBatch(Array.from({ length: 40 }, () => ({ queue: b })));
    const ran = { [a]: 0, [b]: 0 };
    const w = worker({ queues: [a, b], concurrency: 1, leaseWaitMs: 200, handler: (job) => { ++ran[job.queue]; } });
    await until(() => ran[a] + ran[b] >= 40, { timeoutMs: 10_000, what: '40 jobs' });
    await w.stop();
    assert.ok(ran[a] >= 10 && ran[b] >= 10, `turns: ${ran[a]} of ${a}, ${ran[b]} of ${b}`);
  });
});

describe('leases', () => {
  test('a duplicate delivery of a running task is ignored', async () => {
    const queue = q('dup');
    let runs = 0;
    const dupClient = wrap(client, {
      async leaseTasks(req, o) {
        const res = await client.leaseTasks(req, o);
        return { ...res, tasks: res.tasks.flatMap((t) => [t, { ...t }]) };
      },
    });
    const dups = [];
    const w = worker({ queues: queue, concurrency: 4, client: dupClient, handler: async () => { ++runs; await delay(50); } });
    w.on('duplicate', (t) => dups.push(t.taskId));
    const hs = await client.enqueueBatch(Array.from({ length: 10 }, () => ({ queue })));
    await Promise.all(hs.map((h) => h.awaitResult({ timeoutMs: 10_000 })));
    await until(() => w.metrics().reporting === 0, { what: 'reports acknowledged' });
    assert.equal(runs, 10);
    assert.equal(dups.length, 10);
    assert.equal(w.metrics().duplicates, 10);
    assert.equal(w.metrics().succeeded, 10);
    for (const h of hs) assert.equal((await h.get({ includeAttempts: true })).attempts.length, 1);
    await w.stop();
  });

  test('LEASE_LOST on a heartbeat aborts the handler, stops heartbeats and never reports', async () => {
    const queue = q('lost');
    let reason;
    let heartbeatsAfterLoss = 0;
    let lost = false;
    const lossClient = wrap(client, {
      heartbeat(task, o) {
        if (lost) ++heartbeatsAfterLoss;
        // Attempt 1 presents a stale token: the server answers LEASE_LOST.
        if (task.attempt === 1) return client.heartbeat({ ...task, leaseToken: task.leaseToken + 99n }, o);
        return client.heartbeat(task, o);
      },
    });
    const events = [];
    const w = worker({
      queues: queue, client: lossClient,
      handler: async (job) => {
        if (job.attempt > 1) return 'second';
        await new Promise((r) => job.signal.addEventListener('abort', r));
        reason = job.signal.reason;
        return 'first (must not be reported)';
      },
    });
    w.on('leaseLost', (t, why) => { lost = true; events.push([t.attempt, why]); });
    const h = await client.enqueue({ queue, leaseMs: 600, retry: { maxRetries: 2, initialBackoffMs: 1 } });
    const r = await h.awaitResult({ timeoutMs: 10_000 });
    assert.equal(r.text(), 'second');
    assert.ok(reason instanceof LeaseLostError);
    assert.deepEqual(events, [[1, 'heartbeat']]);
    assert.equal(heartbeatsAfterLoss, 0);
    const job = await h.get({ includeAttempts: true });
    assert.equal(job.attempts[0].errorCode, 'lease_expired', 'attempt 1 was reaped, not reported');
    await w.stop();
  });

  test('heartbeats failing until the lease runs out: lost locally, never reported', async () => {
    const queue = q('expire');
    const failing = wrap(client, {
      heartbeat(task, o) {
        if (task.attempt === 1) {
          return Promise.reject(new UnavailableError('injected', { grpcCode: GrpcCode.UNAVAILABLE }));
        }
        return client.heartbeat(task, o);
      },
    });
    let reportedAttempt1 = false;
    const spy = wrap(failing, {
      reportOutcomes(reports, o) {
        if (reports.some((x) => x.task.attempt === 1)) reportedAttempt1 = true;
        return client.reportOutcomes(reports, o);
      },
      leaseTasks(req, o) {
        if ((req.reports ?? []).some((x) => x.task.attempt === 1)) reportedAttempt1 = true;
        return client.leaseTasks(req, o);
      },
    });
    const events = [];
    const w = worker({
      queues: queue, client: spy,
      handler: async (job) => {
        if (job.attempt === 1) await delay(1200);
        return `attempt ${job.attempt}`;
      },
    });
    w.on('leaseLost', (t, why) => events.push([t.attempt, why]));
    const h = await client.enqueue({ queue, leaseMs: 600, retry: { maxRetries: 2, initialBackoffMs: 1 } });
    const r = await h.awaitResult({ timeoutMs: 10_000 });
    assert.equal(r.text(), 'attempt 2');
    assert.deepEqual(events, [[1, 'expired']]);
    assert.equal(reportedAttempt1, false);
    assert.ok(w.metrics().heartbeatErrors >= 1);
    await w.stop();
  });

  test('a killed worker\'s job is re-delivered after its lease expires', async () => {
    const queue = q('kill');
    const h = await client.enqueue({ queue, leaseMs: 1000 });
    const child = spawn(process.execPath,
      [path.join(PKG, 'test', 'fixtures', 'worker-child.mjs'), srv.grpc, TOKEN, queue],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    await until(() => out.includes('started'), { timeoutMs: 10_000, what: 'the child to start the job' });
    const childWorker = out.trim().split(' ')[2];
    child.kill('SIGKILL');
    const killedAt = Date.now();
    let redelivered;
    const w = worker({ queues: queue, handler: (job) => { redelivered = { attempt: job.attempt, at: Date.now() }; return 'rescued'; } });
    const r = await h.awaitResult({ timeoutMs: 10_000 });
    assert.equal(r.text(), 'rescued');
    assert.equal(redelivered.attempt, 2);
    assert.ok(redelivered.at - killedAt >= 500, 'not before the lease could expire');
    const job = await h.get({ includeAttempts: true });
    assert.equal(job.attempts[0].workerId, childWorker);
    assert.equal(job.attempts[0].errorCode, 'lease_expired');
    assert.equal(job.attempts[1].workerId, w.workerId);
    await w.stop();
  });
});

describe('stop(timeout)', () => {
  test('stop finishes in-flight work, reports it, and leases nothing more', async () => {
    const queue = q('stop');
    const w = worker({ queues: queue, concurrency: 2, handler: () => delay(400).then(() => 'done') });
    const [a, b] = await client.enqueueBatch([{ queue }, { queue }]);
    await until(() => w.running === 2, { what: 'both handlers' });
    const started = Date.now();
    const res = await w.stop({ timeoutMs: 5000 });
    assert.deepEqual(res, { drained: true, abandoned: 0 });
    assert.ok(Date.now() - started >= 250);
    assert.equal(await a.status(), 'succeeded', 'reported before stop resolved');
    assert.equal(await b.status(), 'succeeded');
    const calls = w.metrics().leaseCalls;
    const later = await client.enqueue({ queue });
    await delay(300);
    assert.equal(await later.status(), 'waiting');
    assert.equal(w.metrics().leaseCalls, calls);
    await later.cancel();
    assert.throws(() => w.start(), /after stop/);
  });

  test('stop with timeoutMs Infinity waits for the handlers; a wait that is no duration is refused', async () => {
    const queue = q('stopinf');
    const w = worker({ queues: queue, concurrency: 1, handler: () => delay(400).then(() => 'late') });
    try {
      await assert.rejects(w.stop({ timeoutMs: -1 }), RangeError);
      await assert.rejects(w.stop({ graceMs: Number.NaN }), RangeError);
      const h = await client.enqueue({ queue, retry: { maxRetries: 0 } });
      await until(() => w.running === 1, { what: 'the handler' });
      // setTimeout takes Infinity (or anything past 2^31-1 ms) as 1 ms: the handler would be
      // aborted at once and the job fail "worker_stopped".
      assert.deepEqual(await w.stop({ timeoutMs: Infinity, graceMs: 2 ** 40 }),
        { drained: true, abandoned: 0 });
      const r = await h.result();
      assert.equal(r.status, 'succeeded');
      assert.equal(r.text(), 'late');
    } finally {
      await w.stop();
    }
  });

  test('stop of an idle worker returns at once despite a 30 s long-poll', async () => {
    const w = worker({ queues: q('idle'), handler: () => {} });
    await delay(200);
    const started = Date.now();
    assert.deepEqual(await w.stop(), { drained: true, abandoned: 0 });
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
  });

  test('past the timeout: handlers are aborted; those that end are failed "worker_stopped", the rest abandoned', async () => {
    const queue = q('stopto');
    const reasons = [];
    const w = worker({
      queues: queue, concurrency: 2,
      handler: (job) => new Promise((resolve, reject) => {
        job.signal.addEventListener('abort', () => {
          reasons.push(job.signal.reason);
          if (job.json().obeys) reject(job.signal.reason);
          // else: ignores the abort and never ends
        });
      }),
    });
    const [obeys, ignores] = await client.enqueueBatch([
      { queue, json: { obeys: true }, leaseMs: 800, retry: { maxRetries: 1, initialBackoffMs: 60_000 } },
      { queue, json: { obeys: false }, leaseMs: 800, retry: { maxRetries: 1, initialBackoffMs: 60_000 } },
    ]);
    await until(() => w.running === 2, { what: 'both handlers' });
    const started = Date.now();
    const res = await w.stop({ timeoutMs: 300, graceMs: 300 });
    const took = Date.now() - started;
    assert.deepEqual(res, { drained: false, abandoned: 1 });
    assert.ok(took >= 550 && took < 3000, `took ${took} ms`);
    assert.equal(reasons.length, 2);
    assert.ok(reasons.every((r) => r instanceof WorkerStoppedError));
    const j1 = await obeys.get({ includeAttempts: true });
    assert.equal(j1.status, 'scheduled', 'retry pending');
    assert.equal(j1.attempts[0].errorCode, 'worker_stopped');
    const j2 = await ignores.get({ includeAttempts: true });
    assert.equal(j2.status, 'running', 'abandoned: left to its lease');
    await delay(1200);
    const j2b = await ignores.get({ includeAttempts: true });
    assert.equal(j2b.attempts[0].errorCode, 'lease_expired');
    await obeys.cancel();
    await ignores.cancel();
  });
});

describe('reports ride on LeaseTasks', () => {
  /** A client that counts what the worker sends: reports on LeaseTasks vs ReportOutcomes. */
  function counting(base = client, inject = {}) {
    const c = {
      leaseCalls: 0, leaseCallsWithReports: 0, reportsOnLease: 0, waitingCallsWithReports: 0,
      reportCalls: 0, reportsAlone: 0, okByTask: new Map(), notOk: [],
    };
    const ok = (taskId) => c.okByTask.set(taskId, (c.okByTask.get(taskId) ?? 0) + 1);
    c.client = wrap(base, {
      async leaseTasks(req, o) {
        ++c.leaseCalls;
        const reports = req.reports ?? [];
        if (reports.length > 0) {
          ++c.leaseCallsWithReports;
          c.reportsOnLease += reports.length;
          if (req.waitMs !== 0 || o?.signal) ++c.waitingCallsWithReports;
        }
        const res = await (inject.leaseTasks ?? ((r, oo) => base.leaseTasks(r, oo)))(req, o);
        res.reportStatuses.forEach((st, i) => (st === null ? ok(reports[i].task.taskId) : c.notOk.push(st)));
        return res;
      },
      async reportOutcomes(reports, o) {
        ++c.reportCalls;
        c.reportsAlone += reports.length;
        const sts = await base.reportOutcomes(reports, o);
        sts.forEach((st, i) => (st === null ? ok(reports[i].task.taskId) : c.notOk.push(st)));
        return sts;
      },
    });
    return c;
  }

  /** Every job succeeded once, on its first attempt, with its own id as the result. */
  async function assertEachSucceededOnce(ids) {
    for (let i = 0; i < ids.length; i += 100) {
      const jobs = await Promise.all(ids.slice(i, i + 100).map((id) => client.getJob(id, { includeAttempts: true })));
      for (const j of jobs) {
        assert.equal(j.status, 'succeeded', j.id);
        assert.equal(j.attempts.length, 1, j.id);
        assert.equal(j.attempts[0].result.toString(), j.id);
      }
    }
  }

  test('with a steady stream of jobs, one round trip reports a batch and fetches the next', async (t) => {
    const queue = q('ride');
    const N = 800;
    const C = 8;
    const c = counting();
    let running = 0;
    let peak = 0;
    const w = worker({
      queues: queue, concurrency: C, client: c.client,
      handler: async (job) => {
        peak = Math.max(peak, ++running);
        try {
          await delay(Math.random() * 3);
          return job.id;
        } finally {
          --running;
        }
      },
    });
    // A backlog, then a producer that keeps adding while the worker runs.
    const ids = (await client.enqueueBatch(Array.from({ length: N / 2 }, () => ({ queue })))).map((h) => h.id);
    for (let i = N / 2; i < N; i += 40) {
      ids.push(...(await client.enqueueBatch(Array.from({ length: 40 }, () => ({ queue })))).map((h) => h.id));
      await delay(10);
    }
    await until(() => w.metrics().succeeded === N, { timeoutMs: 30_000, what: `${N} jobs` });
    await until(() => w.metrics().reporting === 0, { what: 'reports acknowledged' });
    const m = w.metrics();
    await w.stop();
    t.diagnostic(`${c.reportsOnLease} of ${N} reports on ${c.leaseCallsWithReports} of ${c.leaseCalls} LeaseTasks; ` +
      `${c.reportsAlone} in ${c.reportCalls} ReportOutcomes`);
    await assertEachSucceededOnce(ids);

    // Nothing lost, nothing reported twice: each outcome was sent once and acknowledged once.
    assert.equal(c.okByTask.size, N);
    assert.ok([...c.okByTask.values()].every((n) => n === 1));
    assert.deepEqual(c.notOk, []);
    assert.equal(c.reportsOnLease + c.reportsAlone, N);
    assert.equal(m.leaseLost, 0);
    assert.equal(m.duplicates, 0);
    assert.equal(m.leased, N);
    assert.ok(peak <= C, `peak ${peak}`);
    // Most outcomes rode on LeaseTasks; no call carrying reports long-polled or was cancellable.
    assert.ok(c.reportsOnLease >= 0.8 * N, `${c.reportsOnLease} of ${N} on LeaseTasks`);
    assert.equal(c.waitingCallsWithReports, 0);
    assert.equal(m.reportsWithLease, c.reportsOnLease);
    assert.equal(m.reportsAlone, c.reportsAlone);
    assert.equal(m.leaseReportCalls, c.leaseCallsWithReports);
    // Fewer round trips than with a ReportOutcomes per batch next to each lease.
    assert.ok(c.leaseCalls + c.reportCalls < 2 * c.leaseCallsWithReports,
      `${c.leaseCalls} lease calls (${c.leaseCallsWithReports} with reports), ${c.reportCalls} report calls`);
    assert.deepEqual(w.errors, []);
  });

  test('a LeaseTasks call that fails as a whole: its reports go again by ReportOutcomes, nothing lost or doubled', async (t) => {
    const queue = q('ridefail');
    const N = 200;
    let withReports = 0;
    let notSent = 0;
    let answerLost = 0;
    // Every 4th call carrying reports fails before it is sent (nothing applied); every 4th
    // after it was answered (applied, then the answer lost in transit).
    const c = counting(client, {
      async leaseTasks(req, o) {
        if (!req.reports?.length) return client.leaseTasks(req, o);
        const k = withReports++ % 4;
        if (k === 1) {
          ++notSent;
          throw new UnavailableError('injected before sending', { grpcCode: GrpcCode.UNAVAILABLE });
        }
        const res = await client.leaseTasks(req, o);
        if (k === 3) {
          ++answerLost;
          throw new UnavailableError('injected: answer lost', { grpcCode: GrpcCode.UNAVAILABLE });
        }
        return res;
      },
    });
    const lost = [];
    const w = worker({
      queues: queue, concurrency: 4, client: c.client, leaseWaitMs: 200,
      errorBackoff: { initialBackoffMs: 1, maxBackoffMs: 5 },
      handler: (job) => job.id,
    });
    w.on('leaseLost', (t, why) => lost.push(why));
    const ids = (await client.enqueueBatch(Array.from({ length: N }, () => ({ queue, leaseMs: 2000 })))).map((h) => h.id);
    // The tasks leased by calls whose answer was lost come back when their leases expire.
    await until(() => w.metrics().succeeded === N, { timeoutMs: 30_000, what: `${N} jobs` });
    await until(() => w.metrics().reporting === 0, { what: 'reports acknowledged' });
    const m = w.metrics();
    await w.stop();
    t.diagnostic(`${notSent} calls failed unsent, ${answerLost} answers lost; ${m.reportsRecovered} recovered, ` +
      `${c.reportsAlone} reports in ${c.reportCalls} ReportOutcomes, ${c.reportsOnLease} on LeaseTasks`);
    assert.ok(notSent > 0 && answerLost > 0, `${notSent} not sent, ${answerLost} answers lost`);
    assert.deepEqual(lost, [], 'an applied report answered lease_lost on its repeat is no lease loss');
    assert.ok(m.reportsRecovered > 0, 'repeats of applied reports were found applied');
    assert.ok(c.reportCalls > 0, 'the failed calls\' reports went by ReportOutcomes');
    assert.equal(m.succeeded, N);
    assert.equal(m.failed, 0);
    for (let i = 0; i < ids.length; i += 100) {
      const jobs = await Promise.all(ids.slice(i, i + 100).map((id) => client.getJob(id, { includeAttempts: true })));
      for (const j of jobs) {
        assert.equal(j.status, 'succeeded');
        assert.equal(j.attempts.filter((a) => a.status === 'succeeded').length, 1);
      }
    }
  });

  test('a failure whose data is not bytes fails its own attempt; the outcomes sent with it are acknowledged', async () => {
    const queue = q('baddata');
    const N = 8;
    const hs = await client.enqueueBatch(Array.from({ length: N }, (_, i) => ({ queue, json: { i }, leaseMs: 60_000 })));
    const ready = allStarted(N);
    const failed = [];
    const w = worker({
      queues: queue, concurrency: N,
      handler: async (job) => {
        await ready();  // every outcome is ready at once: they travel in one request
        if (job.json().i === 3) throw new JobFailure('bad_data', 'with data that is no bytes', { data: { not: 'bytes' } });
        return 'ok';
      },
    });
    w.on('failed', (t, e) => failed.push(e));
    await until(() => w.metrics().succeeded === N - 1 && w.metrics().failed === 1,
      { timeoutMs: 5_000, what: `${N - 1} successes and 1 failure` });
    await w.stop();
    const bad = await client.getJob(hs[3].id, { includeAttempts: true });
    assert.equal(bad.attempts.length, 1);
    assert.equal(bad.attempts[0].status, 'failed');
    assert.equal(bad.attempts[0].errorCode, 'handler_error');
    assert.match(bad.attempts[0].errorMessage, /data.*Uint8Array or a string.*bad_data/);
    assert.equal(failed.length, 1);
    assert.equal(failed[0].code, 'bad_data', 'the failed event carries what the handler threw');
    for (const [i, h] of hs.entries()) {
      if (i === 3) continue;
      const j = await client.getJob(h.id, { includeAttempts: true });
      assert.equal(j.status, 'succeeded');
      assert.equal(j.attempts.length, 1);
    }
  });

  test('outcomes too big for one request are sent in smaller ones, none dropped', async (t) => {
    // A server that accepts requests of at most 256 KiB; 32 results of 20 KB finish at once.
    const small = await new Sluiced({ args: ['--max-message-bytes', '262144'] }).start();
    const c = new SluiceClient({ address: small.grpc, token: TOKEN });
    try {
      const queue = q('bigout');
      const N = 32;
      const hs = await c.enqueueBatch(Array.from({ length: N }, () => ({ queue, leaseMs: 60_000 })));
      const ready = allStarted(N);
      const w = worker({
        client: c, queues: queue, concurrency: N,
        errorBackoff: { initialBackoffMs: 1, maxBackoffMs: 5 },
        handler: async () => {
          await ready();
          return 'r'.repeat(20_000);
        },
      });
      await until(() => w.metrics().succeeded === N, { timeoutMs: 10_000, what: `${N} acknowledged outcomes` });
      const m = w.metrics();
      await w.stop();
      t.diagnostic(`${m.reportCalls} ReportOutcomes calls, ${m.reportErrors} refused; ${w.errors.length} errors`);
      for (const h of hs) {
        const j = await c.getJob(h.id, { includeAttempts: true });
        assert.equal(j.status, 'succeeded');
        assert.equal(j.attempts.length, 1);
        assert.equal(j.attempts[0].result.length, 20_000);
      }
    } finally {
      c.close();
      await small.destroy();
    }
  });

  test('a report batch refused as a whole is sent again in halves until it gets through', async () => {
    const queue = q('refused');
    const N = 16;
    let refusedCalls = 0;
    const sizes = [];
    // Refuses ReportOutcomes of more than 4 reports as a whole, as a server does for a request
    // over its message cap (RESOURCE_EXHAUSTED without a code; nothing applied).
    const c = wrap(client, {
      async reportOutcomes(reports, o) {
        sizes.push(reports.length);
        if (reports.length > 4) {
          ++refusedCalls;
          throw new TooLargeError('injected: request too large', { grpcCode: GrpcCode.RESOURCE_EXHAUSTED });
        }
        return client.reportOutcomes(reports, o);
      },
    });
    const hs = await client.enqueueBatch(Array.from({ length: N }, () => ({ queue, leaseMs: 60_000 })));
    const ready = allStarted(N);
    const w = worker({
      client: c, queues: queue, concurrency: N, reportWithLease: false,
      handler: async () => {
        await ready();
        return 'd'.repeat(100);  // a batch of 16 is 1.6 KB: a size refusal, not an overload
      },
    });
    await until(() => w.metrics().succeeded === N, { timeoutMs: 10_000, what: `${N} acknowledged outcomes` });
    await w.stop();
    assert.ok(refusedCalls > 0, `sizes sent: ${sizes.join(' ')}`);
    for (const h of hs) {
      const j = await client.getJob(h.id, { includeAttempts: true });
      assert.equal(j.status, 'succeeded');
      assert.equal(j.attempts.length, 1);
    }
  });

  test('a small report refused without a code (an older sluiced\'s overload answer) is retried, not rejected', async () => {
    const queue = q('overload');
    let refusals = 0;
    const c = wrap(client, {
      async reportOutcomes(reports, o) {
        if (refusals < 2) {
          ++refusals;
          throw new TooLargeError('the server has no thread free for this call; retry',
            { grpcCode: GrpcCode.RESOURCE_EXHAUSTED });
        }
        return client.reportOutcomes(reports, o);
      },
    });
    const [h] = await client.enqueueBatch([{ queue, leaseMs: 60_000 }]);
    const w = worker({
      client: c, queues: queue, reportWithLease: false,
      errorBackoff: { initialBackoffMs: 1, maxBackoffMs: 5 }, handler: () => 'ok',
    });
    await until(() => w.metrics().succeeded === 1, { timeoutMs: 5_000, what: 'the success acknowledged' });
    await w.stop();
    assert.equal(refusals, 2);
    const j = await client.getJob(h.id, { includeAttempts: true });
    assert.equal(j.status, 'succeeded');
    assert.equal(j.attempts.length, 1);
  });

  test('a server with a smaller max_lease_batch than the concurrency: leases ask for at most that many', async () => {
    const small = await new Sluiced({ args: ['--max-lease-batch', '8'] }).start();
    const c = new SluiceClient({ address: small.grpc, token: TOKEN });
    try {
      const queue = q('smallbatch');
      const N = 100;
      await c.enqueueBatch(Array.from({ length: N }, () => ({ queue })));
      const w = worker({
        client: c, queues: queue, concurrency: 32,
        errorBackoff: { initialBackoffMs: 1, maxBackoffMs: 5 },
        handler: async () => { await delay(5); },
      });
      await until(() => w.metrics().succeeded === N, { timeoutMs: 10_000, what: `${N} jobs` });
      await w.stop();
    } finally {
      c.close();
      await small.destroy();
    }
  });

  test('a server that ignores LeaseTasks reports: the worker notices and reports alone', async () => {
    const queue = q('oldsrv');
    const N = 60;
    const c = counting(client, {
      async leaseTasks(req, o) {
        // What a server older than the field does: drops it, answers no statuses.
        const res = await client.leaseTasks({ ...req, reports: undefined }, o);
        return { ...res, reportStatuses: [] };
      },
    });
    const w = worker({ queues: queue, concurrency: 4, client: c.client, handler: (job) => job.id });
    const ids = (await client.enqueueBatch(Array.from({ length: N }, () => ({ queue })))).map((h) => h.id);
    await until(() => w.metrics().succeeded === N, { timeoutMs: 20_000, what: `${N} jobs` });
    const m = w.metrics();
    await w.stop();
    await assertEachSucceededOnce(ids);
    // The first answer tells; the second lane may have sent one more call with reports.
    assert.ok(c.leaseCallsWithReports >= 1 && c.leaseCallsWithReports <= 2,
      `${c.leaseCallsWithReports} calls with reports, then no more`);
    assert.equal(m.leaseLost, 0);
    assert.equal(w.errors.filter((x) => x.ctx.op === 'report').length, 1);
  });
});

describe('lease stream', () => {
  /** A client that counts lease streams opened, their deepest pipeline, and LeaseTasks calls. */
  function watching(streamOverride) {
    const seen = { opened: 0, deepest: 0, unary: 0 };
    seen.client = wrap(client, {
      leaseStream(opts) {
        ++seen.opened;
        if (streamOverride) return streamOverride(opts);
        const s = client.leaseStream(opts);
        const lease = s.lease.bind(s);
        s.lease = (req, o) => {
          const p = lease(req, o);
          seen.deepest = Math.max(seen.deepest, s.inFlight);
          return p;
        };
        return s;
      },
      leaseTasks(req, o) {
        ++seen.unary;
        return client.leaseTasks(req, o);
      },
    });
    return seen;
  }

  test('a worker leases over one stream per queue with two requests in flight, within its concurrency', async () => {
    const queue = q('stream');
    const seen = watching();
    let running = 0;
    let peak = 0;
    const w = worker({
      queues: queue, concurrency: 8, client: seen.client,
      handler: async () => {
        peak = Math.max(peak, ++running);
        await delay(Math.random() * 3);
        --running;
      },
    });
    await client.enqueueBatch(Array.from({ length: 400 }, () => ({ queue })));
    await until(() => w.metrics().succeeded === 400, { timeoutMs: 20_000, what: '400 jobs' });
    await w.stop();
    assert.equal(seen.opened, 1);
    assert.equal(seen.deepest, 2, 'the second lane pipelines while work flows');
    assert.ok(peak <= 8 && peak >= 4, `peak ${peak}`);
    assert.equal(w.metrics().leaseLost, 0);
    assert.equal(w.metrics().failed, 0);
  });

  test('prefetch 0: handlers that finish at once get one request carrying every free slot; the second lane returns when they take time', async () => {
    const queue = q('quick');
    const seen = watching();
    let calls = 0;
    let deepestQuick = -1;
    let running = 0;
    let peak = 0;
    const w = worker({
      queues: queue, concurrency: 8, client: seen.client, prefetch: 0,
      handler: async () => {
        // The first 400 finish at once; from then on (the queue still full) each takes 1-3 ms.
        if (++calls <= 400) return;
        if (deepestQuick < 0) {
          deepestQuick = seen.deepest;
          seen.deepest = 0;
        }
        peak = Math.max(peak, ++running);
        await delay(1 + Math.random() * 2);
        --running;
      },
    });
    await client.enqueueBatch(Array.from({ length: 800 }, () => ({ queue })));
    await until(() => w.metrics().succeeded === 800, { timeoutMs: 20_000, what: '800 jobs' });
    await w.stop();
    assert.equal(deepestQuick, 1, 'one request in flight while handlers finish at once');
    assert.equal(seen.deepest, 2, 'the second lane leases again once handlers take time');
    assert.ok(peak <= 8, `peak ${peak}`);
    assert.equal(seen.opened, 1);
    assert.equal(w.metrics().failed, 0);
  });

  /** A client that tracks the tasks asked for by lease requests in flight, and the most seen. */
  function asking(w) {
    const seen = { inFlight: 0, deepest: 0, asked: 0, peakHeld: 0, maxAsk: 0 };
    seen.reset = () => { seen.deepest = 0; seen.peakHeld = 0; seen.maxAsk = 0; };
    seen.client = wrap(client, {
      leaseStream(opts) {
        const s = client.leaseStream(opts);
        const lease = s.lease.bind(s);
        s.lease = (req, o) => {
          // Held at most: handlers running, tasks waiting for a slot, and what is asked for.
          seen.asked += req.maxTasks;
          seen.maxAsk = Math.max(seen.maxAsk, req.maxTasks);
          seen.deepest = Math.max(seen.deepest, ++seen.inFlight);
          const m = w().metrics();
          seen.peakHeld = Math.max(seen.peakHeld, m.running + m.waiting + seen.asked);
          const p = lease(req, o);
          const done = () => { --seen.inFlight; seen.asked -= req.maxTasks; };
          p.then(done, done);
          return p;
        };
        return s;
      },
    });
    return seen;
  }

  test('handlers that finish at once: the worker leases ahead (prefetch) in requests of at most its concurrency; once they take time, only its free slots', async () => {
    const queue = q('prefetch');
    let w;
    const seen = asking(() => w);
    let calls = 0;
    let running = 0;
    let peak = 0;
    const quick = {};
    w = worker({
      queues: queue, concurrency: 8, client: seen.client,  // prefetch: 16 by default
      handler: async () => {
        peak = Math.max(peak, ++running);
        // The first 400 finish at once; from then on (the queue still full) each takes 1-3 ms.
        if (++calls <= 400) {
          --running;
          return;
        }
        if (quick.deepest === undefined) {
          Object.assign(quick, { deepest: seen.deepest, peakHeld: seen.peakHeld, maxAsk: seen.maxAsk });
        }
        if (calls === 401 || calls === 500) seen.reset();  // (from 500 on: the slow phase settled)
        await delay(1 + Math.random() * 2);
        --running;
      },
    });
    await client.enqueueBatch(Array.from({ length: 1000 }, () => ({ queue })));
    await until(() => w.metrics().succeeded === 1000, { timeoutMs: 30_000, what: '1000 jobs' });
    await w.stop();
    assert.ok(quick.deepest >= 2 && quick.deepest <= 3, `requests in flight while quick: ${quick.deepest}`);
    assert.ok(quick.maxAsk <= 8, `a request asks for at most the concurrency (${quick.maxAsk})`);
    assert.ok(quick.peakHeld > 8 && quick.peakHeld <= 8 + 16,
      `leased ahead, within concurrency + prefetch (${quick.peakHeld})`);
    // Handlers that take time: the pipeline's two lanes share the free slots, nothing ahead.
    assert.ok(seen.deepest <= 2, `requests in flight once slow: ${seen.deepest}`);
    assert.ok(seen.peakHeld <= 8, `held ${seen.peakHeld}`);
    assert.ok(peak <= 8, `peak ${peak}`);
    const m = w.metrics();
    assert.equal(m.failed + m.leaseLost + m.duplicates, 0);
    assert.equal(m.waiting, 0);
  });

  test('tasks leased ahead wait for a slot while a slow job holds it: never more handlers than the concurrency, each job once', async () => {
    const queue = q('wait');
    let running = 0;
    let peak = 0;
    const ran = new Map();
    const w = worker({
      queues: queue, concurrency: 2,  // prefetch 4: three requests of 2 in flight
      handler: async (job) => {
        ran.set(job.id, (ran.get(job.id) ?? 0) + 1);
        peak = Math.max(peak, ++running);
        try {
          if (job.json().slow) await delay(300);
        } finally {
          --running;
        }
      },
    });
    const specs = (n, slow) => Array.from({ length: n }, () => ({ queue, json: { slow } }));
    await client.enqueueBatch([...specs(300, false), ...specs(1, true), ...specs(300, false),
      ...specs(1, true), ...specs(300, false)]);
    await until(() => w.metrics().succeeded === 902, { timeoutMs: 30_000, what: '902 jobs' });
    await w.stop();
    assert.ok(peak <= 2, `peak ${peak}`);
    assert.equal(ran.size, 902);
    assert.ok([...ran.values()].every((n) => n === 1));
    const m = w.metrics();
    assert.ok(m.waited > 0, 'some tasks leased ahead waited for a slot');
    assert.equal(m.waiting, 0);
    assert.equal(m.failed + m.leaseLost + m.duplicates, 0);
    assert.deepEqual(w.errors, []);
  });

  test('tasks leased ahead behind a hung handler: a cancel reports them at once, unrun; the rest let their lease lapse after a lease and run elsewhere', async () => {
    const queue = q('hung');
    const received = new Set();
    const active = new Set();
    const ran = new Map();
    let release;
    const hung = new Promise((r) => { release = r; });
    const handler = (name) => async (job) => {
      ran.set(job.id, [...(ran.get(job.id) ?? []), name]);
      if (job.json().hang) await hung;  // ignores its signal
    };
    const c1 = wrap(client, {
      leaseStream(opts) {
        const s = client.leaseStream(opts);
        const lease = s.lease.bind(s);
        s.lease = (req, o) => lease(req, o).then((res) => {
          for (const t of res.tasks) received.add(t.jobId);
          return res;
        });
        return s;
      },
    });
    // prefetch 3: four requests of one task in flight while quick, so two or three are in
    // flight when the hung job starts, and their tasks wait behind it.
    const w1 = worker({ queues: queue, concurrency: 1, prefetch: 3, client: c1, handler: handler('w1') });
    const lost = [];
    w1.on('active', (t) => active.add(t.jobId));
    w1.on('leaseLost', (t, why) => lost.push([t.jobId, why]));
    const spec = (hang) => ({ queue, json: { hang }, leaseMs: 1500 });
    const hs = await client.enqueueBatch([...Array.from({ length: 200 }, () => spec(false)), spec(true),
      ...Array.from({ length: 20 }, () => spec(false))]);
    const hangId = hs[200].id;
    await until(() => active.has(hangId) && w1.metrics().waiting > 0, { timeoutMs: 20_000, what: 'tasks waiting behind the hung one' });
    await delay(300);  // the answers in flight come in
    const waitingIds = [...received].filter((id) => !active.has(id) && id !== hangId &&
      !ran.has(id));
    assert.equal(w1.metrics().waiting, waitingIds.length);
    assert.ok(waitingIds.length >= 2 && waitingIds.length <= 3, `waiting ${waitingIds}`);
    await client.cancelJob(waitingIds[0]);
    await until(() => w1.metrics().cancelled === 1, { timeoutMs: 5_000, what: 'the cancel reported' });
    assert.equal((await client.getJob(waitingIds[0])).status, 'cancelled');
    assert.ok(!ran.has(waitingIds[0]), 'a cancelled waiting task never runs');
    // The others wait a whole lease (1.5 s), then let it lapse; another worker runs them.
    await until(() => w1.metrics().waiting === 0, { timeoutMs: 10_000, what: 'the waiting tasks dropped' });
    for (const id of waitingIds.slice(1)) assert.deepEqual(lost.find((x) => x[0] === id), [id, 'expired']);
    const w2 = worker({ queues: queue, concurrency: 4, prefetch: 0, handler: handler('w2') });
    await until(() => w1.metrics().succeeded + w2.metrics().succeeded === 219,
      { timeoutMs: 30_000, what: 'every other job' });
    for (const id of waitingIds.slice(1)) assert.deepEqual(ran.get(id), ['w2']);
    release();
    await until(() => w1.metrics().succeeded + w2.metrics().succeeded === 220,
      { timeoutMs: 10_000, what: 'the hung job' });
    assert.ok([...ran.values()].every((names) => names.length === 1));
    await Promise.all([w1.stop(), w2.stop()]);
    assert.deepEqual([...w1.errors, ...w2.errors], []);
  });

  test('a worker of several queues does not lease ahead: a quick queue with a backlog leaves slots to the others', async () => {
    const a = q('qa');
    const b = q('qb');
    let doneA = 0;
    let doneB = 0;
    const w = worker({
      queues: [a, b], concurrency: 4,
      handler: async (job) => {
        if (job.queue === a) ++doneA;
        else {
          await delay(5);
          ++doneB;
        }
      },
    });
    for (let i = 0; i < 20; ++i) {
      await client.enqueueBatch(Array.from({ length: 1000 }, () => ({ queue: a })));
    }
    await until(() => doneA >= 500, { timeoutMs: 20_000, what: 'queue a under way' });
    await client.enqueueBatch(Array.from({ length: 20 }, () => ({ queue: b })));
    await until(() => doneB === 20, { timeoutMs: 20_000, what: 'queue b done' });
    assert.ok(doneA < 20_000, `queue b waited for queue a's backlog (${doneA} done)`);
    assert.equal(w.metrics().waited, 0);
    await w.stop({ timeoutMs: 1000 });
  });

  test('prefetch 0 never leases ahead; a bad prefetch is refused', async () => {
    const queue = q('noahead');
    let w;
    const seen = asking(() => w);
    w = worker({ queues: queue, concurrency: 4, prefetch: 0, client: seen.client, handler: () => {} });
    await client.enqueueBatch(Array.from({ length: 300 }, () => ({ queue })));
    await until(() => w.metrics().succeeded === 300, { timeoutMs: 20_000, what: '300 jobs' });
    await w.stop();
    assert.ok(seen.peakHeld <= 4, `held ${seen.peakHeld}`);
    assert.equal(w.metrics().waited, 0);
    for (const prefetch of [-1, 1.5, NaN]) {
      assert.throws(() => new Worker(client, { queues: 'x', handler: () => {}, prefetch, autostart: false }),
        RangeError);
    }
  });

  test('the job context destructures: json, text and signal', async () => {
    const queue = q('ctx');
    const seen = [];
    const w = worker({ queues: queue, handler: ({ json, text, signal, id }) => { seen.push([json(), text(), signal.aborted, id]); } });
    const h = await client.enqueue({ queue, json: { a: 1 } });
    await h.awaitResult({ timeoutMs: 10_000 });
    await w.stop();
    assert.deepEqual(seen, [[{ a: 1 }, '{"a":1}', false, h.id]]);
  });

  test('leaseStream: false leases with LeaseTasks calls only', async () => {
    const queue = q('unary');
    const seen = watching();
    const w = worker({ queues: queue, concurrency: 4, client: seen.client, leaseStream: false, handler: () => 'ok' });
    await client.enqueueBatch(Array.from({ length: 50 }, () => ({ queue })));
    await until(() => w.metrics().succeeded === 50, { timeoutMs: 10_000, what: '50 jobs' });
    await w.stop();
    assert.equal(seen.opened, 0);
    assert.ok(seen.unary > 0);
  });

  test('a server without LeaseStream: the worker says so once and leases with LeaseTasks calls', async () => {
    const queue = q('nostream');
    const unimplemented = () => ({
      ended: false,
      inFlight: 0,
      lease: () => Promise.reject(new UnimplementedError('unknown method LeaseStream', { grpcCode: GrpcCode.UNIMPLEMENTED })),
      close() {},
      cancel() {},
    });
    const seen = watching(unimplemented);
    const errors = [];
    const w = worker({ queues: queue, concurrency: 4, client: seen.client, handler: () => 'ok' });
    w.on('error', (e) => errors.push(e));
    const hs = await client.enqueueBatch(Array.from({ length: 30 }, () => ({ queue })));
    await until(() => w.metrics().succeeded === 30, { timeoutMs: 10_000, what: '30 jobs' });
    await w.stop();
    assert.ok(seen.opened >= 1 && seen.opened <= 2, `${seen.opened} streams tried`);  // one per lane at most
    assert.ok(seen.unary > 0);
    assert.equal(errors.filter((e) => e.grpcCode === GrpcCode.UNIMPLEMENTED).length, 1, errors.map((e) => e.message).join('; '));
    for (const h of hs.slice(0, 3)) assert.equal(await h.status(), 'succeeded');
  });
});

describe('recovery', () => {
  test('the worker reports errors and recovers by itself when the server comes back', async () => {
    const port = await freePort();
    const s = await new Sluiced({ grpcListen: `127.0.0.1:${port}` }).start();
    const c = new SluiceClient({ address: s.grpc, token: TOKEN });
    const queue = q('restart');
    const w = worker({ client: c, queues: queue, concurrency: 2, leaseWaitMs: 1000,
      errorBackoff: { initialBackoffMs: 20, maxBackoffMs: 200 }, handler: () => 'ok' });
    assert.equal((await (await c.enqueue({ queue })).awaitResult({ timeoutMs: 5000 })).status, 'succeeded');
    await s.stop();
    await until(() => w.errors.some((x) => x.ctx.op === 'lease'), { timeoutMs: 10_000, what: 'a lease error' });
    await s.start();
    const h = await c.enqueue({ queue }, { timeoutMs: 10_000 });
    assert.equal((await h.awaitResult({ timeoutMs: 10_000 })).status, 'succeeded');
    await w.stop();
    c.close();
    await s.destroy();
  });
});
