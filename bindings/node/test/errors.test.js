'use strict';
// Every status maps to its class and stable code; every reachable one is produced for real.
const test = require('node:test');
const assert = require('node:assert/strict');
const { sluice, openTemp } = require('./helpers');

const expected = [
  [1, 'not_found', 'NotFoundError'],
  [2, 'invalid_argument', 'InvalidArgumentError'],
  [3, 'too_large', 'TooLargeError'],
  [4, 'lease_lost', 'LeaseLostError'],
  [5, 'failed_precondition', 'FailedPreconditionError'],
  [6, 'closed', 'ClosedError'],
  [7, 'io_error', 'StorageError'],
  [8, 'corruption', 'CorruptionError'],
  [9, 'timeout', 'SluiceTimeoutError'],
  [10, 'already_exists', 'AlreadyExistsError'],
  [11, 'busy', 'BusyError'],
  [12, 'internal', 'InternalError'],
  [13, 'no_memory', 'NoMemoryError'],
  [14, 'cancelled', 'CancelledError'],
];

test('every status has its class, code and name', () => {
  for (const [status, code, cls] of expected) {
    const e = sluice.errorFromStatus(status, 'msg');
    assert.ok(e instanceof sluice[cls], cls);
    assert.ok(e instanceof sluice.SluiceError);
    assert.ok(e instanceof Error);
    assert.equal(e.name, cls);
    assert.equal(e.code, code);
    assert.equal(e.status, status);
    assert.equal(e.message, 'msg');
  }
  const unknown = sluice.errorFromStatus(99, 'm');
  assert.equal(unknown.constructor, sluice.SluiceError);
  assert.equal(unknown.code, 'unknown');
  assert.deepEqual(Object.keys(sluice.Status).length, 15);
  assert.equal(sluice.errorFromStatus(15, 'm').code, 'unknown');
});

function is(cls, code) {
  return (e) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e && e.name}: ${e && e.message}`);
    assert.equal(e.code, code);
    assert.equal(typeof e.message, 'string');
    assert.ok(e.message.length > 0);
    return true;
  };
}

test('not_found', async (t) => {
  const { engine } = await openTemp(t);
  const nf = is(sluice.NotFoundError, 'not_found');
  await assert.rejects(engine.getJob('missing'), nf);
  await assert.rejects(engine.getResult('missing'), nf);
  await assert.rejects(engine.cancel('missing'), nf);
  await assert.rejects(engine.restart('missing'), nf);
  await assert.rejects(engine.expedite('missing'), nf);
  await assert.rejects(engine.delete('missing'), nf);
  const { id } = await engine.enqueue({ queue: 'q', tenant: 'a' });
  await assert.rejects(engine.getJob(id, { tenant: 'b' }), nf);  // other tenants see nothing
  await assert.rejects(engine.setFloatingLimit('nope', 1), nf);
});

test('invalid_argument', async (t) => {
  const { engine } = await openTemp(t);
  const ia = is(sluice.InvalidArgumentError, 'invalid_argument');
  await assert.rejects(engine.enqueue({ queue: '' }), ia);
  await assert.rejects(engine.enqueue({ queue: 'q', priority: 100 }), ia);
  await assert.rejects(engine.enqueue({ queue: 'q', limits: [{ key: 'k', max: 0 }] }), ia);
  await assert.rejects(engine.enqueueBatch([{ queue: 'q' }, { queue: '' }]), (e) =>
    ia(e) && /jobs\[1\]/.test(e.message));
  assert.equal((await engine.stats()).enqueued, 0, 'a bad batch stores nothing');
  await assert.rejects(engine.lease({ queue: 'q', workerId: '' }), ia);
  await assert.rejects(engine.lease({ queue: 'q', workerId: 'w', maxTasks: 0 }), ia);
  await engine.enqueue({ queue: 'q' });
  const [task] = (await engine.lease({ queue: 'q', workerId: 'w' })).tasks;
  await assert.rejects(engine.fail(task, { code: '' }), ia);
  await assert.rejects(engine.complete({ ...task, taskId: 'not-a-task-id' }), (e) =>
    e instanceof sluice.InvalidArgumentError || e instanceof sluice.LeaseLostError);
});

test('too_large', async (t) => {
  const { engine } = await openTemp(t, { durability: 'async', maxPayloadBytes: 1024 });
  const tl = is(sluice.TooLargeError, 'too_large');
  await assert.rejects(engine.enqueue({ queue: 'q', payload: Buffer.alloc(2048) }), tl);
  await assert.rejects(engine.enqueue({ queue: 'x'.repeat(1000) }), tl);
  await assert.rejects(engine.enqueue({ queue: 'q', metadata: { k: 'v'.repeat(5000) } }), tl);
  await engine.enqueue({ queue: 'q', payload: Buffer.alloc(1024) });
  const [task] = (await engine.lease({ queue: 'q', workerId: 'w' })).tasks;
  await assert.rejects(engine.complete(task, Buffer.alloc(4096)), tl);
});

test('lease_lost', async (t) => {
  const { engine } = await openTemp(t);
  const ll = is(sluice.LeaseLostError, 'lease_lost');
  await engine.enqueue({ queue: 'q' });
  const [task] = (await engine.lease({ queue: 'q', workerId: 'w' })).tasks;
  await assert.rejects(engine.heartbeat({ ...task, workerId: 'someone-else' }), ll);
  await assert.rejects(engine.complete({ ...task, leaseToken: task.leaseToken + 1n }), ll);
  await engine.complete(task);
  await assert.rejects(engine.complete(task), ll);
  await assert.rejects(engine.heartbeat(task), ll);
});

test('failed_precondition', async (t) => {
  const { engine } = await openTemp(t);
  const fp = is(sluice.FailedPreconditionError, 'failed_precondition');
  const { id } = await engine.enqueue({ queue: 'q' });
  await assert.rejects(engine.restart(id), fp);  // waiting, not failed
  const [task] = (await engine.lease({ queue: 'q', workerId: 'w' })).tasks;
  await assert.rejects(engine.delete(id), fp);  // running
  await assert.rejects(engine.expedite(id), fp);
  await engine.complete(task);
  await assert.rejects(engine.cancel(id), fp);  // succeeded
});

test('closed', async (t) => {
  const { engine } = await openTemp(t);
  await engine.close();
  await assert.rejects(engine.enqueue({ queue: 'q' }), is(sluice.ClosedError, 'closed'));
});

test('io_error: a second open of a locked store', async (t) => {
  const { dir } = await openTemp(t);
  await assert.rejects(sluice.Engine.open(dir), is(sluice.StorageError, 'io_error'));
});

test('wrong JS types are TypeErrors, not engine statuses', async (t) => {
  const { engine } = await openTemp(t);
  await assert.rejects(engine.enqueue({ queue: 42 }), TypeError);
  await assert.rejects(engine.enqueue({ queue: 'q', payload: 12 }), TypeError);
  await assert.rejects(engine.enqueue({ queue: 'q', priority: -1 }), RangeError);
  await assert.rejects(engine.enqueue({ queue: 'q', limits: [{ key: 'k', kind: 'odd' }] }), TypeError);
  await assert.rejects(engine.enqueueBatch('nope'), TypeError);
  await assert.rejects(sluice.Engine.open('/tmp/x', { durability: 'sometimes' }), TypeError);
});
