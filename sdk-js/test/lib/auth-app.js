// The app backend pusher-js talks to: the Hono auth endpoints from the README, served on a
// loopback port with @hono/node-server. Who the user is comes from the `user_id` parameter the
// test passes through pusher-js (a real app would read its session instead).
import { Hono } from 'hono';
import { serve } from '@hono/node-server';

import { ComnestorError } from '../../dist/index.js';

export function authApp(comnestor) {
  const app = new Hono();

  app.post('/pusher/auth', async (c) => {
    const form = await c.req.parseBody();
    const socketId = String(form.socket_id ?? '');
    const channel = String(form.channel_name ?? '');
    const userId = form.user_id === undefined ? undefined : String(form.user_id);
    if (form.deny === '1') return c.text('Forbidden', 403);
    try {
      if (channel.startsWith('presence-')) {
        if (!userId) return c.text('Forbidden', 403);
        return c.json(await comnestor.authorizeChannel(socketId, channel, { user_id: userId, user_info: { name: `User ${userId}` } }));
      }
      return c.json(await comnestor.authorizeChannel(socketId, channel));
    } catch (err) {
      if (err instanceof ComnestorError) return c.text(err.message, 400);
      throw err;
    }
  });

  app.post('/pusher/user-auth', async (c) => {
    const form = await c.req.parseBody();
    if (!form.user_id) return c.text('Forbidden', 403);
    return c.json(await comnestor.authenticateUser(String(form.socket_id), { id: String(form.user_id), user_info: { name: `User ${form.user_id}` } }));
  });

  return app;
}

export async function startAuthApp(comnestor) {
  const app = authApp(comnestor);
  const requests = [];
  const server = await new Promise((resolve) => {
    const s = serve(
      {
        fetch: async (req) => {
          const res = await app.fetch(req);
          requests.push({ path: new URL(req.url).pathname, status: res.status });
          return res;
        },
        hostname: '127.0.0.1',
        port: 0,
      },
      () => resolve(s),
    );
  });
  const { port } = server.address();
  const base = `http://127.0.0.1:${port}`;
  return {
    channelAuthEndpoint: `${base}/pusher/auth`,
    userAuthEndpoint: `${base}/pusher/user-auth`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
