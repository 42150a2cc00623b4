// Network faults through toxiproxy between the clients and a real sluiced: latency, resets,
// stalls (timeout), truncated connections (limit_data) and finally a 2 s outage (proxy
// disabled) while a producer enqueues a few thousand jobs and a Worker runs them. Then the proxy
// heals and, with nothing restarted:
//   0 duplicate jobs       (each id created once; one succeeded attempt per job; the server
//                           counted exactly as many enqueued jobs as ids were acknowledged)
//   0 lost acknowledged    (every acknowledged id ends succeeded)
//   0 unhandled rejections (process-wide)
//   the Worker recovers    (jobs enqueued after healing complete promptly)
// FAULT_JOBS (default 3000) sets the job count. The counts are printed as test diagnostics.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { SluiceClient, Worker, isTransient } from '../dist/index.js';
import { Sluiced, TOKEN, until } from './harness.mjs';
import { Toxiproxy } from './toxiproxy.mjs';

const JOBS = Number(process.env.FAULT_JOBS ?? 3000);
const BATCH = 20;
const PRODUCE_MS = 12_000;
let srv;
let toxi;
let unhandled = 0;
const onUnhandled = (e) => {
  ++unhandled;
  console.error('unhandled rejection:', e);
};

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  srv = await new Sluiced().start();
  toxi = await new Toxiproxy().start();
});
after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await toxi?.stop();
  await srv?.destroy();
});

/** A counter from the server's /metrics (Prometheus text), e.g. ('sluice_outcomes_total', 'kind="succeeded"'). */
async function counter(name, labels = '') {
  const text = await (await fetch(`http://${srv.http}/metrics`)).text();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? '') === labels) return Number(m[3]);
  }
  return 0;
}

// Toxics applied one after another, each for `ms`, with healthy gaps between them.
const SCHEDULE = [
  { ms: 1500, toxics: [
    { name: 'lat-down', type: 'latency', stream: 'downstream', attributes: { latency: 150, jitter: 100 } },
    { name: 'lat-up', type: 'latency', stream: 'upstream', attributes: { latency: 50, jitter: 50 } }] },
  { ms: 1200, toxics: [{ name: 'reset', type: 'reset_peer', stream: 'downstream', attributes: { timeout: 300 } }] },
  { ms: 1500, toxics: [{ name: 'stall', type: 'timeout', stream: 'downstream', attributes: { timeout: 800 } }] },
  { ms: 1500, toxics: [{ name: 'trunc', type: 'limit_data', stream: 'downstream', attributes: { bytes: 3000 } }] },
  { ms: 1500, toxics: [{ name: 'stall-up', type: 'timeout', stream: 'upstream', attributes: { timeout: 0 } }] },
  { ms: 1000, toxics: [{ name: 'reset-up', type: 'reset_peer', stream: 'upstream', attributes: { timeout: 0 } }] },
  { ms: 1500, toxics: [
    { name: 'lat-down2', type: 'latency', stream: 'downstream', attributes: { latency: 400, jitter: 200 } },
    { name: 'trunc-up', type: 'limit_data', stream: 'upstream', attributes: { bytes: 20000 }, toxicity: 0.5 }] },
];

