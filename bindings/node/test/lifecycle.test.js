'use strict';
// Lifecycle: open, enqueue, lease, heartbeat, complete/fail/cancel, reads, close, finalizers.
const test = require('node:test');
const assert = require('node:assert/strict');
const v8 = require('node:v8');
const vm = require('node:vm');
const { sluice, tempDir, openTemp } = require('./helpers');

const { Engine } = sluice;

test('version is the library version', () => {
  assert.match(sluice.version(), /^\d+\.\d+\.\d+$/);
});

test('enqueue, lease, heartbeat, complete and read back', async (t) => {
  const { engine } = await openTemp(t);
  const r = await engine.enqueue({ queue: 'q', payload: Buffer.from([1, 2, 3]), metadata: { a: 'b' },
    priority: 7 });
  assert.equal(r.created, true);
  assert.equal(r.status, 'waiting');
  const again = await engine.enqueue({ id: r.id, queue: 'q' });
  assert.deepEqual(again, { id: r.id, created: false, status: 'waiting' });

  const { tasks, refreshes } = await engine.lease({ queue: 'q', workerId: 'w1', maxTasks: 5 });
  assert.equal(tasks.length, 1);
  assert.deepEqual(refreshes, []);
  const task = tasks[0];
  assert.equal(task.jobId, r.id);
  assert.equal(task.attempt, 1);
  assert.equal(task.priority, 7);
  assert.equal(task.workerId, 'w1');
  assert.equal(typeof task.leaseToken, 'bigint');
  assert.deepEqual([...task.payload], [1, 2, 3]);
  assert.deepEqual(task.metadata, { a: 'b' });

  const hb = await engine.heartbeat(task);
  assert.equal(hb.cancelRequested, false);
  assert.ok(hb.leaseExpiresMs >= task.leaseExpiresMs);

  await engine.complete(task, JSON.stringify({ ok: true }));
  const job = await engine.getJob(r.id, { includeAttempts: true });
  assert.equal(job.status, 'succeeded');
  assert.equal(job.attempts.length, 1);
  assert.equal(job.attempts[0].workerId, 'w1');
  const res = await engine.getResult(r.id);
  assert.equal(res.finished, true);
  assert.deepEqual(sluice.parseJson(res.result), { ok: true });

  const stats = await engine.stats();
  assert.equal(stats.enqueued, 1);
  assert.equal(stats.succeeded, 1);
});

test('failure with retry, noRetry, cancel, restart, expedite and delete', async (t) => {
  const { engine } = await openTemp(t);
  const { id } = await engine.enqueue({ queue: 'q', retry: { maxRetries: 1, initialBackoffMs: 0 } });
  let [task] = (await engine.lease({ queue: 'q', workerId: 'w' })).tasks;
  await engine.fail(task, { code: 'boom', message: 'first', data: 'x' });
  [task] = (await engine.lease({ queue: 'q', workerId: 'w', waitMs: 1000 })).tasks;
  assert.equal(task.attempt, 2);
  await engine.fail(task, { code: 'boom', message: 'second' });
  const res = await engine.getResult(id);
  assert.equal(res.status, 'failed');
  assert.equal(res.errorCode, 'boom');
  assert.equal(res.errorMessage, 'second');

  await engine.restart(id);
  [task] = (await engine.lease({ queue: 'q', workerId: 'w' })).tasks;
  const c = await engine.cancel(id);
  assert.deepEqual(c, { status: 'running', cancelRequested: true });
  assert.equal((await engine.heartbeat(task)).cancelRequested, true);
  await engine.reportCancelled(task);
  assert.equal((await engine.getJob(id)).status, 'cancelled');

  const later = await engine.enqueue({ queue: 'q', startAtMs: Date.now() + 3_600_000, tenant: 't1' });
  assert.equal(later.status, 'scheduled');
  await engine.expedite(later.id, { tenant: 't1' });
  assert.equal((await engine.getJob(later.id, { tenant: 't1' })).status, 'waiting');
  await engine.delete(later.id, { tenant: 't1' });
  await assert.rejects(engine.getJob(later.id, { tenant: 't1' }), sluice.NotFoundError);

  const nr = await engine.enqueue({ queue: 'q2' });
  [task] = (await engine.lease({ queue: 'q2', workerId: 'w' })).tasks;
  await engine.report(task, { kind: 'failure', code: 'fatal', noRetry: true });
  assert.equal((await engine.getJob(nr.id)).status, 'failed');
});

