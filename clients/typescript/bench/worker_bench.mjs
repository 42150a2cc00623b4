// worker_bench: the @sluice/client Worker end to end against a BullMQ Worker, same machine, same
// run, same job count, both at concurrency 16, no-op handlers; median of RUNS rounds, the
// systems alternating within each round.
//
//   node bench/worker_bench.mjs [--jobs=20000] [--runs=3] [--concurrency=16] [--batch=100]
//        [--payload=64] [--systems=bullmq,sluice-sync,sluice-async] [--drain=1] [--pipeline=N]
//        [--work=MS] [--warmup=N] [--lanes=N] [--prefetch=N]
//        (systems also: sluice-sync-loop, sluice-async-loop)
//
// --pipeline=N sets the Sluice Worker's leasePipeline, --prefetch=N its prefetch (default: the
// Worker's own defaults).
// --work=MS gives the Sluice Worker's handler a timer of 0..2*MS ms (uniform; Node rounds
// timers under 1 ms up to 1 ms), to compare lease settings with handlers that take time.
// --warmup=N: before each measured run, its threads run N jobs on a queue of their own (the
// producer enqueues them while the Worker runs them; BullMQ: bullmq_bench.mjs --warmup=N, the
// same), so the run finds the JIT warm, as in a long-running service. Default 0: each run is a
// cold start of fresh threads, which at 20,000 jobs (about a second) weighs on the figure.
// --drain=1 measures the Workers alone: every job is enqueued first, then the Worker starts
// (Sluice: autostart off, start(); BullMQ: autorun off, run()), and the figure is jobs / (Worker
// started -> last acknowledged outcome), with no producer competing for the CPU.
//
// Sluice side (this file): one producer thread enqueues --jobs jobs with EnqueueBatch of --batch
// (one call in flight), while one Worker thread (`new Worker(client, {concurrency})`, the package
// as users get it, from dist/) runs them. e2e = jobs / (first enqueue call -> the Worker's last
// `completed` event, i.e. the last success acknowledged by sluiced).
// BullMQ side: bench/bullmq/bullmq_bench.mjs (the server benchmark's harness, unchanged) with
// --producers=1 --workers=1 --concurrency=16 --enqueue-batch=--batch: Queue.addBulk and one
// BullMQ Worker; e2e = jobs / (first add -> last `completed` event). Redis runs from Debian's
// redis-server with --appendonly yes --appendfsync everysec; sluiced runs with --durability
// sync (fsync before every acknowledgement) and async (no fsync); each Sluice system has its own
// sluiced over a fresh store.
// Both sides stamp process.hrtime into the payload at enqueue and report enqueue -> start
// latency percentiles.
//
// sluice-async-loop / sluice-sync-loop: the same producer, but instead of a Worker one thread
// runs the bare protocol: one LeaseStream, --lanes requests in flight (default 1), each asking
// for --concurrency tasks and carrying the outcomes of the answer before it, no handler. With
// one lane it is the ceiling of 16 tasks in flight over this protocol on this machine; with 3
// it holds what the Worker holds while it prefetches (prefetch 2 x concurrency: 3 requests).
import { Worker as Thread, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';

const here = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.resolve(here, '..');
const ROOT = path.resolve(PKG, '..', '..');
const SLUICED = process.env.SLUICED ?? path.join(ROOT, 'build', 'server', 'sluiced');
const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';
const BULLMQ_BENCH = path.join(ROOT, 'bench', 'bullmq', 'bullmq_bench.mjs');
const TOKEN = 'bench-token';
const nowNs = () => Number(process.hrtime.bigint());

function flags(argv) {
  const f = { jobs: 20000, runs: 3, concurrency: 16, batch: 100, payload: 64, drain: 0, pipeline: 0, work: 0,
    warmup: 0, lanes: 1, prefetch: -1,
    systems: ['bullmq', 'sluice-sync', 'sluice-async'] };
  for (const a of argv) {
    const m = /^--([a-z]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`bad argument ${a}`);
    if (m[1] === 'systems') f.systems = m[2].split(',');
    else if (m[1] in f) f[m[1]] = Number(m[2]);
    else throw new Error(`unknown flag --${m[1]}`);
  }
  return f;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// ---- Sluice threads -----------------------------------------------------------------------

async function sluiceProducer({ address, queue, jobs, batch, payload, warmup, go }) {
  const { SluiceClient } = await import(path.join(PKG, 'dist', 'index.js'));
  const client = new SluiceClient({ address, token: TOKEN });
  await client.getNodeInfo();  // connected before the clock starts
  const pad = 'x'.repeat(Math.max(0, payload - 24));
  const produce = async (q, count) => {
    for (let sent = 0; sent < count; sent += batch) {
      const n = Math.min(batch, count - sent);
      const t = nowNs();
      const specs = new Array(n);
      for (let i = 0; i < n; ++i) specs[i] = { queue: q, json: { t, p: pad } };
      await client.enqueueBatch(specs);
    }
  };
  if (warmup > 0) await produce(`${queue}-warm`, warmup);
  parentPort.postMessage({ ready: true });
  Atomics.wait(new Int32Array(go), 0, 0);
  const start = nowNs();
  await produce(queue, jobs);
  const end = nowNs();
  client.close();
  parentPort.postMessage({ start, end });
}

async function sluiceWorker({ address, queue, jobs, concurrency, drain, pipeline, work, warmup, prefetch }) {
  const { SluiceClient, Worker } = await import(path.join(PKG, 'dist', 'index.js'));
  const client = new SluiceClient({ address, token: TOKEN });
  await client.getNodeInfo();
  const lat = new Float64Array(jobs);
  let started = 0;
  let done = 0;
  let lastNs = 0;
  const options = (q, autostart, record) => ({
    queues: q, concurrency, autostart, ...(pipeline > 0 ? { leasePipeline: pipeline } : {}),
    ...(prefetch >= 0 ? { prefetch } : {}),
    handler: work > 0
      ? async (job) => {
        const ms = (nowNs() - job.json().t) / 1e6;
        if (record && started < jobs) lat[started++] = ms;
        await delay(Math.random() * 2 * work);
      }
      : (job) => {
        const ms = (nowNs() - job.json().t) / 1e6;
        if (record && started < jobs) lat[started++] = ms;
      },
  });
  // The warm-up Worker: the same handler on its own queue, run while the producer warms up.
  let warmed = Promise.resolve();
  if (warmup > 0) {
    const warm = new Worker(client, options(`${queue}-warm`, true, false));
    let n = 0;
    warmed = new Promise((resolve) => warm.on('completed', () => { if (++n === warmup) resolve(); }))
      .then(() => warm.stop());
  }
  const w = new Worker(client, options(queue, !drain, true));
  w.on('error', (e, ctx) => console.error(`worker_bench: worker ${ctx.op}: ${e.message}`));
  const doneAt = new Float64Array(jobs);
  w.on('completed', () => {
    if (done < jobs) doneAt[done] = nowNs();
    if (++done === jobs) {
      lastNs = nowNs();
      parentPort.postMessage({ lastNs });
    }
  });
  parentPort.postMessage({ ready: true });
  if (warmup > 0) warmed.then(() => parentPort.postMessage({ warmed: true }));
  parentPort.on('message', async (m) => {
    if (m === 'go') {
      const startNs = nowNs();
      w.start();
      parentPort.postMessage({ startNs });
      return;
    }
    if (m !== 'stop') return;
    await w.stop();
    client.close();
    parentPort.postMessage({ lat: lat.subarray(0, started), doneAt, metrics: w.metrics() });
  });
}

// The bare lease loop (sluice-*-loop): what the Worker's figure is measured against.
async function sluiceLoop({ address, queue, jobs, concurrency, drain, warmup, lanes }) {
  const { SluiceClient } = await import(path.join(PKG, 'dist', 'index.js'));
  const client = new SluiceClient({ address, token: TOKEN });
  await client.getNodeInfo();
  const lat = new Float64Array(jobs);
  const doneAt = new Float64Array(jobs);
  parentPort.postMessage({ ready: true });
  // Runs `count` jobs of queue `q`; records latencies and completion times when `record`.
  const lease = async (q, count, record) => {
    const stream = client.leaseStream();
    let done = 0;
    let started = 0;
    const lane = async () => {
      let reports = [];
      while (done < count) {
        // Once every job is leased, the last request only reports: it must not wait for more.
        const res = await stream.lease({ queue: q, maxTasks: concurrency,
          waitMs: started < count ? 1000 : 0, reports });
        const acked = nowNs();
        for (let i = 0; i < reports.length && done < count; ++i, ++done) if (record) doneAt[done] = acked;
        reports = new Array(res.tasks.length);
        for (let i = 0; i < res.tasks.length; ++i) {
          const task = res.tasks[i];
          const ms = (nowNs() - JSON.parse(task.payload.toString()).t) / 1e6;
          if (started < count) {
            if (record) lat[started] = ms;
            ++started;
          }
          reports[i] = { task };
        }
        if (started >= count && reports.length === 0) break;  // another lane reports the rest
      }
    };
    await Promise.all(Array.from({ length: lanes }, lane));
    stream.close();
  };
  if (warmup > 0) {
    await lease(`${queue}-warm`, warmup, false);
    parentPort.postMessage({ warmed: true });
  }
  const run = async () => {
    await lease(queue, jobs, true);
    const lastNs = nowNs();
    client.close();
    parentPort.postMessage({ lastNs });
  };
  parentPort.on('message', async (m) => {
    if (m === 'go') {
      const startNs = nowNs();
      parentPort.postMessage({ startNs });
      await run();
    } else if (m === 'stop') {
      parentPort.postMessage({ lat: lat.subarray(0, jobs), doneAt, metrics: {} });
    }
  });
  if (!drain) await run();
}

// With the producer running: jobs/s finished while it was still enqueueing, and after it ended
// (the Worker then has both cores' worth of the machine to itself, less the server's flushes).
function phases(doneAt, startNs, producerEndNs, lastNs) {
  let during = 0;
  while (during < doneAt.length && doneAt[during] <= producerEndNs) ++during;
  const rate = (n, ns) => (ns > 0 ? (n / (ns / 1e9)).toFixed(0) : '-');
  return `while producing ${rate(during, producerEndNs - startNs)} jobs/s (${during} jobs), ` +
    `after ${rate(doneAt.length - during, lastNs - producerEndNs)} jobs/s`;
}

function spawnThread(data) {
  const t = new Thread(fileURLToPath(import.meta.url), { workerData: data });
  const messages = [];
  let wake = null;
  t.on('error', (e) => { console.error(e); process.exit(1); });
  t.on('message', (m) => { messages.push(m); if (wake) { wake(); wake = null; } });
  t.next = async () => {
    while (messages.length === 0) await new Promise((r) => { wake = r; });
    return messages.shift();
  };
  return t;
}

async function runSluice(f, address, label, round) {
  const queue = `wb-${label}-${round}-${process.pid}`;
  const go = new SharedArrayBuffer(4);
  const worker = spawnThread({ role: label.endsWith('-loop') ? 'loop' : 'worker', address, queue,
    jobs: f.jobs, concurrency: f.concurrency, drain: f.drain, pipeline: f.pipeline, work: f.work,
    warmup: f.warmup, lanes: f.lanes, prefetch: f.prefetch });
  await worker.next();
  const producer = spawnThread({ role: 'producer', address, queue, jobs: f.jobs, batch: f.batch,
    payload: f.payload, warmup: f.warmup, go });
  await producer.next();
  if (f.warmup > 0) await worker.next();  // { warmed }: every warm-up job ran
  Atomics.store(new Int32Array(go), 0, 1);
  Atomics.notify(new Int32Array(go), 0);
  const span = await producer.next();
  let startNs = span.start;
  if (f.drain) {
    worker.postMessage('go');
    ({ startNs } = await worker.next());
  }
  const guard = new AbortController();
  const { lastNs } = await Promise.race([worker.next(),
    delay(600_000, null, { signal: guard.signal }).then(() => { throw new Error('timeout'); })]);
  guard.abort();
  worker.postMessage('stop');
  const { lat, doneAt, metrics } = await worker.next();
  await Promise.all([worker.terminate(), producer.terminate()]);
  const sorted = Float64Array.from(lat).sort();
  return {
    enqueue: f.jobs / ((span.end - span.start) / 1e9),
    e2e: f.jobs / ((lastNs - startNs) / 1e9),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    phases: f.drain ? '' : phases(doneAt, startNs, span.end, lastNs),
    extra: label.endsWith('-loop') ? '' : `leaseCalls=${metrics.leaseCalls} reportCalls=${metrics.reportCalls}` +
      ` leaseReportCalls=${metrics.leaseReportCalls ?? 0} reportsWithLease=${metrics.reportsWithLease ?? 0}`,
  };
}

// ---- BullMQ (bench/bullmq/bullmq_bench.mjs) -----------------------------------------------

async function runBullmq(f, redisPort, round) {
  const { stdout } = await promisify(execFile)(process.execPath, [BULLMQ_BENCH,
    `--redis=127.0.0.1:${redisPort}`, `--jobs=${f.jobs}`, '--producers=1', '--workers=1',
    `--concurrency=${f.concurrency}`, `--enqueue-batch=${f.batch}`, `--payload=${f.payload}`,
    `--queue=wb-bullmq-${round}-${process.pid}`, ...(f.drain ? ['--drain'] : []),
    ...(f.warmup > 0 ? [`--warmup=${f.warmup}`] : [])],
  { maxBuffer: 16 << 20, timeout: 600_000 });
  const line = stdout.split('\n').find((l) => l.startsWith('enqueue_jobs_per_s='));
  if (!line) throw new Error(`bullmq_bench printed no result: ${stdout}`);
  const kv = Object.fromEntries(line.split(' ').map((p) => p.split('=')));
  return { enqueue: Number(kv.enqueue_jobs_per_s),
    e2e: Number(f.drain ? kv.drain_jobs_per_s : kv.e2e_jobs_per_s),
    p50: Number(kv.start_p50_ms), p99: Number(kv.start_p99_ms), extra: '' };
}

// ---- Servers ------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startSluiced(dir, durability) {
  fs.mkdirSync(dir, { recursive: true });
  const portFile = path.join(dir, 'ports.json');
  const log = fs.openSync(path.join(dir, 'sluiced.log'), 'a');
  const proc = spawn(SLUICED, ['--data-dir', path.join(dir, 'data'), '--grpc-listen', '127.0.0.1:0',
    '--http-listen', '127.0.0.1:0', '--port-file', portFile, '--token', TOKEN,
    '--durability', durability, '--log-level', 'warn'], { stdio: ['ignore', log, log] });
  for (let i = 0; i < 300 && !fs.existsSync(portFile); ++i) await delay(50);
  if (!fs.existsSync(portFile)) throw new Error(`sluiced (${durability}) did not start`);
  return { proc, address: JSON.parse(fs.readFileSync(portFile, 'utf8')).grpc };
}

async function startRedis(dir) {
  const port = await freePort();
  fs.mkdirSync(dir, { recursive: true });
  const proc = spawn(REDIS_SERVER, ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '',
    '--logfile', path.join(dir, 'redis.log')], { stdio: 'ignore' });
  for (let i = 0; i < 100; ++i) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return { proc, port };
    await delay(50);
  }
  throw new Error('redis-server did not start');
}