test(`faults during ${JOBS} jobs: no duplicates, nothing acknowledged lost, the worker recovers`,
  { timeout: 180_000 }, async (t) => {
    const proxyAddr = await toxi.proxy('sluiced', srv.grpc);
    const retries = {};
    const clientOpts = {
      address: proxyAddr, token: TOKEN, attemptTimeoutMs: 2000, timeoutMs: 15_000,
      retry: { maxAttempts: 10, initialBackoffMs: 50, maxBackoffMs: 1000 },
      onRetry: ({ method, error }) => {
        const k = `${method}:${error.code}`;
        retries[k] = (retries[k] ?? 0) + 1;
      },
    };
    const producer = new SluiceClient(clientOpts);
    const workerClient = new SluiceClient(clientOpts);
    const direct = new SluiceClient({ address: srv.grpc, token: TOKEN });
    const queue = `faults-${Date.now()}`;
    const started = Date.now();

    // ---- Worker ----
    const executions = new Map();  // job id -> handler runs
    let running = 0;
    let peak = 0;
    const workerErrors = {};
    const worker = new Worker(workerClient, {
      queues: queue, concurrency: 16, leaseWaitMs: 1000,
      errorBackoff: { initialBackoffMs: 50, maxBackoffMs: 1000 },
      handler: async (job) => {
        executions.set(job.id, (executions.get(job.id) ?? 0) + 1);
        peak = Math.max(peak, ++running);
        try {
          // Every 100th job outlives a third of its lease: its heartbeats cross the faults.
          await delay(job.json().n % 100 === 0 ? 1500 : Math.random() * 4);
          return job.id;
        } finally {
          --running;
        }
      },
    });
    const lostBy = {};
    worker.on('leaseLost', (task, why) => { lostBy[why] = (lostBy[why] ?? 0) + 1; });
    worker.on('error', (e, ctx) => {
      const k = `${ctx.op}:${e?.code ?? e?.name}`;
      workerErrors[k] = (workerErrors[k] ?? 0) + 1;
    });

    // ---- Producer: batches with client ids, re-sent (same ids) until acknowledged ----
    const acked = new Set();
    let createdTwice = 0;
    let createdFalse = 0;
    let producerGaveUp = 0;
    const created = new Set();
    const produce = async () => {
      for (let i = 0; i < JOBS; i += BATCH) {
        const specs = Array.from({ length: Math.min(BATCH, JOBS - i) }, (_, k) => ({
          queue, id: `job-${i + k}`, json: { n: i + k }, leaseMs: 3000,
          retry: { maxRetries: 50, initialBackoffMs: 50, maxBackoffMs: 500 },
        }));
        for (;;) {
          try {
            const hs = await producer.enqueueBatch(specs);
            for (const h of hs) {
              if (h.created) {
                if (created.has(h.id)) ++createdTwice;
                created.add(h.id);
              } else {
                ++createdFalse;
              }
              acked.add(h.id);
            }
            break;
          } catch (e) {
            if (!isTransient(e)) throw e;
            ++producerGaveUp;  // the client's retries ran out: the application tries again
          }
        }
        // Spread the jobs over the fault schedule.
        const due = started + PRODUCE_MS * ((i + BATCH) / JOBS);
        if (due > Date.now()) await delay(due - Date.now());
      }
    };

    // ---- Faults ----
    const faults = async () => {
      await delay(300);
      for (const step of SCHEDULE) {
        for (const tx of step.toxics) await toxi.addToxic('sluiced', tx);
        await delay(step.ms);
        for (const tx of step.toxics) await toxi.removeToxic('sluiced', tx.name);
        await delay(700);
      }
      // Last, a hard outage: the proxy refuses connections and drops the open ones.
      await toxi.setEnabled('sluiced', false);
      await delay(2000);
      await toxi.setEnabled('sluiced', true);
    };

    await Promise.all([produce(), faults()]);
    const healedAt = Date.now();
    assert.deepEqual(await toxi.toxics('sluiced'), [], 'healed');
    assert.equal(acked.size, JOBS);

    // ---- After healing: everything completes without restarting anything ----
    await until(async () => (await counter('sluice_outcomes_total', 'kind="succeeded"')) >= JOBS,
      { timeoutMs: 90_000, every: 200, what: 'all jobs to succeed' });
    const drainedAt = Date.now();
    const late = await producer.enqueueBatch(Array.from({ length: 50 }, () => ({ queue, json: { n: -1 } })));
    const lateStart = Date.now();
    const lateResults = await Promise.all(late.map((h) => direct.awaitResult(h.id, { timeoutMs: 10_000 })));
    const lateMs = Date.now() - lateStart;
    assert.ok(lateResults.every((r) => r.status === 'succeeded'));

    // ---- Verdicts, from the server's own records ----
    let lost = 0;
    let notOneSuccess = 0;
    let extraAttempts = 0;
    const ids = [...acked];
    for (let i = 0; i < ids.length; i += 100) {
      const jobs = await Promise.all(ids.slice(i, i + 100).map((id) => direct.getJob(id, { includeAttempts: true })));
      for (const j of jobs) {
        if (j.status !== 'succeeded') ++lost;
        const ok = j.attempts.filter((a) => a.status === 'succeeded');
        if (ok.length !== 1 || ok[0].result.toString() !== j.id) ++notOneSuccess;
        extraAttempts += j.attempts.length - 1;
      }
    }
    const reExecuted = [...executions.values()].filter((n) => n > 1).length;
    const m = worker.metrics();
    const enqueued = await counter('sluice_jobs_enqueued_total');
    const stopRes = await worker.stop({ timeoutMs: 5000 });

    t.diagnostic(`jobs=${JOBS} acked=${acked.size} created=${created.size} createdFalse(retry found job)=${createdFalse} ` +
      `producerAppRetries=${producerGaveUp}`);
    t.diagnostic(`lost=${lost} duplicateCreates=${createdTwice} notExactlyOneSuccess=${notOneSuccess} ` +
      `serverEnqueued=${enqueued} (expected ${JOBS + late.length}) unhandled=${unhandled}`);
    t.diagnostic(`extraAttempts(lease expiries)=${extraAttempts} handlerReExecutions=${reExecuted} peakConcurrency=${peak}`);
    t.diagnostic(`worker: ${JSON.stringify(m)}`);
    t.diagnostic(`worker errors: ${JSON.stringify(workerErrors)} leases lost by reason: ${JSON.stringify(lostBy)}`);
    t.diagnostic(`client retries: ${JSON.stringify(retries)}`);
    t.diagnostic(`faults+production ${healedAt - started} ms, drain after heal ${drainedAt - healedAt} ms, ` +
      `50 jobs after heal in ${lateMs} ms`);

    assert.equal(lost, 0, 'no acknowledged job lost');
    assert.equal(createdTwice, 0, 'no id created twice');
    assert.equal(created.size + createdFalse, JOBS, 'a retried batch found the jobs it created');
    assert.equal(notOneSuccess, 0, 'exactly one succeeded attempt per job');
    assert.equal(enqueued, JOBS + late.length, 'the server stored no extra job');
    assert.equal(unhandled, 0, 'no unhandled rejections');
    assert.ok(peak <= 16);
    assert.equal(m.failed, 0, 'no handler failed');
    assert.ok(lateMs < 10_000, 'the worker recovered by itself');
    assert.ok(Object.keys(retries).length > 0, 'the faults were felt (calls were retried)');
    assert.deepEqual(stopRes, { drained: true, abandoned: 0 });
    producer.close();
    workerClient.close();
    direct.close();
  });

