'use strict';
// The package builds itself from its tarball: `npm pack`, install the tarball into an empty
// scratch project (compiling the addon and the vendored engine sources there), then require it
// and run a job through it. Slow (a full native build): skipped with SLUICE_NODE_SKIP_PACK=1.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const pkgDir = path.resolve(__dirname, '..');
// A fixed scratch path, so that ccache (when CXX uses it) hits on later runs.
const root = path.join(os.tmpdir(), 'sluice-node-pack-test');

function run(cmd, args, cwd, env = {}) {
  return execFileSync(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 << 20,
  });
}

test('npm pack, install the tarball into a scratch project, require it',
  { skip: process.env.SLUICE_NODE_SKIP_PACK === '1', timeout: 600_000 }, (t) => {
    fs.rmSync(root, { recursive: true, force: true });
    const scratch = path.join(root, 'scratch');
    fs.mkdirSync(scratch, { recursive: true });
    t.after(() => fs.rmSync(root, { recursive: true, force: true }));

    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', root], pkgDir));
    const tarball = path.join(root, packed[0].filename);
    assert.ok(fs.existsSync(tarball));
    assert.ok(!fs.existsSync(path.join(pkgDir, 'native')), 'postpack removes the vendored copy');
    const names = packed[0].files.map((f) => f.path);
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'binding.gyp', 'src/addon.cc',
      'native/capi/include/sluice/sluice.h', 'native/core/src/storage.proto']) {
      assert.ok(names.includes(f), `tarball lacks ${f}`);
    }
    assert.ok(!names.some((f) => f.startsWith('build/') || f.startsWith('node_modules/')));

    run('npm', ['init', '-y'], scratch);
    const started = Date.now();
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], scratch);
    t.diagnostic(`npm install <tarball> took ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const script = `
      const s = require('sluice-engine');
      const dir = require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'sl-'));
      (async () => {
        const e = await s.Engine.open(dir);
        const { id } = await e.enqueue({ queue: 'q', payload: 'hi' });
        const { tasks } = await e.lease({ queue: 'q', workerId: 'w', waitMs: 1000 });
        await e.complete(tasks[0], 'done');
        const r = await e.getResult(id);
        await e.close();
        require('fs').rmSync(dir, { recursive: true, force: true });
        console.log(JSON.stringify({ version: s.version(), status: r.status,
          result: r.result.toString(), payload: tasks[0].payload.toString() }));
      })().catch((err) => { console.error(err); process.exit(1); });`;
    const out = JSON.parse(run(process.execPath, ['-e', script], scratch).trim());
    assert.deepEqual(out, { version: '0.1.0', status: 'succeeded', result: 'done', payload: 'hi' });
    const installed = path.join(scratch, 'node_modules', 'sluice-engine');
    assert.ok(fs.existsSync(path.join(installed, 'build', 'Release', 'sluice_node.node')));
    assert.ok(fs.existsSync(path.join(scratch, 'node_modules', 'node-addon-api')));
  });
