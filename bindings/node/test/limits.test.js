'use strict';
// Concurrency limits through the binding: fixed keys, floating keys and a refresh round trip.
const test = require('node:test');
const assert = require('node:assert/strict');
const { openTemp } = require('./helpers');

test('a fixed limit of 2 runs two at a time', async (t) => {
  const { engine } = await openTemp(t);
  await engine.enqueueBatch(Array.from({ length: 5 }, () => ({
    queue: 'q', limits: [{ key: 'db', max: 2 }] })));
  const first = await engine.lease({ queue: 'q', workerId: 'w', maxTasks: 10 });
  assert.equal(first.tasks.length, 2);
  assert.deepEqual(await engine.concurrencyKey('db'), { holders: 2, waiters: 3, max: 2 });
  await engine.complete(first.tasks[0]);
  const next = await engine.lease({ queue: 'q', workerId: 'w', maxTasks: 10 });
  assert.equal(next.tasks.length, 1);
  const job = await engine.getJob(next.tasks[0].jobId);
  assert.deepEqual(job.limits, [{ kind: 'fixed', key: 'db', max: 2, refreshIntervalMs: 0,
    metadata: {} }]);
});

test('floating limit: refresh round trip, heartbeat, failure and override', async (t) => {
  const { engine } = await openTemp(t);
  const limit = { kind: 'floating', key: 'api', max: 1, refreshIntervalMs: 60_000,
    metadata: { region: 'eu' } };
  await engine.enqueueBatch(Array.from({ length: 5 }, () => ({ queue: 'q', limits: [limit] })));

  const r = await engine.lease({ queue: 'q', workerId: 'w', maxTasks: 10, withRefreshes: true });
  assert.equal(r.tasks.length, 1);  // default max 1
  assert.equal(r.refreshes.length, 1);  // never refreshed: due at once
  const refresh = r.refreshes[0];
  assert.equal(refresh.key, 'api');
  assert.equal(refresh.currentMax, 1);
  assert.equal(refresh.defaultMax, 1);
  assert.deepEqual(refresh.metadata, { region: 'eu' });
  assert.equal(typeof refresh.leaseToken, 'bigint');
  assert.ok(await engine.refreshHeartbeat(refresh) >= refresh.leaseExpiresMs);

  let state = await engine.getFloatingLimit('api');
  assert.equal(state.refreshInFlight, true);
  assert.equal(state.waiters, 4);
  await engine.refreshComplete(refresh, { newMax: 5 });
  state = await engine.getFloatingLimit('api');
  assert.equal(state.currentMax, 5);
  assert.equal(state.holders, 5);  // the raise granted the waiters at once
  assert.equal(state.waiters, 0);
  const more = await engine.lease({ queue: 'q', workerId: 'w', maxTasks: 10, withRefreshes: true });
  assert.equal(more.tasks.length, 4);
  assert.equal(more.refreshes.length, 0);  // fresh value
  assert.deepEqual(await engine.concurrencyKey('api', { kind: 'floating' }),
    { holders: 5, waiters: 0, max: 5 });
  assert.deepEqual(await engine.concurrencyKey('api'), { holders: 0, waiters: 0, max: 0 });

  await engine.setFloatingLimit('api', 0);  // operator pause
  assert.equal((await engine.getFloatingLimit('api')).currentMax, 0);
  await engine.completeMany([...r.tasks, ...more.tasks].map((task) => ({ task })));
  await engine.enqueue({ queue: 'q', limits: [limit] });
  assert.equal((await engine.lease({ queue: 'q', workerId: 'w' })).tasks.length, 0);
  await engine.setFloatingLimit('api', 1);
  assert.equal((await engine.lease({ queue: 'q', workerId: 'w' })).tasks.length, 1);
});

test('a failed refresh keeps the value and counts the failure', async (t) => {
  const { engine } = await openTemp(t);
  await engine.enqueue({ queue: 'q', limits: [{ kind: 'floating', key: 'k', max: 3,
    refreshIntervalMs: 60_000 }] });
  const r = await engine.lease({ queue: 'q', workerId: 'w', withRefreshes: true });
  assert.equal(r.refreshes.length, 1);
  await engine.refreshComplete(r.refreshes[0], { errorCode: 'upstream_down', errorMessage: 'x' });
  const state = await engine.getFloatingLimit('k');
  assert.equal(state.currentMax, 3);
  assert.equal(state.consecutiveFailures, 1);
  assert.ok(state.nextRefreshMs > Date.now());
});
