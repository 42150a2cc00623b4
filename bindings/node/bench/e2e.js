'use strict';
// Node end-to-end throughput of the in-process engine, mirroring bench/engine_bench.cc:
//   batch  enqueueBatch() of --batch jobs per call, one producer awaiting each call (as the
//          C++ batch scenario); batch_inflight2 keeps two calls in flight, overlapping the
//          conversion of one batch on the event loop with the engine's write of the other
//   e2e    one producer enqueues batches while --loops lease loops each lease(maxTasks 64,
//          waitMs 10) and report the tasks with one completeMany(); timed from the first
//          enqueue to the last completion
//   e2e_single  as e2e, but each task is reported with its own complete() call
// One line per scenario, "key=value" fields ending in jobs_per_s=N.
//
//   node bench/e2e.js [--jobs=200000] [--loops=16] [--batch=1000] [--payload=64]
//                     [--durability=async|sync]
//                     [--scenario=all|batch|batch_inflight2|e2e|e2e_single]
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine } = require('..');

const flags = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = /^--([^=]+)=(.*)$/.exec(a);
  if (!m) throw new Error(`bad flag ${a}`);
  return [m[1], m[2]];
}));
const jobs = Number(flags.jobs ?? 200_000);
const loops = Number(flags.loops ?? 16);
const batch = Number(flags.batch ?? 1000);
const payload = Buffer.alloc(Number(flags.payload ?? 64), 'x');
const durability = flags.durability ?? 'async';
const scenario = flags.scenario ?? 'all';

async function withEngine(fn) {
  const dir = fs.mkdtempSync(path.join(flags.dir ?? os.tmpdir(), 'sluice-node-bench-'));
  const engine = await Engine.open(dir, { durability });
  try {
    return await fn(engine);
  } finally {
    await engine.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function specs(n) {
  return Array.from({ length: n }, () => ({ queue: 'bench', payload }));
}

function report(name, n, secs, extra = '') {
  console.log(`scenario=${name} durability=${durability} ${extra}jobs=${n} ` +
    `secs=${secs.toFixed(3)} jobs_per_s=${Math.round(n / secs)}`);
}

// Enqueues n jobs in batches, with `inflight` enqueueBatch calls outstanding at a time.
async function produce(engine, n, inflight = 1) {
  const s = specs(batch);
  let sent = 0;
  async function lane() {
    while (sent < n) {
      const k = Math.min(batch, n - sent);
      sent += k;
      await engine.enqueueBatch(k === batch ? s : s.slice(0, k));
    }
  }
  await Promise.all(Array.from({ length: inflight }, lane));
}

async function runBatch(name, inflight) {
  await withEngine(async (engine) => {
    const t0 = process.hrtime.bigint();
    await produce(engine, jobs, inflight);
    report(name, jobs, Number(process.hrtime.bigint() - t0) / 1e9, `batch=${batch} `);
  });
}

async function runE2E(name, single) {
  await withEngine(async (engine) => {
    let done = 0;
    async function work(w) {
      const workerId = `w${w}`;
      while (done < jobs) {
        const { tasks } = await engine.lease({ queue: 'bench', workerId, maxTasks: 64,
          waitMs: 10 });
        if (tasks.length === 0) continue;
        if (single) {
          await Promise.all(tasks.map((task) => engine.complete(task)));
        } else {
          const statuses = await engine.completeMany(tasks.map((task) => ({ task })));
          const bad = statuses.find((s) => s !== null);
          if (bad) throw bad;
        }
        done += tasks.length;
      }
    }
    const t0 = process.hrtime.bigint();
    await Promise.all([produce(engine, jobs), ...Array.from({ length: loops }, (_, w) => work(w))]);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const stats = await engine.stats();
    if (stats.succeeded !== jobs || stats.running !== 0) {
      throw new Error(`ended with ${stats.succeeded} succeeded, ${stats.running} running`);
    }
    report(name, jobs, secs, `loops=${loops} `);
  });
}

(async () => {
  if (scenario === 'all' || scenario === 'batch') await runBatch('batch', 1);
  if (scenario === 'all' || scenario === 'batch_inflight2') await runBatch('batch_inflight2', 2);
  if (scenario === 'all' || scenario === 'e2e') await runE2E('e2e', false);
  if (scenario === 'all' || scenario === 'e2e_single') await runE2E('e2e_single', true);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
