// ChurnMap (the Worker's table of running tasks): it behaves as a Map across its renewals, and
// it does not make every value outlive the young generation the way a long-lived Map does.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ChurnMap } from '../dist/churn-map.js';

const MODULE = fileURLToPath(new URL('../dist/churn-map.js', import.meta.url));

describe('ChurnMap', () => {
  test('answers as a Map does across many renewals (random operations, fixed seed)', () => {
    let seed = 12345;
    const rand = (n) => {
      seed = (seed * 48271) % 2147483647;  // exact in doubles (Park-Miller)
      return seed % n;
    };
    const cm = new ChurnMap();
    const ref = new Map();
    for (let i = 0; i < 20000; ++i) {
      const key = `k${rand(300)}`;
      const op = rand(4);
      if (op <= 1) {
        cm.set(key, i);
        ref.set(key, i);
      } else if (op === 2) {
        assert.equal(cm.delete(key), ref.delete(key), `delete ${key} at ${i}`);
      } else {
        assert.equal(cm.get(key), ref.get(key), `get ${key} at ${i}`);
        assert.equal(cm.has(key), ref.has(key), `has ${key} at ${i}`);
      }
      assert.equal(cm.size, ref.size);
    }
    // Insertion order survives the renewals, as Map.values() gives it.
    assert.deepEqual(cm.values(), [...ref.values()]);
    // values() is a copy: changing the map while visiting it is safe.
    for (const v of cm.values()) {
      for (const [k, w] of ref) if (w === v) { cm.delete(k); ref.delete(k); break; }
    }
    assert.equal(cm.size, 0);
    assert.deepEqual(cm.values(), []);
  });

  test('keeps churned values in the young generation, where a long-lived Map promotes them', () => {
    // A child process: a table made old (it lives through several scavenges), then a million
    // set/delete pairs with 32 values alive at a time, each holding ~1 KiB. Counts the full
    // (mark-compact) collections the churn caused: with a plain Map, V8's link from each
    // outgrown table to the next keeps every value alive until a full collection.
    const script = `
      import { PerformanceObserver, constants } from 'node:perf_hooks';
      const { ChurnMap } = await import(${JSON.stringify(MODULE)});
      const m = process.argv[1] === 'map' ? new Map() : new ChurnMap();
      for (let i = 0; i < 32; ++i) m.set('warm-' + i, { i });
      const ring = new Array(1024);  // garbage that escapes, so the compiler keeps allocating it
      let junk = 0;
      for (let i = 0; i < 3e6; ++i) {
        ring[i & 1023] = [i, i + 1];
        junk += ring[(i * 7) & 1023]?.length ?? 0;
      }
      for (let i = 0; i < 32; ++i) m.delete('warm-' + i);
      let major = 0;
      const obs = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) ++major;
      });
      obs.observe({ entryTypes: ['gc'] });
      for (let i = 0; i < 1e6; ++i) {
        m.set('task-' + i, { id: i, body: new Array(120).fill(i), tag: 'x' + i });
        if (i >= 32) m.delete('task-' + (i - 32));
      }
      await new Promise((r) => setTimeout(r, 50));
      obs.disconnect();
      console.log(JSON.stringify({ major, junk: junk > 0 }));
    `;
    const env = { ...process.env };
    delete env.NODE_OPTIONS;  // the heap's default sizes
    const run = (kind) => JSON.parse(execFileSync(process.execPath,
      ['--input-type=module', '-e', script, kind], { encoding: 'utf8', env })).major;
    const withMap = run('map');
    const withChurnMap = run('churn');
    // The plain Map is the control: it shows the effect this test guards against is real here.
    assert.ok(withMap >= 10, `a long-lived Map caused only ${withMap} full collections`);
    assert.ok(withChurnMap <= 3, `ChurnMap caused ${withChurnMap} full collections (Map: ${withMap})`);
  });
});
