// Finding jobs against a real sluiced: listJobs filters and paging, iterJobs, countJobs, query
// with typed cells, its bounds (timeout, caps, abort) and tenant isolation.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  CancelledError, InvalidArgumentError, PermissionDeniedError, SluiceClient, SluiceTimeoutError,
  TooLargeError, errorClassFor, GrpcCode,
} from '../dist/index.js';
import { SluiceService } from '../dist/gen/sluice/v1/sluice.js';
import { Sluiced, TOKEN, until } from './harness.mjs';

const ENDLESS = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c';
const rowsSql = (n, blob = 1) =>
  `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${n}) SELECT x, randomblob(${blob}) FROM c`;
const uid = (p) => `${p}${Math.random().toString(36).slice(2, 10)}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let srv;
let client;

before(async () => {
  srv = await new Sluiced({
    tokens: [TOKEN, 'finder-a-token@tenant-a', 'finder-b-token@tenant-b'],
    args: ['--query-timeout-ms', '60000', '--query-max-rows', '1000',
      '--query-max-result-bytes', '200000'],
  }).start();
  client = new SluiceClient({ address: srv.grpc, token: TOKEN });
});
after(async () => {
  client?.close();
  await srv?.destroy();
});

/** sluice_queries_total{outcome} from /metrics. */
function queries(outcome) {
  return new Promise((resolve, reject) => {
    http.get(`http://${srv.http}/metrics`, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => {
        const m = body.match(new RegExp(`^sluice_queries_total\\{outcome="${outcome}"\\} (\\S+)$`, 'm'));
        if (m) resolve(Number(m[1]));
        else reject(new Error(`sluice_queries_total{outcome="${outcome}"} missing`));
      });
    }).on('error', reject);
  });
}

