'use strict';
// query(): typed cells, tenants, bounds, timeouts and AbortSignal cancellation, off the loop.
const test = require('node:test');
const assert = require('node:assert/strict');
const { sluice, openTemp } = require('./helpers');

const ENDLESS = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c';
const HUNDRED =
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100) SELECT x FROM c';

const is = (cls, code) => (e) => {
  assert.ok(e instanceof cls, `expected ${cls.name}, got ${e && e.name}: ${e && e.message}`);
  assert.ok(e instanceof sluice.SluiceError);
  assert.equal(e.code, code);
  return true;
};

test('cells are typed: integers (number or bigint), reals, text, blobs and null', async (t) => {
  const { engine } = await openTemp(t);
  const r = await engine.query('', "SELECT 42 AS i, 1.5 AS r, 'h\u00e9llo' AS t, x'00ff01' AS b, " +
    'NULL AS n, 9007199254740993 AS big, -9007199254740991 AS minsafe, ' +
    '-9223372036854775808 AS min');
  assert.deepEqual(r.columns, ['i', 'r', 't', 'b', 'n', 'big', 'minsafe', 'min']);
  assert.equal(r.rows.length, 1);
  const [i, real, text, blob, nul, big, minsafe, min] = r.rows[0];
  assert.equal(i, 42);
  assert.equal(real, 1.5);
  assert.equal(text, 'h\u00e9llo');
  assert.ok(Buffer.isBuffer(blob));
  assert.deepEqual([...blob], [0, 255, 1]);
  assert.equal(nul, null);
  assert.equal(big, 9007199254740993n);
  assert.equal(minsafe, -9007199254740991);
  assert.equal(min, -9223372036854775808n);
  assert.equal(typeof r.keysVisited, 'number');

  const many = await engine.query('', HUNDRED);
  assert.deepEqual(many.columns, ['x']);
  assert.equal(many.rows.length, 100);
  assert.deepEqual(many.rows[99], [100]);
});

test('the tenant is the caller\'s, never the SQL\'s', async (t) => {
  const { engine } = await openTemp(t);
  await engine.enqueueBatch([
    { tenant: 't1', queue: 'q', id: 'x1' }, { tenant: 't1', queue: 'q', id: 'x2' },
    { tenant: 't2', queue: 'q', id: 'y1' },
  ]);
  const count = async (tenant) => (await engine.query(tenant, 'SELECT count(*) FROM jobs')).rows[0][0];
  assert.equal(await count('t1'), 2);
  assert.equal(await count('t2'), 1);
  assert.equal(await count(''), 0);
  const ids = await engine.query('t1', 'SELECT id FROM jobs ORDER BY id');
  assert.deepEqual(ids.rows, [['x1'], ['x2']]);
  assert.ok(ids.keysVisited > 0);
});

test('bad SQL, writes and bounds reject; nothing changes', async (t) => {
  const { engine } = await openTemp(t);
  await engine.enqueue({ queue: 'q', id: 'keep' });
  const ia = is(sluice.InvalidArgumentError, 'invalid_argument');
  await assert.rejects(engine.query('', 'DELETE FROM jobs'), ia);
  await assert.rejects(engine.query('', 'SELEC 1'), ia);
  assert.equal((await engine.query('', 'SELECT count(*) FROM jobs')).rows[0][0], 1);
  await engine.getJob('keep');
  const tl = is(sluice.TooLargeError, 'too_large');
  await assert.rejects(engine.query('', HUNDRED, { maxRows: 10 }), tl);
  await assert.rejects(engine.query('', HUNDRED, { maxResultBytes: 64 }), tl);
  await assert.rejects(engine.query('', 'SELECT 1', { timeoutMs: -1 }), RangeError);
  await assert.rejects(engine.query('', 42), TypeError);
});

test('a query past its timeout rejects with SluiceTimeoutError, the loop stays free', async (t) => {
  const { engine } = await openTemp(t);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const start = Date.now();
  try {
    await assert.rejects(engine.query('', ENDLESS, { timeoutMs: 300 }),
      is(sluice.SluiceTimeoutError, 'timeout'));
  } finally {
    clearInterval(timer);
  }
  const took = Date.now() - start;
  assert.ok(took >= 250 && took < 10_000, `took ${took} ms`);
  assert.ok(ticks >= 5, `the event loop ran ${ticks} timer ticks during the query`);
});

test('an AbortSignal cancels a running query: CancelledError', async (t) => {
  const { engine } = await openTemp(t);
  const ac = new AbortController();
  const start = Date.now();
  setTimeout(() => ac.abort(), 200);
  await assert.rejects(engine.query('', ENDLESS, { timeoutMs: 60_000, signal: ac.signal }),
    (e) => is(sluice.CancelledError, 'cancelled')(e) && e.status === 14);
  const took = Date.now() - start;
  assert.ok(took >= 150 && took < 10_000, `took ${took} ms`);
  // Already aborted: rejects without running.
  await assert.rejects(engine.query('', 'SELECT 1', { signal: ac.signal }), sluice.CancelledError);
  // A signal that never aborts changes nothing.
  const r = await engine.query('', 'SELECT 1 AS one', { signal: new AbortController().signal });
  assert.deepEqual(r.rows, [[1]]);
  // AbortSignal.timeout works as a deadline too.
  await assert.rejects(engine.query('', ENDLESS, { signal: AbortSignal.timeout(100) }),
    sluice.CancelledError);
});

test('queries run concurrently with other engine calls', async (t) => {
  const { engine } = await openTemp(t);
  const slow = engine.query('', ENDLESS, { timeoutMs: 500 });
  const { id } = await engine.enqueue({ queue: 'q' });
  assert.equal((await engine.getJob(id)).status, 'waiting');
  await assert.rejects(slow, sluice.SluiceTimeoutError);
});
