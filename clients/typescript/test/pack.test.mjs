// The package as users get it: `npm pack`, install the tarball into an empty scratch project,
// run the README's producer + worker example against a real sluiced, and type-check a
// TypeScript consumer against the published declarations.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { PKG, Sluiced, TOKEN, tempDir } from './harness.mjs';

const run = promisify(execFile);
let srv;
let root;

before(async () => {
  srv = await new Sluiced({ tokens: ['dev-token'] }).start();
  root = tempDir('sluice-ts-pack-');
});
after(async () => {
  await srv?.destroy();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

function readmeExample() {
  const readme = fs.readFileSync(path.join(PKG, 'README.md'), 'utf8');
  const m = /<!-- example:start -->\s*```js\n([\s\S]*?)```\s*<!-- example:end -->/.exec(readme);
  assert.ok(m, 'README.md has the marked example');
  return m[1];
}

test('npm pack, install into a scratch project, run the README example', { timeout: 180_000 }, async (t) => {
  assert.ok(fs.existsSync(path.join(PKG, 'dist', 'index.js')), 'built (run_tests.sh builds first)');
  // The build already ran (run_tests.sh): pack what it produced without building again.
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', root],
    { cwd: PKG, maxBuffer: 16 << 20 });
  const packed = JSON.parse(stdout)[0];
  const files = packed.files.map((f) => f.path);
  for (const f of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts',
    'dist/worker.js', 'dist/gen/sluice/v1/sluice.js', 'dist/gen/sluice/v1/sluice.d.ts']) {
    assert.ok(files.includes(f), `tarball has ${f}`);
  }
  assert.ok(!files.some((f) => /^(src|test|scripts|bench|node_modules|\.tools)\//.test(f)),
    `tarball has only the built package: ${files.filter((f) => !f.startsWith('dist/')).join(', ')}`);
  t.diagnostic(`${packed.filename}: ${files.length} files, ${packed.size} bytes`);

  const scratch = path.join(root, 'scratch');
  fs.mkdirSync(scratch);
  await run('npm', ['init', '-y'], { cwd: scratch });
  const started = Date.now();
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline',
    path.join(root, packed.filename)], { cwd: scratch, maxBuffer: 16 << 20 });
  t.diagnostic(`npm install <tarball> took ${Date.now() - started} ms`);

  fs.writeFileSync(path.join(scratch, 'example.mjs'), readmeExample());
  const out = await run(process.execPath, ['example.mjs'], {
    cwd: scratch, timeout: 60_000,
    env: { ...process.env, SLUICE_ADDRESS: srv.grpc, SLUICE_TOKEN: 'dev-token' },
  });
  const line = out.stdout.trim().split('\n').at(-1);
  assert.match(line, /^[0-9a-f-]{36} succeeded \{ sent: true, to: 'ada@example\.com', subject: 'Welcome' \}$/);
  assert.equal(out.stderr, '');

  // A TypeScript consumer compiles against the published declarations.
  fs.writeFileSync(path.join(scratch, 'consumer.ts'), `
    import { SluiceClient, Worker, NotFoundError, type JobContext, type Job } from '@sluice/client';
    const c = new SluiceClient({ address: 'x:1', token: 't' });
    const w = new Worker(c, { queues: ['a'], concurrency: 2, handler: (ctx: JobContext) => ctx.json<{ n: number }>().n + 1 });
    w.on('completed', (task, result: Buffer, ms: number) => void [task.jobId, result, ms]);
    export async function f(): Promise<Job | undefined> {
      try { return await c.job('id').get({ includeAttempts: true }); }
      catch (e) { if (e instanceof NotFoundError) return undefined; throw e; }
    }
  `);
  fs.writeFileSync(path.join(scratch, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true,
      noEmit: true, types: ['node'], typeRoots: [path.join(PKG, 'node_modules', '@types')],
    },
    files: ['consumer.ts'],
  }));
  await run(process.execPath, [path.join(PKG, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'],
    { cwd: scratch });
});