describe('listJobs and iterJobs', () => {
  let tenant;
  const n = {};
  before(async () => {
    tenant = uid('t-');
    const c = new SluiceClient({ address: srv.grpc, token: TOKEN, tenant });
    for (let i = 0; i < 6; ++i) {
      const h = await c.enqueue({
        queue: 'mail', id: `mail${i}`, payload: `body${i}`, priority: i,
        metadata: { customer: i % 2 ? 'odd' : 'even', region: i < 3 ? 'eu' : 'us' },
      });
      n[`mail${i}`] = h.id;
      await sleep(3);
    }
    await c.enqueue({ queue: 'sms', id: 'sms0' });
    await c.enqueue({ queue: 'sms', id: 'sms1', startAtMs: Date.now() + 3_600_000 });
    const { tasks } = await c.leaseTasks({ queue: 'mail', workerId: 'w', maxTasks: 2 });
    assert.deepEqual(tasks.map((t) => t.jobId), ['mail0', 'mail1']);
    await c.reportOutcome(tasks[1], { kind: 'failure', code: 'boom', noRetry: true });
    await c.cancelJob('mail2');
    c.close();
  });

  const ids = (jobs) => jobs.map((j) => j.id);
  const all = async (filter, opts = {}) => {
    const out = [];
    for await (const j of client.iterJobs(filter, { tenant, ...opts })) out.push(j);
    return out;
  };

  test('filters: queue, statuses, metadata, ids, creation time; newest first', async () => {
    const every = ['mail0', 'mail1', 'mail2', 'mail3', 'mail4', 'mail5', 'sms0', 'sms1'];
    assert.deepEqual(ids(await all({})), every);
    assert.deepEqual(ids(await all({}, { newestFirst: true })), [...every].reverse());
    assert.deepEqual(ids(await all({ queue: 'sms' })), ['sms0', 'sms1']);
    assert.deepEqual(ids(await all({ statuses: ['running'] })), ['mail0']);
    assert.deepEqual(ids(await all({ statuses: ['failed', 'cancelled'] })), ['mail1', 'mail2']);
    assert.deepEqual(ids(await all({ statuses: ['scheduled'] })), ['sms1']);
    assert.deepEqual(ids(await all({ queue: 'mail', statuses: ['waiting'] })), ['mail3', 'mail4', 'mail5']);
    assert.deepEqual(ids(await all({ metadata: { customer: 'odd' } })), ['mail1', 'mail3', 'mail5']);
    assert.deepEqual(ids(await all({ metadata: [['region', 'us'], ['customer', 'even']] })), ['mail4']);
    assert.deepEqual(ids(await all({ id: 'sms1' })), ['sms1']);
    assert.deepEqual(ids(await all({ idPrefix: 'sms' })), ['sms0', 'sms1']);
    const jobs = await all({ queue: 'mail' });
    const t = jobs[3].createdMs;
    assert.deepEqual(ids(await all({ queue: 'mail', createdFromMs: t })),
      ids(jobs.filter((j) => j.createdMs >= t)));
    assert.deepEqual(ids(await all({ queue: 'mail', createdToMs: t })),
      ids(jobs.filter((j) => j.createdMs < t)));
  });

  test('views: summary (default), index, full', async () => {
    const { jobs: [s] } = await client.listJobs({ id: 'mail3' }, { tenant });
    assert.equal(s.status, 'waiting');
    assert.equal(s.priority, 3);
    assert.deepEqual(s.metadata, { customer: 'odd', region: 'us' });
    assert.equal(s.payload.length, 0);
    const { jobs: [f] } = await client.listJobs({ id: 'mail3' }, { tenant, view: 'full' });
    assert.equal(f.payload.toString(), 'body3');
    const { jobs: [i] } = await client.listJobs({ id: 'mail3' }, { tenant, view: 'index' });
    assert.deepEqual([i.id, i.queue, i.status, i.createdMs], ['mail3', 'mail', 'waiting', s.createdMs]);
    assert.deepEqual(i.metadata, {});
  });

  test('pages follow nextCursor; iterJobPages and iterJobs see every job once', async () => {
    const t2 = uid('pg-');
    const c = new SluiceClient({ address: srv.grpc, token: TOKEN, tenant: t2 });
    const want = [];
    for (let i = 0; i < 25; ++i) want.push((await c.enqueue({ queue: 'p', id: `p${String(i).padStart(2, '0')}` })).id);
    const first = await c.listJobs({}, { limit: 10 });
    assert.equal(first.jobs.length, 10);
    assert.notEqual(first.nextCursor, '');
    assert.ok(first.keysVisited > 0);
    const second = await c.listJobs({}, { limit: 10, cursor: first.nextCursor });
    assert.deepEqual(ids(second.jobs), want.slice(10, 20));
    let pages = 0;
    const seen = [];
    for await (const page of c.iterJobPages({ queue: 'p' }, { limit: 7 })) {
      ++pages;
      seen.push(...ids(page.jobs));
      if (pages === 1) want.push((await c.enqueue({ queue: 'p', id: 'p99' })).id);  // while paging
    }
    assert.deepEqual(seen, want);
    assert.ok(pages >= 4);
    const back = [];
    for await (const j of c.iterJobs({}, { limit: 4, newestFirst: true, view: 'index' })) back.push(j.id);
    assert.deepEqual(back, [...want].reverse());
    await assert.rejects(c.listJobs({}, { cursor: first.nextCursor, newestFirst: true }),
      (e) => e instanceof InvalidArgumentError && e.code === 'invalid_argument');
    await assert.rejects(c.listJobs({}, { cursor: 'made-up!' }), InvalidArgumentError);
    await assert.rejects(c.listJobs({ statuses: ['unspecified'] }), RangeError);
    await assert.rejects(c.listJobs({}, { view: 'everything' }), RangeError);
    await assert.rejects(c.listJobs({}, { limit: -1 }), RangeError);
    c.close();
  });

  test('countJobs: one queue, every queue', async () => {
    const every = await client.countJobs(undefined, { tenant });
    assert.deepEqual(every, [
      { queue: 'mail', scheduled: 0, waiting: 3, running: 1, succeeded: 0, failed: 1, cancelled: 1 },
      { queue: 'sms', scheduled: 1, waiting: 1, running: 0, succeeded: 0, failed: 0, cancelled: 0 },
    ]);
    assert.deepEqual(await client.countJobs('sms', { tenant }), [every[1]]);
  });
});

