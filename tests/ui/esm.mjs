// What the browser tests share: esm started on free loopback ports (ESM_BIN, default
// target/debug/esm; memory store, dummy backend, basic auth), the broker API called
// with its credentials, and Debian's headless Chromium.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const root = path.resolve(import.meta.dirname, '..', '..');
export const credentials = { username: 'admin', password: 's3cret-ui' };

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

// Starts esm and waits until it serves `ready` (a path); `stop()` ends it.
export async function startEsm(ready) {
  const bin = process.env.ESM_BIN ?? path.join(root, 'target', 'debug', 'esm');
  const [port, checkPort] = [await freePort(), await freePort()];
  const api = `http://127.0.0.1:${port}`;
  const child = spawn(bin, [], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      PATH: process.env.PATH, ESM_IP: '127.0.0.1', ESM_PORT: `${port}`, ESM_CHECK_IP: '127.0.0.1',
      ESM_CHECK_PORT: `${checkPort}`, ESM_STORE: 'memory', ESM_BACKENDS: 'dummy',
      ESM_BROKER_USERNAME: credentials.username, ESM_BROKER_PASSWORD: credentials.password, RUST_LOG: 'warn',
    },
  });
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${api}${ready}`, { headers: { Authorization: auth() } })).ok) break; } catch { /* not up yet */ }
    if (i > 200) throw new Error('esm did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { api, stop: () => child.kill('SIGTERM') };
}

function auth() {
  return 'Basic ' + Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
}

// A broker API call; `[status, body]`.
export async function call(api, method, route, body) {
  const response = await fetch(`${api}${route}`, {
    method,
    headers: { Authorization: auth(), 'X-Broker-API-Version': '2.17', 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return [response.status, await response.json().catch(() => null)];
}

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
}
