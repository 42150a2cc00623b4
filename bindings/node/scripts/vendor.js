'use strict';
// `npm pack` hooks: copy the engine's C++ sources (core/ and capi/) into native/ so the tarball
// builds itself on `npm install` away from the repository; `clean` removes the copy again.
// native/ is generated: never edit it (it is .gitignored).
const fs = require('fs');
const path = require('path');

const pkgDir = path.resolve(__dirname, '..');
const repo = path.resolve(pkgDir, '..', '..');
const dest = path.join(pkgDir, 'native');

const keep = (src) => {
  const base = path.basename(src);
  if (fs.statSync(src).isDirectory()) return true;
  return /\.(cc|h|proto|map)$/.test(base);
};

const cmd = process.argv[2];
if (cmd === 'copy') {
  fs.rmSync(dest, { recursive: true, force: true });
  for (const part of ['core/include', 'core/src', 'capi/include', 'capi/src']) {
    fs.cpSync(path.join(repo, part), path.join(dest, part), { recursive: true, filter: keep });
  }
} else if (cmd === 'clean') {
  fs.rmSync(dest, { recursive: true, force: true });
} else {
  process.stderr.write('usage: vendor.js copy|clean\n');
  process.exit(2);
}
