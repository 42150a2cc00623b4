// bullmq_bench: the BullMQ-on-Redis side of the server benchmark (bench/server_bench.sh).
// Same flags and the same output line as bench/loadgen.cc, so the two compare one to one:
//
//   K producer threads, each with its own Queue (own Redis connection), add --jobs jobs in
//   total with Queue.add (--enqueue-batch=1) or Queue.addBulk of B jobs, one call in flight
//   per producer, optionally paced to --rate jobs/s in total;
//   W worker threads, each one BullMQ Worker with `concurrency` C and a no-op processor.
//
// Output (stdout, one line):
//   enqueue_jobs_per_s=... e2e_jobs_per_s=... start_p50_ms=... start_p99_ms=... jobs=...
//   enqueue: jobs / (first add call -> last add acknowledged)
//   e2e:     jobs / (first add call -> last `completed` event, i.e. the job is in Redis'
//            completed state, as Sluice counts a job done when its ReportOutcome is acknowledged)
//   start:   enqueue -> start latency: the producer stamps CLOCK_MONOTONIC (process.hrtime,
//            machine-wide on Linux) into job.data just before the add/addBulk call; the
//            processor reads it on entry. job.timestamp is only millisecond-grained.
//
// Settings, stated because they matter to the figures: completed jobs are trimmed to the last
// 1000 (Worker removeOnComplete {count: 1000}, failed ones to 5000), as a production setup does
// to keep Redis memory bounded; one attempt per job (BullMQ's default), no rate limiter.
// Redis persistence is the caller's business (server_bench.sh: appendonly yes, appendfsync
// everysec). The queue is obliterated after the measurement.
//
//   node bullmq_bench.mjs --redis=127.0.0.1:6379 --jobs=50000 --producers=4 --workers=1 \
//        --concurrency=16 --enqueue-batch=100 --payload=64 --rate=0 --queue=bench-1
//
// --target (host:port) is accepted as a synonym of --redis; --token and --report-batch are
// accepted and ignored (BullMQ has no equivalent: each job is completed by its own script call).
//
// --drain: every job is added first, and only then the Workers start (created with autorun
// off, run() on the signal); the line then also has drain_jobs_per_s = jobs / (Workers
// started -> last `completed` event): the Workers' own throughput, without producers competing
// for the CPU.
//
// --warmup=N: before the measurement, the same threads run N jobs on a queue of their own
// (the producers add them while the Workers run them), so that the measured run finds the JIT
// warm and the connections open, as in a long-running service. Off (0) by default.
import { Worker as Thread, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';

const nowNs = () => Number(process.hrtime.bigint());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseFlags(argv) {
  const f = {
    redis: '127.0.0.1:6379', jobs: 10000, producers: 1, workers: 1, concurrency: 16,
    enqueueBatch: 1, payload: 64, rate: 0, queue: `bench-${process.pid}-${Date.now()}`,
    drain: false, warmup: 0,
  };
  const num = (k, v) => {
    if (!/^\d+(\.\d+)?$/.test(v)) die(`bad number for --${k}: ${v}`);
    return Number(v);
  };
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') {
      console.log('bullmq_bench --redis=HOST:PORT --jobs=N --producers=K --workers=W ' +
                  '--concurrency=C --enqueue-batch=B --payload=BYTES --rate=JOBS_PER_S --queue=NAME');
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) die(`bad argument: ${arg}`);
    const [, k, v = ''] = m;
    switch (k) {
      case 'redis': case 'target': f.redis = v; break;
      case 'jobs': f.jobs = num(k, v); break;
      case 'producers': f.producers = num(k, v); break;
      case 'workers': f.workers = num(k, v); break;
      case 'concurrency': f.concurrency = num(k, v); break;
      case 'enqueue-batch': f.enqueueBatch = num(k, v); break;
      case 'payload': f.payload = num(k, v); break;
      case 'rate': f.rate = num(k, v); break;
      case 'queue': f.queue = v; break;
      case 'drain': f.drain = true; break;
      case 'warmup': f.warmup = num(k, v); break;
      case 'token': case 'report-batch': break;
      default: die(`unknown flag --${k}`);
    }
  }
  if (f.jobs < 1 || f.producers < 1 || f.workers < 1 || f.concurrency < 1 || f.enqueueBatch < 1) {
    die('--jobs, --producers, --workers, --concurrency and --enqueue-batch must be >= 1');
  }
  return f;
}

