// A tiny app backend (node:http on 127.0.0.1, ephemeral port) that pusher-js
// and Laravel Echo call for channel authorization and user authentication.
// It signs everything with the real `pusher` server SDK.
//
// The tests control the answers through request parameters (sent by pusher-js
// in the urlencoded body via `params`) or headers (`headers`):
//   user_id       / X-Test-User-Id     presence user id and signed-in user id
//   user_info     / X-Test-User-Info   JSON user_info (default {"name":"User <id>"})
//   watchlist     / X-Test-Watchlist   comma-separated watched user ids (user auth)
//   deny=1        / X-Test-Deny: 1     answer 403
// and through `server.denyChannel(name)`.

import http from 'node:http';

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseBody(req, raw) {
  const type = String(req.headers['content-type'] || '');
  if (type.includes('application/json')) {
    try {
      return JSON.parse(raw || '{}');
    } catch {
      return {};
    }
  }
  // pusher-js sends application/x-www-form-urlencoded.
  return Object.fromEntries(new URLSearchParams(raw));
}

function pick(body, req, param, header) {
  if (body[param] !== undefined && body[param] !== '') return String(body[param]);
  const h = req.headers[header];
  if (h !== undefined && h !== '') return String(h);
  return undefined;
}

function parseJSON(text, what) {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`auth server: ${what} is not valid JSON: ${text}`);
  }
}

export async function startAuthServer(sdk) {
  const requests = [];
  const deniedChannels = new Set();

  const send = (res, status, payload) => {
    const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
    res.writeHead(status, {
      'content-type': typeof payload === 'string' ? 'text/plain' : 'application/json',
      'content-length': Buffer.byteLength(body),
      // pusher-js in Node does not need CORS, but a browser harness would.
      'access-control-allow-origin': '*',
    });
    res.end(body);
  };

  const handle = async (req, res) => {
    const path = new URL(req.url, 'http://127.0.0.1').pathname;
    const raw = await readBody(req);
    const body = parseBody(req, raw);
    const record = { path, body, headers: req.headers, status: 0 };
    requests.push(record);

    if (req.method === 'OPTIONS') {
      record.status = 204;
      res.writeHead(204, {
        'access-control-allow-origin': '*',
        'access-control-allow-headers': '*',
        'access-control-allow-methods': 'POST, OPTIONS',
      });
      res.end();
      return;
    }
    if (req.method !== 'POST') {
      record.status = 405;
      return send(res, 405, 'method not allowed');
    }

    const socketId = body.socket_id;
    const deny = pick(body, req, 'deny', 'x-test-deny') === '1';
    const userId = pick(body, req, 'user_id', 'x-test-user-id');
    const userInfoText = pick(body, req, 'user_info', 'x-test-user-info');
    const userInfo = userInfoText !== undefined ? parseJSON(userInfoText, 'user_info') : userId !== undefined ? { name: `User ${userId}` } : undefined;

    if (path === '/pusher/auth' || path === '/broadcasting/auth') {
      const channel = body.channel_name;
      if (deny || deniedChannels.has(channel)) {
        record.status = 403;
        return send(res, 403, 'Forbidden (test auth server)');
      }
      if (!socketId || !channel) {
        record.status = 400;
        return send(res, 400, 'socket_id and channel_name are required');
      }
      let payload;
      if (channel.startsWith('presence-')) {
        if (userId === undefined) {
          record.status = 400;
          return send(res, 400, 'presence auth needs user_id (param) or X-Test-User-Id (header)');
        }
        payload = sdk.authorizeChannel(socketId, channel, { user_id: userId, user_info: userInfo });
      } else {
        // private- and private-encrypted- (the SDK adds shared_secret).
        payload = sdk.authorizeChannel(socketId, channel);
      }
      record.status = 200;
      record.response = payload;
      return send(res, 200, payload);
    }

    if (path === '/pusher/user-auth' || path === '/broadcasting/user-auth') {
      if (deny) {
        record.status = 403;
        return send(res, 403, 'Forbidden (test auth server)');
      }
      if (!socketId || userId === undefined) {
        record.status = 400;
        return send(res, 400, 'user auth needs socket_id and user_id');
      }
      const userData = { id: userId, user_info: userInfo };
      const watchlist = pick(body, req, 'watchlist', 'x-test-watchlist');
      if (watchlist !== undefined) userData.watchlist = watchlist.split(',').filter(Boolean);
      const payload = sdk.authenticateUser(socketId, userData);
      record.status = 200;
      record.response = payload;
      return send(res, 200, payload);
    }

    record.status = 404;
    return send(res, 404, 'not found');
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      try {
        send(res, 500, `auth server error: ${err.message}`);
      } catch {
        // response already sent
      }
    });
  });
  // pusher-js's xmlhttprequest does not reuse connections, but be safe.
  server.keepAliveTimeout = 1000;

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const base = `http://127.0.0.1:${port}`;

  return {
    base,
    channelAuthEndpoint: `${base}/pusher/auth`,
    userAuthEndpoint: `${base}/pusher/user-auth`,
    requests,
    denyChannel(name) {
      deniedChannels.add(name);
    },
    async close() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