test('a lost answer: a retried enqueue with an id finds the job its first try created; without an id it is not retried',
  { timeout: 60_000 }, async () => {
    const proxyAddr = await toxi.proxy('lost-answer', srv.grpc);
    const direct = new SluiceClient({ address: srv.grpc, token: TOKEN });
    let removal = null;
    const c = new SluiceClient({
      address: proxyAddr, token: TOKEN, retry: { maxAttempts: 20, initialBackoffMs: 100, maxBackoffMs: 300 },
      // Heal the proxy once the first answer was lost, so a later try gets through.
      onRetry: () => { removal ??= toxi.removeToxic('lost-answer', 'cut'); },
    });
    await c.getNodeInfo();  // connected
    const queue = `lost-${Date.now()}`;
    const before = await counter('sluice_jobs_enqueued_total');
    // Requests reach the server; every answer is cut by a connection reset.
    await toxi.addToxic('lost-answer', { name: 'cut', type: 'reset_peer', stream: 'downstream', attributes: { timeout: 0 } });
    const h = await c.enqueue({ queue, id: `lost-${Date.now()}` });
    await removal;
    assert.equal(h.created, false, 'the first try created it; the retry found it');
    assert.equal(await counter('sluice_jobs_enqueued_total'), before + 1, 'one job');

    await toxi.addToxic('lost-answer', { name: 'cut', type: 'reset_peer', stream: 'downstream', attributes: { timeout: 0 } });
    await assert.rejects(c.enqueue({ queue, id: '' }), (e) => isTransient(e) && e.attempts === 1);
    await toxi.removeToxic('lost-answer', 'cut');
    await until(async () => (await counter('sluice_jobs_enqueued_total')) === before + 2,
      { what: 'the server to have stored the unanswered enqueue' });
    c.close();
    direct.close();
  });

