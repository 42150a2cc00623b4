// Compile-time checks of the public types (npm run build type-checks this; it never runs).
import {
  type CallOptions, type FloatingLimit, type Job, type JobContext, type JobFilter, type JobPage,
  type JobResult, type Outcome, type QueryCell, type QueryResult, type QueueCounts,
  type RefreshContext, type Task, type WorkerMetrics, CancelledError, JobFailure, LeaseLostError,
  SluiceClient, SluiceError, Worker,
} from '../src/index.js';

export async function usage(): Promise<void> {
  const client = new SluiceClient({ address: '127.0.0.1:7070', token: 't', tls: { rootCerts: 'pem' } });
  const opts: CallOptions = { tenant: 'acme', timeoutMs: 1000, signal: new AbortController().signal };
  const h = await client.enqueue({ queue: 'q', json: { a: 1 }, limits: [{ kind: 'floating', key: 'k', refreshIntervalMs: 1000 }] }, opts);
  const r: JobResult = await h.awaitResult({ timeoutMs: 10 });
  const n: number = r.json<{ n: number }>().n;
  const job: Job = await h.get({ includeAttempts: true });
  const status: 'scheduled' | 'waiting' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'unspecified' = job.status;
  const { tasks } = await client.leaseTasks({ queue: 'q', workerId: 'w', maxTasks: 2, waitMs: 100 });
  const t: Task | undefined = tasks[0];
  if (t) {
    const token: bigint = t.leaseToken;
    const outcome: Outcome = { kind: 'failure', code: 'x', noRetry: true };
    const res: (SluiceError | null)[] = await client.reportOutcomes([{ task: t, outcome }]);
    if (res[0] instanceof LeaseLostError) void token;
  }
  const fl: FloatingLimit[] = await client.listFloatingLimits({ afterKey: 'a', limit: 10 });
  const w = new Worker(client, {
    queues: ['q'],
    concurrency: 4,
    handler: async (ctx: JobContext) => {
      if (ctx.signal.aborted) throw new JobFailure('aborted', 'no', { noRetry: true });
      return ctx.text();
    },
    refresh: { k: (c: RefreshContext) => c.currentMax + 1 },
  });
  w.on('leaseLost', (task: Task, reason) => void [task, reason satisfies string]);
  w.on('error', (e: unknown, ctx) => void [e, ctx.op]);
  const m: WorkerMetrics = w.metrics();
  const stopped: { drained: boolean; abandoned: number } = await w.stop({ timeoutMs: 10 });
  void [n, status, fl, m, stopped];

  const filter: JobFilter = { queue: 'q', statuses: ['failed', 'cancelled'], metadata: { k: 'v' } };
  const page: JobPage = await client.listJobs(filter, { limit: 100, newestFirst: true, view: 'index' });
  const next: string = page.nextCursor;
  for await (const j of client.iterJobs(filter, { limit: 500 })) void (j satisfies Job);
  const counts: QueueCounts[] = await client.countJobs('q');
  const ctl = new AbortController();
  try {
    const r: QueryResult = await client.query('SELECT 1', { timeoutMs: 1000, maxRows: 10, signal: ctl.signal });
    const cell: QueryCell | undefined = r.rows[0]?.[0];
    if (typeof cell === 'bigint' || typeof cell === 'number') void cell;
    else if (Buffer.isBuffer(cell)) void cell.length;
    const cols: string[] = r.columns;
    void cols;
  } catch (e) {
    if (e instanceof CancelledError) void e.code;
  }
  void [next, counts];
}
