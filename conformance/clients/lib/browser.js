// The browser lane: headless Chromium (Debian's `chromium`, never a downloaded
// build) driven by playwright-core, loading the real pusher-js and Laravel Echo
// bundles from node_modules into a page served on 127.0.0.1.
//
// Each page gets helpers on `window`:
//   __log                  every event a client received, as {client, channel, event, data, meta}
//   __clients[name]        the pusher-js (or Echo) instances the test created
// Tests drive the page with page.evaluate() and wait with page.waitForFunction().

import http from 'node:http';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { after } from 'node:test';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);

export const CHROMIUM_PATH = process.env.COMNESTOR_CHROMIUM || '/usr/bin/chromium';

const ASSETS = {
  '/pusher.js': require.resolve('pusher-js/dist/web/pusher-with-encryption.min.js'),
  '/echo.js': require.resolve('laravel-echo/iife'),
};

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>comnestor browser lane</title>
<script src="/pusher.js"></script>
<script src="/echo.js"></script>
<script>
  window.__log = [];
  window.__clients = {};
  window.__record = (client, channel, event, data, meta) =>
    window.__log.push({ client, channel, event, data, meta: meta || null });
  window.__seen = (client, event, channel) =>
    window.__log.filter((e) => e.client === client && e.event === event &&
      (channel === undefined || e.channel === channel));
</script>
</head><body>browser lane</body></html>`;

// Serves the test page and the client bundles.
async function startPageServer() {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://127.0.0.1').pathname;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(PAGE);
    }
    const file = ASSETS[path];
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end('not found');
    }
    res.writeHead(200, { 'content-type': 'application/javascript' });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise((r) => server.close(r)) };
}

// Launches Chromium once per test file; fails loudly when it is missing.
export async function startBrowser() {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: install Debian's package with ` +
        "'apt-get install -y chromium' (.ci/test does this) or set COMNESTOR_CHROMIUM.",
    );
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const pages = await startPageServer();
  after(async () => {
    await browser.close();
    await pages.close();
  });
  return {
    // A fresh page (its own browser context: separate storage, like a new visitor).
    async page() {
      const context = await browser.newContext();
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e));
      await page.goto(pages.url);
      page.errors = errors;
      page.closeContext = () => context.close();
      return page;
    },
  };
}

// pusher-js options for a browser page, pointing at the target server and the
// harness's auth endpoints.
export function browserPusherOptions(env, auth, params = {}) {
  return {
    cluster: 'mt1',
    wsHost: env.host,
    wsPort: env.port,
    wssPort: env.port,
    forceTLS: env.useTLS,
    enabledTransports: ['ws', 'wss'],
    channelAuthorization: { endpoint: auth.channelAuthEndpoint, transport: 'ajax', params },
    userAuthentication: { endpoint: auth.userAuthEndpoint, transport: 'ajax', params },
  };
}

// Waits until `predicate(arg)` is true in the page.
export function until(page, predicate, arg, timeout = 10000) {
  return page.waitForFunction(predicate, arg, { timeout, polling: 25 });
}
