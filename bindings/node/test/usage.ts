// Type-checks a consumer of the published declarations (dist/index.d.ts): `npm run typecheck`.
import {
  Engine, LeaseLostError, NotFoundError, SluiceError, type Completion, type EngineStats,
  type JobSpec, type Task,
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
