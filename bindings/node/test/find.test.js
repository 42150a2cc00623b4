'use strict';
// Finding jobs: listJobs (filters, views, cursors over many pages), iterJobs, countJobs and
// verifyIndexes, against a real store.
const test = require('node:test');
const assert = require('node:assert/strict');
const { sluice, openTemp } = require('./helpers');

const TENANT = 'find';
const N = 30;

// job-NN in tenant "find": even NN on queue "a", odd on "b"; metadata color=red when NN % 3 == 0
// else blue; payload "pNN"; NN >= 25 scheduled an hour ahead; job-00 succeeded and job-02
// running. Created in three bursts (0-9, 10-19, 20-29) a few ms apart, for exact time ranges.
function statusOf(i) {
  if (i === 0) return 'succeeded';
  if (i === 2) return 'running';
  if (i >= 25) return 'scheduled';
  return 'waiting';
}
const id = (i) => `job-${String(i).padStart(2, '0')}`;
const range = (pred) => [...Array(N).keys()].filter(pred).map(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function setup(t) {
  const { engine } = await openTemp(t);
  for (let i = 0; i < N; i++) {
    if (i === 10 || i === 20) await sleep(5);
    await engine.enqueue({
      id: id(i), tenant: TENANT, queue: i % 2 === 0 ? 'a' : 'b', payload: `p${id(i).slice(4)}`,
      metadata: { color: i % 3 === 0 ? 'red' : 'blue' },
      startAtMs: i >= 25 ? Date.now() + 3_600_000 : 0,
    });
  }
  await engine.enqueue({ id: 'job-00', tenant: 'other', queue: 'a' });
  const { tasks } = await engine.lease({ tenant: TENANT, queue: 'a', workerId: 'w', maxTasks: 2 });
  assert.deepEqual(tasks.map((x) => x.jobId), ['job-00', 'job-02']);
  await engine.complete(tasks[0]);
  return engine;
}

// Pages through a listing `limit` jobs at a time; returns the ids and the number of pages.
async function listAll(engine, request) {
  const ids = [];
  let cursor = '';
  let pages = 0;
  do {
    const page = await engine.listJobs({ ...request, cursor });
    assert.ok(page.jobs.length <= request.limit);
    assert.equal(typeof page.keysVisited, 'number');
    if (page.jobs.length > 0) assert.ok(page.keysVisited > 0);
    for (const j of page.jobs) {
      assert.equal(j.tenant, request.tenant);
      assert.equal(j.status, statusOf(Number(j.id.slice(4))), j.id);
      ids.push(j.id);
    }
    cursor = page.nextCursor;
    assert.equal(typeof cursor, 'string');
    assert.ok(++pages < 100);
  } while (cursor !== '');
  return { ids, pages };
}

// Both orders, four per page.
async function expectListing(engine, filter, want) {
  const oldest = await listAll(engine, { tenant: TENANT, ...filter, limit: 4 });
  assert.deepEqual(oldest.ids, want);
  if (want.length > 8) assert.ok(oldest.pages >= 3);
  const newest = await listAll(engine, { tenant: TENANT, ...filter, limit: 4, newestFirst: true });
  assert.deepEqual(newest.ids, [...want].reverse());
}

test('listJobs filters, in both orders, over several pages', async (t) => {
  const engine = await setup(t);
  await expectListing(engine, {}, range(() => true));
  await expectListing(engine, { queue: 'a' }, range((i) => i % 2 === 0));
  await expectListing(engine, { statuses: ['waiting'] }, range((i) => statusOf(i) === 'waiting'));
  await expectListing(engine, { statuses: ['scheduled', 'succeeded'] },
    range((i) => i === 0 || i >= 25));
  await expectListing(engine, { metadata: { color: 'red' } }, range((i) => i % 3 === 0));
  await expectListing(engine, { metadata: [['color', 'red']], queue: 'b', statuses: ['waiting'] },
    range((i) => i % 3 === 0 && i % 2 === 1 && i < 25));
  await expectListing(engine, { metadata: [['color', 'red'], ['color', 'blue']] }, []);
  await expectListing(engine, { idPrefix: 'job-1' }, range((i) => i >= 10 && i < 20));
  await expectListing(engine, { id: 'job-07' }, ['job-07']);
  const from = (await engine.getJob('job-10', { tenant: TENANT })).createdMs;
  const to = (await engine.getJob('job-20', { tenant: TENANT })).createdMs;
  await expectListing(engine, { createdFromMs: from, createdToMs: to },
    range((i) => i >= 10 && i < 20));
  const other = await engine.listJobs({ tenant: 'other' });
  assert.deepEqual(other.jobs.map((j) => [j.tenant, j.id]), [['other', 'job-00']]);
  assert.equal(other.nextCursor, '');
  assert.equal((await engine.listJobs()).jobs.length, 0, 'the default tenant has no jobs');
});

test('listJobs views', async (t) => {
  const engine = await setup(t);
  const one = async (view) => {
    const page = await engine.listJobs({ tenant: TENANT, id: 'job-07', view });
    assert.equal(page.jobs.length, 1);
    return page.jobs[0];
  };
  const index = await one('index');
  assert.equal(index.id, 'job-07');
  assert.equal(index.queue, 'b');
  assert.equal(index.status, 'waiting');
  assert.ok(index.createdMs > 0);
  assert.equal(index.payload.length, 0);
  const summary = await one(undefined);
  assert.deepEqual(summary.metadata, { color: 'blue' });
  assert.equal(summary.payload.length, 0);
  assert.deepEqual(summary.attempts, []);
  const full = await one('full');
  assert.equal(full.payload.toString(), 'p07');
  assert.deepEqual(full.metadata, { color: 'blue' });
});

test('a cursor only continues its own listing', async (t) => {
  const engine = await setup(t);
  const first = await engine.listJobs({ tenant: TENANT, queue: 'a', limit: 2 });
  assert.notEqual(first.nextCursor, '');
  const ia = (e) => e instanceof sluice.InvalidArgumentError && e.code === 'invalid_argument';
  const { nextCursor: cursor } = first;
  await assert.rejects(
    engine.listJobs({ tenant: TENANT, queue: 'a', limit: 2, cursor, newestFirst: true }), ia);
  await assert.rejects(engine.listJobs({ tenant: TENANT, queue: 'b', limit: 2, cursor }), ia);
  await assert.rejects(engine.listJobs({ tenant: TENANT, cursor: 'not a cursor' }), ia);
  const second = await engine.listJobs({ tenant: TENANT, queue: 'a', limit: 2, cursor });
  assert.deepEqual(second.jobs.map((j) => j.id), ['job-04', 'job-06']);
});

test('listJobs argument errors', async (t) => {
  const engine = await setup(t);
  const ia = (e) => e instanceof sluice.InvalidArgumentError;
  await assert.rejects(engine.listJobs({ tenant: TENANT, limit: 0 }), ia);
  await assert.rejects(engine.listJobs({ tenant: TENANT, limit: 100_000 }), ia);
  await assert.rejects(engine.listJobs({ statuses: ['done'] }), TypeError);
  await assert.rejects(engine.listJobs({ statuses: 'waiting' }), TypeError);
  await assert.rejects(engine.listJobs({ view: 'all' }), TypeError);
  await assert.rejects(engine.listJobs({ metadata: [['only-a-key']] }), TypeError);
  await assert.rejects(engine.listJobs({ limit: -1 }), RangeError);
});

test('iterJobs walks every page', async (t) => {
  const engine = await setup(t);
  const ids = [];
  for await (const job of engine.iterJobs({ tenant: TENANT, queue: 'b', pageSize: 3 })) {
    ids.push(job.id);
  }
  assert.deepEqual(ids, range((i) => i % 2 === 1));
  const newest = [];
  for await (const job of engine.iterJobs({ tenant: TENANT, newestFirst: true, view: 'index' })) {
    newest.push(job.id);
  }
  assert.deepEqual(newest, range(() => true).reverse());
  const none = [];
  for await (const job of engine.iterJobs({ tenant: 'nobody' })) none.push(job);
  assert.deepEqual(none, []);
});

test('countJobs by queue and status, and verifyIndexes', async (t) => {
  const engine = await setup(t);
  const [a] = await engine.countJobs(TENANT, 'a');
  assert.deepEqual(a, { queue: 'a', counts: {
    scheduled: 2, waiting: 11, running: 1, succeeded: 1, failed: 0, cancelled: 0 } });
  await engine.cancel('job-01', { tenant: TENANT });
  const all = await engine.countJobs(TENANT);
  assert.deepEqual(all.map((c) => c.queue).sort(), ['a', 'b']);
  const b = all.find((c) => c.queue === 'b');
  assert.deepEqual(b.counts, {
    scheduled: 3, waiting: 11, running: 0, succeeded: 0, failed: 0, cancelled: 1 });
  assert.deepEqual(await engine.countJobs('other'),
    [{ queue: 'a', counts: { scheduled: 0, waiting: 1, running: 0, succeeded: 0, failed: 0,
      cancelled: 0 } }]);
  assert.deepEqual(await engine.countJobs('nobody'), []);
  await engine.verifyIndexes();
  await engine.close();
  await assert.rejects(engine.countJobs(TENANT), sluice.ClosedError);
  await assert.rejects(engine.listJobs({ tenant: TENANT }), sluice.ClosedError);
});
