'use strict';
// Concurrency: 8 lease loops in one process drain 2000 jobs while the event loop stays
// responsive; parked long-polls starve neither the loop nor other engine calls.
const test = require('node:test');
const assert = require('node:assert/strict');
const { sluice, openTemp } = require('./helpers');

const LOOPS = 8;
const JOBS = 2000;
const TICK_MS = 5;
// Typically < 10 ms. The bound leaves room for a loaded 2-core CI machine and still catches a
// loop blocked by a lease: that would show the lease's whole wait (200-600 ms here).
const MAX_LAG_MS = 100;

// Samples how late a short interval fires: the event loop's responsiveness.
function lagMonitor() {
  let last = process.hrtime.bigint();
  let maxLag = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = process.hrtime.bigint();
    maxLag = Math.max(maxLag, Number(now - last) / 1e6 - TICK_MS);
    last = now;
    ++ticks;
  }, TICK_MS);
  return { stop: () => { clearInterval(timer); return { maxLag, ticks }; } };
}

test('8 concurrent lease loops drain 2000 jobs; the loop stays responsive', async (t) => {
  const { engine } = await openTemp(t);
  for (let b = 0; b < JOBS / 1000; ++b) {
    await engine.enqueueBatch(Array.from({ length: 1000 }, (_, i) => ({
      queue: 'c', payload: String(b * 1000 + i) })));
  }
  const seen = new Set();
  let done = 0;
  const monitor = lagMonitor();
  const started = Date.now();
  async function worker(w) {
    let leases = 0;
    while (done < JOBS) {
      const { tasks } = await engine.lease({ queue: 'c', workerId: `w${w}`, maxTasks: 16,
        waitMs: 200 });
      ++leases;
      if (tasks.length === 0) continue;
      for (const task of tasks) {
        assert.ok(!seen.has(task.jobId), 'a job is leased once');
        seen.add(task.jobId);
      }
      const statuses = await engine.completeMany(tasks.map((task) => ({ task })));
      assert.ok(statuses.every((s) => s === null));
      done += tasks.length;
    }
    return leases;
  }
  const leases = await Promise.all(Array.from({ length: LOOPS }, (_, w) => worker(w)));
  const { maxLag, ticks } = monitor.stop();
  const elapsed = Date.now() - started;
  t.diagnostic(`drained ${JOBS} jobs in ${elapsed} ms; max loop lag ${maxLag.toFixed(1)} ms; ` +
    `${ticks} ticks; leases per loop ${leases.join(',')}`);
  assert.equal(seen.size, JOBS);
  assert.ok(leases.every((n) => n > 0), 'every loop leased');
  assert.ok(maxLag < MAX_LAG_MS, `event loop lag ${maxLag} ms`);
  const stats = await engine.stats();
  assert.equal(stats.succeeded, JOBS);
  assert.equal(stats.running, 0);
});

test('parked long-polls leave the loop and other engine calls free', async (t) => {
  const { engine } = await openTemp(t);
  const monitor = lagMonitor();
  // More waiting leases than libuv has pool threads (4): they must not occupy it.
  const parked = Array.from({ length: LOOPS }, (_, w) =>
    engine.lease({ queue: 'idle', workerId: `p${w}`, waitMs: 600 }));
  await new Promise((r) => setTimeout(r, 50));
  const t0 = process.hrtime.bigint();
  await engine.stats();
  const { id } = await engine.enqueue({ queue: 'other' });
  await engine.getJob(id);
  const callsMs = Number(process.hrtime.bigint() - t0) / 1e6;
  // A job enqueued on the parked queue wakes exactly one of the long-polls early.
  await engine.enqueue({ queue: 'idle' });
  const results = await Promise.all(parked);
  const { maxLag, ticks } = monitor.stop();
  t.diagnostic(`calls while parked: ${callsMs.toFixed(1)} ms; lag ${maxLag.toFixed(1)} ms; ` +
    `${ticks} ticks`);
  assert.ok(callsMs < 300, `engine calls waited ${callsMs} ms behind parked leases`);
  assert.equal(results.reduce((n, r) => n + r.tasks.length, 0), 1);
  assert.ok(maxLag < MAX_LAG_MS, `event loop lag ${maxLag} ms`);
  assert.ok(ticks >= 50, `only ${ticks} ticks in ~600 ms`);
});

test('concurrent producers and consumers in one process', async (t) => {
  const { engine } = await openTemp(t);
  const N = 400;
  const producers = Array.from({ length: 4 }, (_, p) => (async () => {
    for (let i = 0; i < N / 4; ++i) await engine.enqueue({ queue: 'pc', id: `p${p}-${i}` });
  })());
  let done = 0;
  const consumers = Array.from({ length: 4 }, (_, w) => (async () => {
    while (done < N) {
      const { tasks } = await engine.lease({ queue: 'pc', workerId: `c${w}`, maxTasks: 8,
        waitMs: 100 });
      for (const task of tasks) await engine.complete(task);
      done += tasks.length;
    }
  })());
  await Promise.all([...producers, ...consumers]);
  assert.equal((await engine.stats()).succeeded, N);
  assert.equal((await engine.getJob('p3-99')).status, 'succeeded');
});