function die(msg) {
  console.error(`bullmq_bench: ${msg}`);
  process.exit(1);
}

function connection(redis) {
  const i = redis.lastIndexOf(':');
  return { host: redis.slice(0, i), port: Number(redis.slice(i + 1)), maxRetriesPerRequest: null };
}

// ---- Threads ------------------------------------------------------------------------------

// A producer: adds `count` jobs, `batch` per call, paced to `rate` jobs/s when rate > 0.
// Reports the time of its first call and of its last acknowledgement.
async function producer({ f, count, warm, rate, go }) {
  const queue = new Queue(f.queue, { connection: connection(f.redis) });
  await queue.waitUntilReady();
  const pad = 'x'.repeat(Math.max(0, f.payload - 16));
  if (warm > 0) {
    const wq = new Queue(`${f.queue}-warm`, { connection: connection(f.redis) });
    for (let sent = 0; sent < warm; sent += f.enqueueBatch) {
      const n = Math.min(f.enqueueBatch, warm - sent);
      const jobs = [];
      for (let i = 0; i < n; ++i) jobs.push({ name: 'j', data: { t: nowNs(), p: pad } });
      await (n === 1 ? wq.add('j', jobs[0].data) : wq.addBulk(jobs));
    }
    await wq.close();
  }
  parentPort.postMessage({ ready: true });
  Atomics.wait(new Int32Array(go), 0, 0);  // the main thread releases every producer at once
  const start = nowNs();
  let sent = 0;
  while (sent < count) {
    const n = Math.min(f.enqueueBatch, count - sent);
    if (rate > 0) {
      const due = start + (sent / rate) * 1e9;
      const wait = (due - nowNs()) / 1e6;
      if (wait > 0) await sleep(wait);
    }
    const t = nowNs();
    if (n === 1 && f.enqueueBatch === 1) {
      await queue.add('j', { t, p: pad });
    } else {
      const jobs = [];
      for (let i = 0; i < n; ++i) jobs.push({ name: 'j', data: { t, p: pad } });
      await queue.addBulk(jobs);
    }
    sent += n;
  }
  const end = nowNs();
  await queue.close();
  parentPort.postMessage({ start, end });
}

// A worker: one BullMQ Worker with `concurrency` slots and a no-op processor. Records each
// job's enqueue -> start latency; counts completions in the shared counter and stamps the
// moment the last of all jobs completed.
async function worker({ f, shared }) {
  const counters = new Int32Array(shared, 0, 2);  // [completed jobs, all done flag]
  const lastNs = new Float64Array(shared, 8, 1);
  const warmDone = new Int32Array(shared, 16, 1);
  const lat = [];
  const options = (autorun) => ({
    connection: connection(f.redis),
    concurrency: f.concurrency,
    removeOnComplete: { count: 1000 },
    removeOnFail: { count: 5000 },
    autorun,
  });
  // The warm-up Worker runs the same processor (its latencies are not recorded).
  let warm = null;
  if (f.warmup > 0) {
    warm = new Worker(`${f.queue}-warm`, async (job) => { void ((nowNs() - job.data.t) / 1e6); },
      options(true));
    warm.on('completed', () => { Atomics.add(warmDone, 0, 1); });
    await warm.waitUntilReady();
  }
  const w = new Worker(f.queue, async (job) => {
    lat.push((nowNs() - job.data.t) / 1e6);
  }, options(!f.drain));
  w.on('completed', () => {
    if (Atomics.add(counters, 0, 1) + 1 === f.jobs) {
      lastNs[0] = nowNs();
      Atomics.store(counters, 1, 1);  // publishes lastNs
      Atomics.notify(counters, 1);
    }
  });
  w.on('failed', (job, err) => console.error(`bullmq_bench: job failed: ${err}`));
  await w.waitUntilReady();
  parentPort.postMessage({ ready: true });
  parentPort.on('message', async (msg) => {
    if (msg === 'run') {
      w.run().catch((e) => die(`worker: ${e}`));
      return;
    }
    if (msg === 'warm-done') {
      await warm.close();
      parentPort.postMessage({ warmClosed: true });
      return;
    }
    if (msg !== 'stop') return;
    await w.close();
    parentPort.postMessage({ lat: Float64Array.from(lat) });
  });
}

