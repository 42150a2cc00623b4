'use strict';
// Shared test helpers: a temporary store per test and a JSON payload shortcut.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const sluice = require('..');

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// Opens an engine in a fresh directory, closed when the test ends.
async function openTemp(t, options = { durability: 'async' }) {
  const dir = tempDir(t);
  const engine = await sluice.Engine.open(dir, options);
  t.after(() => engine.close());
  return { engine, dir };
}

module.exports = { sluice, tempDir, openTemp };