// A report is in flight when the lease runs out by the Worker's clock (its heartbeat cannot get
// an answer back in time). The report's answer decides, and the task gets one event: completed
// when the server took the outcome before its lease ran out there, leaseLost when it did not.
test('a lease that runs out while its report is in flight: the report\'s answer decides, one event per task',
  { timeout: 60_000 }, async () => {
    const direct = new SluiceClient({ address: srv.grpc, token: TOKEN });
    for (const [name, stream, expect] of [
      ['late-answer', 'downstream', 'completed'],  // the report lands; its answer comes late
      ['late-report', 'upstream', 'leaseLost'],    // the report reaches the server too late
    ]) {
      const proxyAddr = await toxi.proxy(name, srv.grpc);
      const c = new SluiceClient({ address: proxyAddr, token: TOKEN });
      await c.getNodeInfo();
      const queue = `${name}-${Date.now()}`;
      const events = [];
      let toxic = null;
      const w = new Worker(c, {
        queues: queue, concurrency: 1,
        handler: async (job) => {
          if (job.attempt > 1) return 'again';
          // Past the first heartbeat (a third of the 600 ms lease), which moves the local
          // expiry to its send time + 600 ms, a little before the server's.
          await delay(260);
          // From here on everything in one direction takes 1.2 s: the report now being sent,
          // and the next heartbeat, which times out at the local expiry.
          toxic = toxi.addToxic(name, { name: 'slow', type: 'latency', stream, attributes: { latency: 1200 } });
          await toxic;
          return 'done';
        },
      });
      for (const ev of ['completed', 'failed', 'cancelled', 'leaseLost']) {
        w.on(ev, (task, reason) => events.push({ ev, jobId: task.jobId, attempt: task.attempt, reason }));
      }
      w.on('error', () => {});  // the heartbeat's timeout
      // The retry waits 2 s, so it is not leased while the toxic is still in place.
      const h = await direct.enqueue({ queue, leaseMs: 600, retry: { maxRetries: 1, initialBackoffMs: 2000 } });
      await until(() => events.length > 0, { timeoutMs: 15_000, what: `${name}: the first attempt's event` });
      await toxi.removeToxic(name, 'slow');
      // Nothing more for the first attempt: wait past the time a second event would take.
      await delay(1500);
      const first = events.filter((e) => e.attempt === 1);
      assert.deepEqual(first.map((e) => e.ev), [expect], `${name}: ${JSON.stringify(events)}`);
      const m = w.metrics();
      if (expect === 'completed') {
        assert.equal(first[0].reason.toString(), 'done');
        assert.equal(m.leaseLost, 0);
        const job = await direct.getJob(h.id, { includeAttempts: true });
        assert.equal(job.status, 'succeeded');
        assert.equal(job.attempts.length, 1, JSON.stringify(job.attempts));
      } else {
        assert.equal(first[0].reason, 'expired');
        assert.equal(m.leaseLost, 1);
        assert.equal(m.succeeded + m.failed + m.cancelled, events.filter((e) => e.attempt > 1).length);
        // The server ran the job again (the first attempt's lease expired there).
        await until(async () => (await direct.getJob(h.id)).status === 'succeeded',
          { timeoutMs: 15_000, what: `${name}: the retry to succeed` });
      }
      await w.stop({ timeoutMs: 5000 });
      c.close();
    }
    direct.close();
  });