// ---- Main ---------------------------------------------------------------------------------

function spawn(data) {
  const t = new Thread(fileURLToPath(import.meta.url), { workerData: data });
  t.on('error', (e) => die(`thread: ${e.stack || e}`));
  const messages = [];
  let wake = null;
  t.on('message', (m) => { messages.push(m); if (wake) { wake(); wake = null; } });
  t.next = async () => {
    while (messages.length === 0) await new Promise((r) => { wake = r; });
    return messages.shift();
  };
  return t;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  const f = parseFlags(process.argv.slice(2));
  const shared = new SharedArrayBuffer(24);
  const go = new SharedArrayBuffer(4);

  const workers = [];
  for (let i = 0; i < f.workers; ++i) workers.push(spawn({ role: 'worker', f, shared }));
  for (const w of workers) await w.next();

  const producers = [];
  for (let i = 0; i < f.producers; ++i) {
    const count = Math.floor(f.jobs / f.producers) + (i < f.jobs % f.producers ? 1 : 0);
    const warm = Math.floor(f.warmup / f.producers) + (i < f.warmup % f.producers ? 1 : 0);
    producers.push(spawn({ role: 'producer', f, count, warm, rate: f.rate / f.producers, go }));
  }
  for (const p of producers) await p.next();
  if (f.warmup > 0) {
    // Every warm-up job is added (the producers said ready): wait until the Workers ran them all.
    const warmDone = new Int32Array(shared, 16, 1);
    const until = Date.now() + 600_000;
    while (Atomics.load(warmDone, 0) < f.warmup) {
      if (Date.now() > until) die(`warm-up timed out at ${Atomics.load(warmDone, 0)} of ${f.warmup}`);
      await sleep(5);
    }
    for (const w of workers) w.postMessage('warm-done');
    for (const w of workers) await w.next();
  }
  Atomics.store(new Int32Array(go), 0, 1);
  Atomics.notify(new Int32Array(go), 0);

  const spans = await Promise.all(producers.map((p) => p.next()));
  const first = Math.min(...spans.map((s) => s.start));
  const lastAck = Math.max(...spans.map((s) => s.end));
  let runAt = 0;
  if (f.drain) {
    runAt = nowNs();
    for (const w of workers) w.postMessage('run');
  }

  const counters = new Int32Array(shared, 0, 2);
  const deadline = Date.now() + 600_000;
  while (Atomics.load(counters, 1) === 0) {
    if (Date.now() > deadline) {
      die(`timed out with ${Atomics.load(counters, 0)} of ${f.jobs} jobs completed`);
    }
    await Atomics.waitAsync(counters, 1, 0, 1000).value;
  }
  const lastDone = new Float64Array(shared, 8, 1)[0];

  const lats = [];
  for (const w of workers) {
    w.postMessage('stop');
    lats.push((await w.next()).lat);
  }
  const all = new Float64Array(lats.reduce((n, a) => n + a.length, 0));
  let o = 0;
  for (const a of lats) { all.set(a, o); o += a.length; }
  all.sort();

  for (const name of f.warmup > 0 ? [f.queue, `${f.queue}-warm`] : [f.queue]) {
    const q = new Queue(name, { connection: connection(f.redis) });
    await q.obliterate({ force: true });
    await q.close();
  }

  console.error(`bullmq_bench: start p90 ${percentile(all, 90).toFixed(3)} ms, ` +
                `p99.9 ${percentile(all, 99.9).toFixed(3)} ms, max ${percentile(all, 100).toFixed(3)} ms`);
  const rate = (span) => (f.jobs / (span / 1e9)).toFixed(0);
  console.log(`enqueue_jobs_per_s=${rate(lastAck - first)} e2e_jobs_per_s=${rate(lastDone - first)} ` +
              `start_p50_ms=${percentile(all, 50).toFixed(3)} ` +
              `start_p99_ms=${percentile(all, 99).toFixed(3)} jobs=${all.length}` +
              (f.drain ? ` drain_jobs_per_s=${rate(lastDone - runAt)}` : ''));
  process.exit(0);
}

if (isMainThread) {
  await main();
} else if (workerData.role === 'producer') {
  await producer(workerData);
} else {
  await worker(workerData);
}