describe('query', () => {
  test('typed cells: number or bigint, real, text, Buffer, null', async () => {
    const r = await client.query(
      "SELECT 7 AS i, 0.5 AS r, 'häh' AS t, x'00ff' AS b, NULL AS n, 9007199254740993 AS big, " +
      '-9007199254740991 AS edge');
    assert.deepEqual(r.columns, ['i', 'r', 't', 'b', 'n', 'big', 'edge']);
    assert.equal(r.rows.length, 1);
    const [i, real, t, b, nul, big, edge] = r.rows[0];
    assert.equal(i, 7);
    assert.equal(real, 0.5);
    assert.equal(t, 'häh');
    assert.ok(Buffer.isBuffer(b));
    assert.deepEqual([...b], [0, 255]);
    assert.equal(nul, null);
    assert.equal(big, 9007199254740993n, 'unsafe integers stay exact as bigint');
    assert.equal(edge, -9007199254740991);
    const asBig = await client.query('SELECT 7, 2.0', { bigints: true });
    assert.deepEqual(asBig.rows, [[7n, 2]]);
  });

  test('the tables hold the tenant\'s jobs', async () => {
    const tenant = uid('qt-');
    await client.enqueue({ queue: 'q', id: 'a' }, { tenant });
    await client.enqueue({ queue: 'q', id: 'b' }, { tenant });
    const r = await client.query('SELECT id FROM jobs ORDER BY id', { tenant });
    assert.deepEqual(r.rows, [['a'], ['b']]);
    await assert.rejects(client.query('SELEKT 1'), (e) => e instanceof InvalidArgumentError &&
      e.code === 'invalid_argument');
    await assert.rejects(client.query('DELETE FROM jobs', { tenant }), InvalidArgumentError);
    assert.deepEqual((await client.query('SELECT count(*) FROM jobs', { tenant })).rows, [[2]]);
  });

  test('timeoutMs: SluiceTimeoutError with code timeout, from the server', async () => {
    const before = await queries('timeout');
    const t0 = Date.now();
    await assert.rejects(client.query(ENDLESS, { timeoutMs: 300 }), (e) =>
      e instanceof SluiceTimeoutError && e.code === 'timeout' && e.serverCode &&
      e.grpcCode === GrpcCode.DEADLINE_EXCEEDED && e.attempts === 1);
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 3000, `took ${took} ms`);
    assert.equal(await queries('timeout'), before + 1);
  });

  test('caps: too many rows, too many bytes', async () => {
    await assert.rejects(client.query(rowsSql(11), { maxRows: 10 }), (e) =>
      e instanceof TooLargeError && e.code === 'too_large');
    await assert.rejects(client.query(rowsSql(1001)), TooLargeError);
    await assert.rejects(client.query(rowsSql(300, 1000)), TooLargeError);
    assert.equal((await client.query(rowsSql(1000))).rows.length, 1000);
    const info = await client.getNodeInfo();
    assert.equal(info.limits.queryMaxRows, 1000);
    assert.equal(info.limits.queryTimeoutMs, 60000);
    assert.equal(info.limits.queryMaxResultBytes, 200000);
  });

  test('an aborted query rejects at once and the server stops it', async () => {
    const before = await queries('cancelled');
    const ctl = new AbortController();
    const p = client.query(ENDLESS, { timeoutMs: 60_000, signal: ctl.signal });
    await sleep(400);
    const t0 = Date.now();
    ctl.abort();
    await assert.rejects(p, CancelledError);
    assert.ok(Date.now() - t0 < 500);
    await until(async () => (await queries('cancelled')) === before + 1,
      { timeoutMs: 3000, what: 'the server counting the cancelled query' });
    assert.ok(Date.now() - t0 < 2000, 'the server noticed late');
    // Closing the client cancels a query in flight too.
    const c = new SluiceClient({ address: srv.grpc, token: TOKEN });
    const q = c.query(ENDLESS, { timeoutMs: 60_000 });
    await sleep(300);
    c.close();
    await assert.rejects(q, (e) => e.code === 'closed');
    await until(async () => (await queries('cancelled')) === before + 2,
      { timeoutMs: 3000, what: 'the query of the closed client' });
    // The server keeps serving.
    assert.deepEqual((await client.query("SELECT 'ok'")).rows, [['ok']]);
  });

  test('CANCELLED maps to CancelledError, with or without the trailer', () => {
    assert.equal(errorClassFor(GrpcCode.CANCELLED, 'cancelled'), CancelledError);
    assert.equal(errorClassFor(GrpcCode.CANCELLED, ''), CancelledError);
  });
});

test('every RPC of the service has a SluiceClient method', () => {
  const names = Object.keys(SluiceService);
  assert.ok(names.length >= 23 && names.includes('query'));
  const missing = names.filter((m) => typeof SluiceClient.prototype[m] !== 'function');
  assert.deepEqual(missing, []);
});

describe('tenants', () => {
  test('a bound token lists, counts and queries its own tenant only', async () => {
    const a = new SluiceClient({ address: srv.grpc, token: 'finder-a-token' });
    const b = new SluiceClient({ address: srv.grpc, token: 'finder-b-token' });
    const queue = uid('iso-');
    const bIds = [];
    for (let i = 0; i < 3; ++i) bIds.push((await b.enqueue({ queue, metadata: { who: 'b' } })).id);
    const aId = (await a.enqueue({ queue, metadata: { who: 'a' } })).id;
    const list = async (c, f) => { const out = []; for await (const j of c.iterJobs(f)) out.push(j.id); return out; };
    assert.deepEqual(await list(a, { queue }), [aId]);
    assert.deepEqual(await list(a, { id: bIds[0] }), []);
    assert.deepEqual(await list(a, { metadata: { who: 'b' } }), []);
    assert.deepEqual(await list(b, { queue }), bIds);
    assert.deepEqual(await list(client, { queue }), [], 'the operator\'s default tenant is another');
    assert.equal((await a.countJobs(queue))[0].waiting, 1);
    assert.equal((await b.countJobs(queue))[0].waiting, 3);
    assert.deepEqual((await a.query(`SELECT id FROM jobs WHERE queue = '${queue}'`)).rows, [[aId]]);
    for (const call of [() => a.listJobs({}, { tenant: 'tenant-b' }),
      () => a.countJobs('', { tenant: 'tenant-b' }), () => a.query('SELECT 1', { tenant: 'tenant-b' })]) {
      await assert.rejects(call(), (e) => e instanceof PermissionDeniedError && e.code === 'permission_denied');
    }
    a.close();
    b.close();
  });
});
