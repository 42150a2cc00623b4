'use strict';
// Resolves the C++ sources the addon compiles (binding.gyp calls this at configure time).
//
// Inside the repository the sources are ../../core and ../../capi. A packed tarball carries a
// copy in native/ (scripts/vendor.js, run by `npm pack`), so `npm install <tarball>` builds
// anywhere. core/src/storage.proto is compiled with the system protoc into gen/; the files are
// rewritten only when their content changes, so incremental builds stay incremental.
//
//   node scripts/native.js sources    # .cc files, relative to the package directory
//   node scripts/native.js includes   # include directories
//   node scripts/native.js gen        # run protoc; prints nothing
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const pkgDir = path.resolve(__dirname, '..');

function sourceRoot() {
  const vendored = path.join(pkgDir, 'native');
  if (fs.existsSync(path.join(vendored, 'core', 'src'))) return vendored;
  const repo = path.resolve(pkgDir, '..', '..');
  if (fs.existsSync(path.join(repo, 'core', 'src')) && fs.existsSync(path.join(repo, 'capi'))) {
    return repo;
  }
  throw new Error('sluice-engine: neither native/ nor ../../core and ../../capi exist');
}

function rel(p) {
  return path.relative(pkgDir, p).split(path.sep).join('/');
}

function ccFiles(dir) {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.cc')).sort().map((f) => path.join(dir, f));
}

const genDir = path.join(pkgDir, 'gen');

function generate() {
  const root = sourceRoot();
  const protoDir = path.join(root, 'core', 'src');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-protoc-'));
  try {
    execFileSync('protoc', [`--cpp_out=${tmp}`, `-I${protoDir}`, path.join(protoDir, 'storage.proto')],
      { stdio: ['ignore', 'ignore', 'inherit'] });
    fs.mkdirSync(genDir, { recursive: true });
    for (const f of fs.readdirSync(tmp)) {
      const next = fs.readFileSync(path.join(tmp, f));
      const dest = path.join(genDir, f);
      if (fs.existsSync(dest) && fs.readFileSync(dest).equals(next)) continue;
      fs.writeFileSync(dest, next);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const cmd = process.argv[2];
const root = sourceRoot();
if (cmd === 'sources') {
  const files = [
    ...ccFiles(path.join(root, 'core', 'src')),
    ...ccFiles(path.join(root, 'capi', 'src')),
    path.join(genDir, 'storage.pb.cc'),
  ];
  process.stdout.write(files.map(rel).join('\n') + '\n');
} else if (cmd === 'includes') {
  const dirs = [
    path.join(root, 'capi', 'include'),
    path.join(root, 'core', 'include'),
    path.join(root, 'core', 'src'),
    genDir,
  ];
  process.stdout.write(dirs.map(rel).join('\n') + '\n');
} else if (cmd === 'gen') {
  generate();
} else {
  process.stderr.write('usage: native.js sources|includes|gen\n');
  process.exit(2);
}
