// A local webhook receiver for the suites. Every request is checked with the
// `pusher` package's own validator, `pusher.webhook(request).isValid()`, exactly
// as an app would check it; invalid requests are kept so a test can fail on them.

import http from 'node:http';

import { DEFAULT_TIMEOUT_MS } from './wait.js';

// Where the server under test sends webhooks (COMNESTOR_APP_WEBHOOK_URL of the
// server). Fails loudly when unset: a missing variable is a broken setup.
export function webhookUrl() {
  const url = process.env.COMNESTOR_WEBHOOK_URL;
  if (!url) {
    throw new Error(
      'COMNESTOR_WEBHOOK_URL is not set: start the server with COMNESTOR_APP_WEBHOOK_URL ' +
        'pointing at a local port and export the same URL here (see .ci/test)',
    );
  }
  return new URL(url);
}

export async function startWebhookReceiver(sdk) {
  const url = webhookUrl();
  const hooks = [];
  const invalid = [];
  const waiters = new Set();

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const webhook = sdk.webhook({ headers: req.headers, rawBody });
      if (req.method !== 'POST' || req.url !== url.pathname || !webhook.isValid()) {
        invalid.push({ method: req.method, url: req.url, headers: req.headers, rawBody });
      } else {
        hooks.push({ time: webhook.getTime(), events: webhook.getEvents(), headers: req.headers });
      }
      res.writeHead(200).end();
      for (const w of [...waiters]) w();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(url.port), url.hostname, resolve);
  });

  const events = () => hooks.flatMap((h) => h.events);

  return {
    hooks,
    invalid,
    events,
    // Resolves with every event received so far once one matches `pred`.
    waitFor(pred, label, timeoutMs = DEFAULT_TIMEOUT_MS) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (events().some(pred)) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(events());
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for webhook ${label}; got ${JSON.stringify(events()).slice(-2000)}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// Whether `e` is the webhook event `name` on `channel`.
export const is = (name, channel) => (e) => e.name === name && e.channel === channel;
