// Test harness: starts a real sluiced (build/server/sluiced) on loopback ports over a temporary
// data directory, and drives toxiproxy (test/toxiproxy.mjs) between clients and it.
//
// Environment: SLUICED (the binary; default ../../build/server/sluiced).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PKG = path.resolve(here, '..');
export const ROOT = path.resolve(PKG, '..', '..');
export const SLUICED = process.env.SLUICED ?? path.join(ROOT, 'build', 'server', 'sluiced');
export const TOKEN = 'ts-client-test-token-0123456789';

/** A temporary directory removed by the returned cleanup. */
export function tempDir(prefix = 'sluice-ts-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Servers still running when the test process exits (a crash, a failed hook) are killed, so no
// sluiced outlives its test file.
const live = new Set();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** One sluiced process. */
export class Sluiced {
  constructor({ dataDir, tokens = [TOKEN], args = [], durability = 'async', grpcListen = '127.0.0.1:0' } = {}) {
    this.grpcListen = grpcListen;
    this.root = dataDir ?? tempDir('sluiced-ts-');
    this.dataDir = path.join(this.root, 'data');
    this.tokens = tokens;
    this.args = args;
    this.durability = durability;
    this.proc = null;
    this.grpc = '';
    this.http = '';
  }

  async start(timeoutMs = 20_000) {
    const portFile = path.join(this.root, 'ports.json');
    fs.rmSync(portFile, { force: true });
    const args = ['--data-dir', this.dataDir, '--grpc-listen', this.grpcListen,
      '--http-listen', '127.0.0.1:0', '--port-file', portFile, '--durability', this.durability,
      '--log-level', 'warn'];
    for (const t of this.tokens) args.push('--token', t);
    args.push(...this.args);
    const log = fs.openSync(path.join(this.root, 'sluiced.log'), 'a');
    const proc = spawn(SLUICED, args, { stdio: ['ignore', log, log] });
    this.proc = proc;
    fs.closeSync(log);
    live.add(proc);
    const exited = new Promise((r) => proc.once('exit', (code) => { live.delete(proc); r(code); }));
    this.exited = exited;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) {
        throw new Error(`sluiced exited with ${this.proc.exitCode}: ${this.log().slice(-2000)}`);
      }
      if (fs.existsSync(portFile)) {
        const ports = JSON.parse(fs.readFileSync(portFile, 'utf8'));
        this.grpc = ports.grpc;
        this.http = ports.http;
        return this;
      }
      await delay(20);
    }
    throw new Error('sluiced did not write its port file');
  }

  log() {
    try {
      return fs.readFileSync(path.join(this.root, 'sluiced.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 15_000);
      await this.exited;
      clearTimeout(t);
    }
  }

  async destroy() {
    await this.stop();
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** Resolves when cond() is truthy, polling every `every` ms (test code only). */
export async function until(cond, { timeoutMs = 10_000, every = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(every);
  }
}

/** A free loopback TCP port (bound then released). */
export async function freePort() {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