// CPU seconds (user + system) a process has used so far (Linux /proc).
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;  // utime + stime, USER_HZ = 100
}

// [busy, total] jiffies of the whole machine.
function machineTicks() {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = cpu[3] + cpu[4];
  const total = cpu.reduce((a, b) => a + b, 0);
  return [total - idle, total];
}

async function main() {
  const f = flags(process.argv.slice(2));
  if (!fs.existsSync(path.join(PKG, 'dist', 'index.js'))) throw new Error('build first: npm run build');
  if (f.systems.includes('bullmq') && !fs.existsSync(path.join(ROOT, 'bench', 'bullmq', 'node_modules'))) {
    await promisify(execFile)('npm', ['ci', '--no-audit', '--no-fund'], { cwd: path.join(ROOT, 'bench', 'bullmq') });
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-worker-bench-'));
  const procs = [];
  try {
    const servers = {};
    const pids = {};
    if (f.systems.includes('bullmq')) {
      const r = await startRedis(path.join(tmp, 'redis'));
      procs.push(r.proc);
      servers.bullmq = r.port;
      pids.bullmq = r.proc.pid;
    }
    // Each Sluice system gets its own sluiced: one's writes (and the compactions they cause)
    // do not land on another's runs.
    for (const sys of f.systems.filter((x) => x.startsWith('sluice-'))) {
      const s = await startSluiced(path.join(tmp, sys), sys.startsWith('sluice-sync') ? 'sync' : 'async');
      procs.push(s.proc);
      servers[sys] = s.address;
      pids[sys] = s.proc.pid;
    }
    const results = Object.fromEntries(f.systems.map((s) => [s, []]));
    for (let round = 1; round <= f.runs; ++round) {
      for (const sys of f.systems) {
        const serverCpu0 = cpuSeconds(pids[sys]);
        const [busy0, all0] = machineTicks();
        const r = sys === 'bullmq' ? await runBullmq(f, servers.bullmq, round)
          : await runSluice(f, servers[sys], sys, round);
        const [busy1, all1] = machineTicks();
        r.serverCpu = cpuSeconds(pids[sys]) - serverCpu0;
        r.machineBusy = (busy1 - busy0) / (all1 - all0);
        results[sys].push(r);
        console.error(`round ${round} ${sys}: e2e ${r.e2e.toFixed(0)} jobs/s, enqueue ${r.enqueue.toFixed(0)} jobs/s, ` +
          `start p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms, server cpu ${r.serverCpu.toFixed(2)} s, ` +
          `machine ${(100 * r.machineBusy).toFixed(0)}% busy ${r.extra}${r.phases ? `; ${r.phases}` : ''}`);
      }
    }
    const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(`jobs=${f.jobs} concurrency=${f.concurrency} batch=${f.batch} payload=${f.payload} runs=${f.runs} ` +
      `${f.drain ? 'drain (Workers alone)' : 'producer and Worker together'}` +
      `${f.warmup > 0 ? `, after a warm-up of ${f.warmup} jobs` : ''} (median)`);
    console.log(`| system | ${f.drain ? 'drain' : 'e2e'} jobs/s | runs | enqueue jobs/s | start p50 ms | start p99 ms | server CPU s | machine busy |`);
    console.log('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |');
    for (const sys of f.systems) {
      const rs = results[sys];
      const m = (k) => med(rs.map((r) => r[k]));
      console.log(`| ${sys} | ${m('e2e').toFixed(0)} | ${rs.map((r) => r.e2e.toFixed(0)).join(' / ')} | ` +
        `${m('enqueue').toFixed(0)} | ${m('p50').toFixed(2)} | ${m('p99').toFixed(2)} | ` +
        `${m('serverCpu').toFixed(2)} | ${(100 * m('machineBusy')).toFixed(0)}% |`);
    }
    if (results.bullmq) {
      const base = med(results.bullmq.map((r) => r.e2e));
      for (const sys of f.systems.filter((s) => s !== 'bullmq')) {
        console.log(`${sys} / bullmq ${f.drain ? 'drain' : 'e2e'}: ${(med(results[sys].map((r) => r.e2e)) / base).toFixed(2)}x`);
      }
    }
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await delay(300);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (isMainThread) {
  await main();
} else if (workerData.role === 'producer') {
  await sluiceProducer(workerData);
} else if (workerData.role === 'loop') {
  await sluiceLoop(workerData);
} else {
  await sluiceWorker(workerData);
}
