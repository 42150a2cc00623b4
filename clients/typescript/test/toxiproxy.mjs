// Drives a toxiproxy server (installed by scripts/install-toxiproxy.sh) through its HTTP API:
// one proxy per upstream, toxics added and removed by name.
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { PKG, freePort } from './harness.mjs';

export function toxiproxyBinary() {
  if (process.env.TOXIPROXY_SERVER) return process.env.TOXIPROXY_SERVER;
  return execFileSync(path.join(PKG, 'scripts', 'install-toxiproxy.sh'), { encoding: 'utf8' }).trim();
}

export class Toxiproxy {
  async start() {
    this.port = await freePort();
    this.api = `http://127.0.0.1:${this.port}`;
    this.proc = spawn(toxiproxyBinary(), ['-host', '127.0.0.1', '-port', String(this.port)],
      { stdio: ['ignore', 'ignore', 'ignore'] });
    this.exited = new Promise((r) => this.proc.once('exit', r));
    const proc = this.proc;
    process.on('exit', () => proc.kill('SIGKILL'));
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const r = await fetch(`${this.api}/version`);
        if (r.ok) return this;
      } catch { /* not up yet */ }
      if (this.proc.exitCode !== null) throw new Error('toxiproxy-server exited');
      if (Date.now() > deadline) throw new Error('toxiproxy-server did not start');
      await delay(20);
    }
  }

  async request(method, p, body) {
    const r = await fetch(`${this.api}${p}`, {
      method, headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`toxiproxy ${method} ${p}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** Creates a proxy from a free local port to `upstream`; resolves with its host:port. */
  async proxy(name, upstream) {
    const port = await freePort();
    await this.request('POST', '/proxies',
      { name, listen: `127.0.0.1:${port}`, upstream, enabled: true });
    return `127.0.0.1:${port}`;
  }

  /** Adds a toxic: type latency | reset_peer | timeout | limit_data | ..., stream up/downstream. */
  addToxic(proxy, { name, type, stream = 'downstream', toxicity = 1, attributes = {} }) {
    return this.request('POST', `/proxies/${proxy}/toxics`,
      { name, type, stream, toxicity, attributes });
  }

  removeToxic(proxy, name) {
    return this.request('DELETE', `/proxies/${proxy}/toxics/${name}`);
  }

  /** Enables or disables a proxy (disabled: connections refused and existing ones closed). */
  setEnabled(proxy, enabled) {
    return this.request('POST', `/proxies/${proxy}`, { enabled });
  }

  async toxics(proxy) {
    return this.request('GET', `/proxies/${proxy}/toxics`);
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      this.proc.kill('SIGTERM');
      await this.exited;
    }
  }
}
