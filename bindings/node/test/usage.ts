// Type-checks a consumer of the published declarations (dist/index.d.ts): `npm run typecheck`.
import {
  CancelledError, Engine, LeaseLostError, NotFoundError, SluiceError, SluiceTimeoutError,
  type Completion, type EngineStats, type Job, type JobPage, type JobSpec, type QueryCell,
  type QueryResult, type QueueCounts, type Task,
} from '..';

export async function worker(path: string): Promise<EngineStats> {
  const engine: Engine = await Engine.open(path, { durability: 'sync', defaultLeaseMs: 10_000 });
  const spec: JobSpec = {
    queue: 'email', payload: JSON.stringify({ to: 'a@b.c' }), priority: 10,
    retry: { maxRetries: 5 }, limits: [{ kind: 'floating', key: 'smtp', max: 4, refreshIntervalMs: 60_000 }],
  };
  await engine.enqueueBatch([spec, { queue: 'email', payload: new Uint8Array([1, 2]) }]);
  const { tasks, refreshes } = await engine.lease({ queue: 'email', workerId: 'w1', maxTasks: 64,
    waitMs: 1000, withRefreshes: true });
  for (const r of refreshes) await engine.refreshComplete(r, { newMax: 8 });
  const done: Completion[] = tasks.map((task: Task) => ({ task, outcome: { kind: 'success' } }));
  const statuses: (SluiceError | null)[] = await engine.completeMany(done);
  if (statuses.some((s) => s instanceof LeaseLostError)) console.log('lost a lease');
  try {
    await engine.getJob('missing', { includeAttempts: true });
  } catch (e) {
    if (e instanceof NotFoundError && e.code === 'not_found' && e.status === 1) console.log('ok');
  }
  const first: Task | undefined = tasks[0];
  if (first) {
    const hb = await engine.heartbeat(first);
    if (hb.cancelRequested) await engine.reportCancelled(first);
    else await engine.fail(first, { code: 'x', noRetry: true });
  }
  const stats = await engine.stats();
  await engine.close();
  return stats;
}

export async function operator(engine: Engine): Promise<number> {
  const page: JobPage = await engine.listJobs({ tenant: 't', queue: 'email',
    statuses: ['failed', 'cancelled'], metadata: [['customer', 'acme']], newestFirst: true,
    limit: 100, view: 'index' });
  const next: JobPage = await engine.listJobs({ tenant: 't', cursor: page.nextCursor });
  let n = next.jobs.length;
  for await (const job of engine.iterJobs({ tenant: 't', idPrefix: 'import-', pageSize: 500 })) {
    const j: Job = job;
    if (j.status === 'failed') await engine.restart(j.id, { tenant: 't' });
    n++;
  }
  const counts: QueueCounts[] = await engine.countJobs('t');
  for (const c of counts) n += c.counts.waiting + c.counts.scheduled;
  const ac = new AbortController();
  try {
    const r: QueryResult = await engine.query('t', 'SELECT queue, count(*) FROM jobs GROUP BY 1',
      { timeoutMs: 1000, maxRows: 100, maxResultBytes: 1 << 20, signal: ac.signal });
    const cell: QueryCell = r.rows[0]?.[1] ?? null;
    if (typeof cell === 'number' || typeof cell === 'bigint') n += Number(cell);
    if (r.columns.length !== 2) console.log(r.keysVisited);
  } catch (e) {
    if (e instanceof CancelledError || e instanceof SluiceTimeoutError) return -1;
    throw e;
  }
  await engine.verifyIndexes();
  return n;
}
