// Floating concurrency limits end to end: the Worker's refresh handlers compute a key's max,
// the server enforces it, a throwing handler leaves the old max, a missing handler fails at once.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { RefreshTimeoutError, SluiceClient, Worker } from '../dist/index.js';
import { Sluiced, TOKEN, until } from './harness.mjs';

let srv;
let client;
const q = (name) => `${name}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * Holds each job (its metadata names its key) until that key's refresh has failed. One refresh
 * rides on each lease answer and a key whose jobs are all done gets none: tests of several keys
 * keep a job of each running (and one waiting on it: two per key with max 1) and a spare slot
 * that keeps the Worker leasing. A key's jobs end as soon as its refresh failed, so the
 * server's retry of it (1 s later) finds none.
 */
function refreshWatch() {
  const failed = new Map();  // key -> { done, resolve }
  const entry = (key) => {
    let e = failed.get(key);
    if (e === undefined) {
      let resolve;
      const done = new Promise((r) => { resolve = r; });
      e = { done, resolve };
      failed.set(key, e);
    }
    return e;
  };
  return {
    failedKey: (key) => entry(key).resolve(),
    hold: (job) => Promise.race([entry(job.metadata.key).done, delay(15_000)]).then(() => 'ok'),
    enqueue: (queue, keys) => Promise.all([...keys, ...keys].map((key) => client.enqueue({
      queue, metadata: { key }, limits: [{ kind: 'floating', key, max: 1, refreshIntervalMs: 60_000 }],
    }))),
  };
}

before(async () => {
  srv = await new Sluiced().start();
  client = new SluiceClient({ address: srv.grpc, token: TOKEN });
});
after(async () => {
  client?.close();
  await srv?.destroy();
});

test('a handler returning 1 then 5: at most 1 job runs on the key, then 5; a throw keeps 5', async () => {
  const queue = q('float');
  const key = q('api');
  let mode = { kind: 'value', value: 1 };
  const calls = [];
  let running = 0;
  let peak = 0;
  const w = new Worker(client, {
    queues: queue,
    concurrency: 8,
    refresh: {
      [key]: (ctx) => {
        calls.push({ key: ctx.key, currentMax: ctx.currentMax, last: ctx.lastRefreshedMs, meta: ctx.metadata });
        if (mode.kind === 'throw') throw Object.assign(new Error('rate API down'), { code: 'api_down' });
        return mode.value;
      },
    },
    handler: async () => {
      peak = Math.max(peak, ++running);
      await delay(60);
      --running;
    },
  });
  const errors = [];
  w.on('error', (e, ctx) => errors.push([ctx, e]));
  const refreshed = [];
  const failed = [];
  w.on('refreshed', (k, max) => refreshed.push(max));
  w.on('refreshFailed', (k, e) => failed.push(e));

  const enqueue = (n) => client.enqueueBatch(Array.from({ length: n }, () => ({
    queue,
    limits: [{ kind: 'floating', key, max: 1, refreshIntervalMs: 250, metadata: { plan: 'gold' } }],
  })));

  // Phase 1: the handler says 1.
  await enqueue(200);
  await until(() => refreshed.length >= 2, { timeoutMs: 10_000, what: 'two refreshes of 1' });
  await delay(500);
  assert.equal(peak, 1, 'never more than 1 job on the key while its max is 1');
  assert.equal(calls[0].last, 0, 'first refresh: never refreshed before');
  assert.deepEqual(calls[0].meta, { plan: 'gold' });
  assert.ok(calls.at(-1).last > 0);

  // Phase 2: the handler says 5.
  mode = { kind: 'value', value: 5 };
  peak = 0;
  await until(() => refreshed.includes(5), { timeoutMs: 10_000, what: 'a refresh of 5' });
  await until(() => peak === 5, { timeoutMs: 10_000, what: '5 jobs at once on the key' });
  assert.equal((await client.getFloatingLimit(key)).currentMax, 5);

  // Phase 3: the handler throws; the server keeps 5.
  mode = { kind: 'throw' };
  peak = 0;
  await enqueue(100);
  await until(() => failed.length >= 1, { timeoutMs: 10_000, what: 'a failed refresh' });
  const f = await client.getFloatingLimit(key);
  assert.equal(f.currentMax, 5, 'a failed refresh leaves the old max');
  assert.ok(f.consecutiveFailures >= 1);
  await until(() => peak === 5, { timeoutMs: 10_000, what: '5 jobs at once after the failure' });
  assert.ok(calls.some((c) => c.currentMax === 5));
  assert.deepEqual(errors, []);
  await w.stop({ timeoutMs: 2000 });
  assert.ok(peak <= 5);
});

test('one handler for every key gets {key, metadata, currentMax, lastRefreshedMs}', async () => {
  const queue = q('single');
  const seen = [];
  const w = new Worker(client, {
    queues: queue,
    refresh: ({ key, metadata, currentMax, lastRefreshedMs }) => {
      seen.push({ key, metadata, currentMax, lastRefreshedMs });
      return 3;
    },
    handler: () => 'ok',
  });
  const keys = [q('k1'), q('k2')];
  const hs = await client.enqueueBatch(keys.map((key) => ({
    queue, limits: [{ kind: 'floating', key, max: 2, refreshIntervalMs: 60_000, metadata: { k: key } }],
  })));
  await Promise.all(hs.map((h) => h.awaitResult({ timeoutMs: 10_000 })));
  await until(() => seen.length >= 2, { what: 'both refreshes' });
  for (const key of keys) {
    const s = seen.find((x) => x.key === key);
    assert.deepEqual(s, { key, metadata: { k: key }, currentMax: 2, lastRefreshedMs: 0 });
    await until(async () => (await client.getFloatingLimit(key)).currentMax === 3, { what: `max of ${key}` });
  }
  await w.stop();
});

test('a worker without a handler for the key reports a failure at once', async () => {
  const queue = q('nohandler');
  const key = q('orphan');
  const failed = [];
  const w = new Worker(client, { queues: queue, refresh: { other: () => 1 }, handler: () => 'ok' });
  w.on('refreshFailed', (k, e) => failed.push([k, e]));
  const started = Date.now();
  const h = await client.enqueue({
    queue, limits: [{ kind: 'floating', key, max: 2, refreshIntervalMs: 60_000 }],
  });
  await h.awaitResult({ timeoutMs: 10_000 });
  await until(() => failed.length === 1, { what: 'the failure report' });
  assert.equal(failed[0][0], key);
  const f = await client.getFloatingLimit(key);
  assert.equal(f.consecutiveFailures, 1);
  assert.equal(f.refreshInFlight, false, 'not left to the 30 s refresh lease');
  assert.equal(f.currentMax, 2, 'the default stays');
  assert.ok(Date.now() - started < 5000);
  await w.stop();
});

test('a refresh handler that throws a long message, or a value that cannot be shown: the failure is reported, cut to the caps', async () => {
  const queue = q('longmsg');
  const [k1, k2] = [q('long'), q('odd')];
  const failed = [];
  const errors = [];
  const watch = refreshWatch();
  const w = new Worker(client, {
    queues: queue, concurrency: 3, handler: watch.hold,
    refresh: {
      // 21,000 bytes of UTF-8 in 7,000 characters: over the 8 KiB cap in bytes, not in characters.
      [k1]: () => { throw new Error('界'.repeat(7000)); },
      [k2]: () => { throw Object.create(null); },  // String() of it throws
    },
  });
  w.on('refreshFailed', (k, e) => { failed.push(k); watch.failedKey(k); });
  w.on('error', (e) => errors.push(e));
  const hs = await watch.enqueue(queue, [k1, k2]);
  await Promise.all(hs.map((h) => h.awaitResult({ timeoutMs: 15_000 })));
  await until(() => failed.length === 2, { timeoutMs: 5_000, what: 'both failures reported' });
  assert.deepEqual([...failed].sort(), [k1, k2].sort());
  assert.deepEqual(errors, [], 'no report was refused');
  for (const key of [k1, k2]) {
    const f = await client.getFloatingLimit(key);
    assert.equal(f.consecutiveFailures, 1, key);
    assert.equal(f.refreshInFlight, false, `${key}: not left to the 30 s refresh lease`);
  }
  await w.stop();
});

test('a refresh handler returning what is no max (-1, 2.5, 2^32, a string): reported as invalid_refresh_value, the old max stays', async () => {
  const queue = q('badvalue');
  const bad = { [q('neg')]: -1, [q('frac')]: 2.5, [q('big')]: 2 ** 32, [q('str')]: '3' };
  const keys = Object.keys(bad);
  const failed = [];
  const errors = [];
  const reports = [];
  const spy = Object.create(client);
  spy.reportRefreshOutcome = (rt, outcome, o) => {
    reports.push([rt.key, outcome.errorCode]);
    return client.reportRefreshOutcome(rt, outcome, o);
  };
  const watch = refreshWatch();
  const w = new Worker(spy, {
    queues: queue, concurrency: keys.length + 1, handler: watch.hold,
    refresh: Object.fromEntries(keys.map((k) => [k, () => bad[k]])),
  });
  w.on('refreshFailed', (k, e) => { failed.push([k, e]); watch.failedKey(k); });
  w.on('error', (e) => errors.push(e));
  try {
    const hs = await watch.enqueue(queue, keys);
    await Promise.all(hs.map((h) => h.awaitResult({ timeoutMs: 15_000 })));
    await until(() => failed.length === keys.length, { timeoutMs: 5_000, what: 'every failure reported' });
    assert.deepEqual(reports.sort(), keys.map((k) => [k, 'invalid_refresh_value']).sort());
    for (const [k, e] of failed) assert.ok(e instanceof TypeError && e.message.includes('0..4294967295'), `${k}: ${e}`);
    for (const key of keys) {
      const f = await client.getFloatingLimit(key);
      assert.equal(f.currentMax, 1, `${key}: the old max stays`);
      assert.equal(f.consecutiveFailures, 1, key);
    }
    assert.deepEqual(errors, []);
  } finally {
    await w.stop();
  }
});

test('a refresh handler running past refreshTimeoutMs: its signal aborts, the failure is reported, its late value is ignored', async () => {
  const queue = q('hung');
  const [hung, late] = [q('hung'), q('late')];
  const failed = [];
  const aborted = [];
  const errors = [];
  const reports = [];  // every refresh outcome the Worker sends
  const spy = Object.create(client);
  spy.reportRefreshOutcome = (rt, outcome, o) => {
    reports.push([rt.key, outcome]);
    return client.reportRefreshOutcome(rt, outcome, o);
  };
  const watch = refreshWatch();
  const w = new Worker(spy, {
    queues: queue, concurrency: 3, handler: watch.hold, refreshTimeoutMs: 300,
    refresh: {
      // Never returns; only watches its signal.
      [hung]: ({ signal }) => new Promise(() => {
        signal.addEventListener('abort', () => aborted.push(signal.reason));
      }),
      // Ignores its signal and returns 7 after the timeout.
      [late]: () => delay(1200).then(() => 7),
    },
  });
  w.on('refreshFailed', (k, e) => { failed.push([k, e]); watch.failedKey(k); });
  w.on('error', (e) => errors.push(e));
  const started = Date.now();
  const hs = await watch.enqueue(queue, [hung, late]);
  await Promise.all(hs.map((h) => h.awaitResult({ timeoutMs: 15_000 })));
  await until(() => failed.length === 2, { timeoutMs: 5_000, what: 'both timeouts reported' });
  assert.ok(Date.now() - started < 5_000, 'reported at the timeout, not at the 30 s refresh lease');
  assert.deepEqual(failed.map(([k]) => k).sort(), [hung, late].sort());
  for (const [, e] of failed) {
    assert.ok(e instanceof RefreshTimeoutError, String(e));
    assert.equal(e.code, 'refresh_timeout');
    assert.equal(e.timeoutMs, 300);
  }
  assert.equal(aborted.length, 1);
  assert.ok(aborted[0] instanceof RefreshTimeoutError);
  await delay(1500);  // the late handler has returned 7 by now
  for (const key of [hung, late]) {
    const f = await client.getFloatingLimit(key);
    assert.equal(f.currentMax, 1, `${key}: the old max stays`);
    assert.equal(f.consecutiveFailures, 1, key);
    assert.equal(f.refreshInFlight, false, key);
  }
  assert.equal(w.metrics().refreshesReported, 0, 'the late value was not reported');
  assert.deepEqual(reports.map(([k, o]) => [k, o.errorCode]).sort(),
    [[hung, 'refresh_timeout'], [late, 'refresh_timeout']].sort(), 'one report per refresh: the timeout');
  assert.equal(w.metrics().refreshesFailed, 2);
  assert.deepEqual(errors, []);
  const t0 = Date.now();
  await w.stop({ timeoutMs: 5_000 });
  assert.ok(Date.now() - t0 < 2_000, 'stop does not wait for the hung handler');
});

test('refreshTimeoutMs must be in 0..2^31-1 (the longest timer)', () => {
  for (const bad of [-1, Number.NaN, Infinity, 2 ** 31]) {
    assert.throws(() => new Worker(client, { queues: 'x', handler: () => 0, refreshTimeoutMs: bad, autostart: false }),
      RangeError);
  }
  for (const ok of [0, 2 ** 31 - 1]) {
    new Worker(client, { queues: 'x', handler: () => 0, refreshTimeoutMs: ok, autostart: false });
  }
});

test('a slow refresh heartbeats every third of RefreshTask.leaseMs, whatever the clocks say', async () => {
  // Refresh leases of 450 ms: heartbeats every 150 ms. The expiry is shifted a minute ahead,
  // as if the server's clock were: the period must come from leaseMs, not from the expiry.
  const s = await new Sluiced({ args: ['--refresh-lease-ms', '450'] }).start();
  const c = new SluiceClient({ address: s.grpc, token: TOKEN });
  let heartbeats = 0;
  let leaseMs = -1;
  const skewed = Object.create(c);
  skewed.leaseTasks = async (req, o) => {
    const res = await c.leaseTasks(req, o);
    for (const rt of res.refreshes) leaseMs = rt.leaseMs;
    return { ...res, refreshes: res.refreshes.map((rt) => ({ ...rt, leaseExpiresMs: rt.leaseExpiresMs + 60_000 })) };
  };
  skewed.heartbeatRefresh = (ref, o) => {
    ++heartbeats;
    return c.heartbeatRefresh(ref, o);
  };
  const queue = q('slowrefresh');
  const key = q('slow');
  const lost = [];
  const w = new Worker(skewed, {
    queues: queue, leaseWaitMs: 200, leaseStream: false,  // every lease through leaseTasks above
    refresh: { [key]: () => delay(1000).then(() => 4) },
    handler: () => 'ok',
  });
  w.on('error', (e, ctx) => lost.push([ctx.op, e.message]));
  try {
    await c.enqueue({ queue, limits: [{ kind: 'floating', key, max: 1, refreshIntervalMs: 60_000 }] });
    await until(async () => (await c.getFloatingLimit(key)).currentMax === 4, { timeoutMs: 10_000, what: 'max 4' });
    await w.stop();
    assert.equal(leaseMs, 450);
    assert.ok(heartbeats >= 4, `${heartbeats} refresh heartbeats in 1 s`);
    assert.deepEqual(lost, []);
    assert.equal(w.metrics().refreshesReported, 1);
  } finally {
    await w.stop({ timeoutMs: 1000, graceMs: 100 });
    c.close();
    await s.destroy();
  }
});