test('enqueueBatch, batch lease and completeMany with per-item statuses', async (t) => {
  const { engine } = await openTemp(t);
  const specs = Array.from({ length: 50 }, (_, i) => ({ queue: 'b', payload: `job-${i}` }));
  const results = await engine.enqueueBatch(specs);
  assert.equal(results.length, 50);
  assert.ok(results.every((r) => r.created));
  const { tasks } = await engine.lease({ queue: 'b', workerId: 'w', maxTasks: 64 });
  assert.equal(tasks.length, 50);
  const stale = { ...tasks[0], leaseToken: tasks[0].leaseToken + 12345n };
  const statuses = await engine.completeMany([
    { task: stale },
    ...tasks.map((task) => ({ task, outcome: { kind: 'success', result: task.payload } })),
  ]);
  assert.equal(statuses.length, 51);
  assert.ok(statuses[0] instanceof sluice.LeaseLostError);
  assert.equal(statuses[0].code, 'lease_lost');
  assert.ok(statuses.slice(1).every((s) => s === null));
  assert.equal((await engine.stats()).succeeded, 50);
  const res = await engine.getResult(results[7].id);
  assert.equal(res.result.toString(), 'job-7');
});

test('reapExpired returns expired leases to the queue', async (t) => {
  const { engine } = await openTemp(t);
  await engine.enqueue({ queue: 'q', leaseMs: 50, retry: { initialBackoffMs: 0 } });
  const [task] = (await engine.lease({ queue: 'q', workerId: 'w' })).tasks;
  await new Promise((r) => setTimeout(r, 120));
  const reaped = await engine.reapExpired();
  assert.ok(reaped <= 1);  // the background reaper may have been first
  await assert.rejects(engine.complete(task), sluice.LeaseLostError);
  const again = await engine.lease({ queue: 'q', workerId: 'w', waitMs: 1000 });
  assert.equal(again.tasks[0].attempt, 2);
});

test('close ends waiting leases and later calls reject with ClosedError', async (t) => {
  const dir = tempDir(t);
  const engine = await Engine.open(dir, { durability: 'async' });
  const waiting = engine.lease({ queue: 'empty', workerId: 'w', waitMs: 10_000 });
  await new Promise((r) => setTimeout(r, 50));
  const ended = assert.rejects(waiting, (e) => e instanceof sluice.ClosedError && e.code === 'closed');
  const started = Date.now();
  await engine.close();
  await ended;
  assert.ok(Date.now() - started < 2000, 'close must wake the long-poll');
  await engine.close();  // idempotent
  for (const call of [
    () => engine.enqueue({ queue: 'q' }),
    () => engine.enqueueBatch([{ queue: 'q' }]),
    () => engine.lease({ queue: 'q', workerId: 'w' }),
    () => engine.getJob('x'),
    () => engine.cancel('x'),
    () => engine.reapExpired(),
  ]) {
    await assert.rejects(call(), (e) => e instanceof sluice.ClosedError && e.status === 6);
  }
  const [item] = await engine.completeMany([{ task: { tenant: '', taskId: 'a#1', leaseToken: 1n } }]);
  assert.ok(item instanceof sluice.ClosedError, 'completeMany reports closed per item');
  // The store is released: it opens again.
  const reopened = await Engine.open(dir, { durability: 'async' });
  await reopened.close();
});

test('the finalizer of an unclosed engine releases the store', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const dir = tempDir(t);
  let engine = await Engine.open(dir, { durability: 'async' });
  await engine.enqueue({ id: 'kept', queue: 'q' });
  // RocksDB locks the directory: a second open in this process fails while the first lives.
  await assert.rejects(Engine.open(dir), (e) => e instanceof sluice.StorageError && e.code === 'io_error');
  engine = null;
  let reopened = null;
  for (let i = 0; i < 50 && reopened === null; ++i) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
    reopened = await Engine.open(dir).catch(() => null);
  }
  assert.ok(reopened, 'the finalizer must destroy the handle and unlock the store');
  assert.equal((await reopened.getJob('kept')).queue, 'q');
  await reopened.close();
});

test('worker threads: an engine per thread; exiting with a lease parked is safe', async (t) => {
  const { Worker } = require('node:worker_threads');
  const code = `
    const { parentPort, workerData: dir } = require('node:worker_threads');
    const { Engine } = require(${JSON.stringify(require.resolve('..'))});
    (async () => {
      const e = await Engine.open(dir, { durability: 'async' });
      await e.enqueue({ queue: 'q' });
      e.lease({ queue: 'empty', workerId: 'x', waitMs: 400 }).catch(() => {});
      const { tasks } = await e.lease({ queue: 'q', workerId: 'w' });
      await e.complete(tasks[0]);
      parentPort.postMessage((await e.stats()).succeeded);
      process.exit(0);  // tears the worker down while a lease is parked; e is never closed
    })();`;
  const results = await Promise.all([0, 1].map(() => new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: tempDir(t) });
    let got = null;
    w.on('message', (m) => { got = m; });
    w.on('error', reject);
    w.on('exit', (c) => resolve([c, got]));
  })));
  assert.deepEqual(results, [[0, 1], [0, 1]]);
  await new Promise((r) => setTimeout(r, 600));  // the parked leases return into dead envs
});
