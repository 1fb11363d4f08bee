// Client factory and per-test scopes. Every client created through a scope is
// disconnected when the test ends (t.after), and everything left over is
// cleaned up when the file ends, so `node --test` never hangs on open sockets.

import { after } from 'node:test';
import { randomBytes } from 'node:crypto';
import PusherClient from 'pusher-js'; // the Node build; its default export bundles tweetnacl
import PusherServer from 'pusher';
import EchoModule from 'laravel-echo';
import nacl from 'tweetnacl';

import { env } from './env.js';
import { startAuthServer } from './auth-server.js';
import { deferred, waitFor, DEFAULT_TIMEOUT_MS } from './wait.js';

export { env };
export const Echo = EchoModule;
export { PusherClient, PusherServer };

PusherClient.logToConsole = env.debug;

const RUN_ID = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
let counter = 0;

// A unique channel/user name per call, so tests never share server state.
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${RUN_ID}-${counter}`;
}

export function createSdk(overrides = {}) {
  return new PusherServer({
    appId: env.appId,
    key: env.key,
    secret: env.secret,
    host: env.host,
    port: String(env.port),
    useTLS: env.useTLS,
    encryptionMasterKeyBase64: env.masterKeyBase64,
    timeout: 10000,
    ...overrides,
  });
}

// Options that make pusher-js talk to the target server from Node.
export function pusherOptions(auth, { userId, userInfo, watchlist, deny, extra = {} } = {}) {
  const params = {};
  if (userId !== undefined) params.user_id = String(userId);
  if (userInfo !== undefined) params.user_info = JSON.stringify(userInfo);
  if (watchlist !== undefined) params.watchlist = watchlist.join(',');
  if (deny) params.deny = '1';
  return {
    cluster: 'mt1',
    wsHost: env.host,
    wsPort: env.port,
    wssPort: env.port,
    forceTLS: env.useTLS,
    enabledTransports: ['ws'],
    nacl, // explicit, in case the build in use does not bundle it
    channelAuthorization: { endpoint: auth.channelAuthEndpoint, transport: 'ajax', params: { ...params } },
    userAuthentication: { endpoint: auth.userAuthEndpoint, transport: 'ajax', params: { ...params } },
    ...extra,
  };
}

// Resolves once the pusher-js connection is `connected`; rejects with the
// last state and error otherwise.
export async function waitConnected(pusher, timeoutMs = DEFAULT_TIMEOUT_MS) {
  if (pusher.connection.state === 'connected') return pusher;
  const errors = [];
  const onError = (e) => errors.push(e);
  pusher.connection.bind('error', onError);
  try {
    await waitFor(pusher.connection, 'connected', timeoutMs);
  } catch (err) {
    err.message += ` (connection state: ${pusher.connection.state}; errors: ${JSON.stringify(errors).slice(0, 500)})`;
    throw err;
  } finally {
    pusher.connection.unbind('error', onError);
  }
  return pusher;
}

// Subscribes and waits for pusher:subscription_succeeded; rejects on
// pusher:subscription_error or timeout.
export function subscribe(pusher, name, timeoutMs = DEFAULT_TIMEOUT_MS) {
  const channel = pusher.subscribe(name);
  return subscribed(channel, timeoutMs).then(() => channel);
}

export function subscribed(channel, timeoutMs = DEFAULT_TIMEOUT_MS) {
  if (channel.subscribed) return Promise.resolve(channel);
  const d = deferred(`pusher:subscription_succeeded on ${channel.name}`, timeoutMs);
  const ok = () => d.resolve(channel);
  const fail = (e) => d.reject(new Error(`subscription to ${channel.name} failed: ${JSON.stringify(e)}`));
  channel.bind('pusher:subscription_succeeded', ok);
  channel.bind('pusher:subscription_error', fail);
  const off = () => {
    channel.unbind('pusher:subscription_succeeded', ok);
    channel.unbind('pusher:subscription_error', fail);
  };
  d.promise.then(off, off);
  return d.promise;
}

// Ordering fence: triggers an event through the HTTP API and waits until every
// given channel received it. Anything the server would have sent to those
// clients before the fence has been delivered by the time this resolves.
export async function fence(sdk, channels, timeoutMs = DEFAULT_TIMEOUT_MS) {
  const list = Array.isArray(channels) ? channels : [channels];
  const marker = uid('fence');
  const waits = list.map((ch) => waitFor(ch, 'conformance-fence', timeoutMs, (d) => d && d.marker === marker));
  await sdk.trigger([...new Set(list.map((c) => c.name))], 'conformance-fence', { marker });
  await Promise.all(waits);
}

export async function createHarness() {
  const sdk = createSdk();
  const auth = await startAuthServer(sdk);
  const live = new Set();

  const closeClient = (c) => {
    if (!live.has(c)) return;
    live.delete(c);
    try {
      c.disconnect();
    } catch {
      // already gone
    }
  };

  after(async () => {
    for (const c of [...live]) closeClient(c);
    await auth.close();
  });

  const harness = {
    env,
    sdk,
    auth,
    uid,
    // A per-test scope: clients made through it are disconnected at test end.
    scope(t) {
      const mine = new Set();
      const scope = {
        // A pusher-js client (pusher-js connects on construction); resolves once
        // connected, or immediately with {wait: false}.
        async pusher(opts = {}) {
          const client = new PusherClient(env.key, pusherOptions(auth, opts));
          live.add(client);
          mine.add(client);
          if (opts.wait === false) return client;
          return waitConnected(client);
        },
        // A Laravel Echo instance, connected. broadcaster: 'reverb' | 'pusher'.
        async echo(broadcaster, { userId, userInfo, client } = {}) {
          const headers = {};
          if (userId !== undefined) headers['X-Test-User-Id'] = String(userId);
          if (userInfo !== undefined) headers['X-Test-User-Info'] = JSON.stringify(userInfo);
          const base = {
            key: env.key,
            wsHost: env.host,
            wsPort: env.port,
            wssPort: env.port,
            forceTLS: env.useTLS,
            enabledTransports: ['ws', 'wss'],
            authEndpoint: auth.channelAuthEndpoint,
            auth: { headers: { ...headers } },
            userAuthentication: { endpoint: auth.userAuthEndpoint, headers: { ...headers } },
          };
          let options;
          if (broadcaster === 'reverb') {
            options = { broadcaster: 'reverb', ...base, Pusher: PusherClient };
          } else if (broadcaster === 'pusher') {
            options = { broadcaster: 'pusher', cluster: 'mt1', ...base, Pusher: PusherClient };
          } else {
            throw new Error(`unknown broadcaster ${broadcaster}`);
          }
          if (client) {
            // Echo's documented alternative: hand it a ready pusher-js instance.
            delete options.Pusher;
            options.client = client;
          }
          const echo = new Echo(options);
          const handle = { disconnect: () => echo.disconnect() };
          live.add(handle);
          mine.add(handle);
          await waitConnected(echo.connector.pusher);
          return echo;
        },
        close() {
          for (const c of mine) closeClient(c);
          mine.clear();
        },
      };
      t.after(() => scope.close());
      return scope;
    },
  };
  return harness;
}
