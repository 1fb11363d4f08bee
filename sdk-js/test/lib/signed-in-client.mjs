// A pusher-js client in its own process, signed in as argv[4], that reports its connection
// state on stdout as JSON lines. Used for terminateUserConnections: after a server-side close,
// pusher-js's bundled faye-websocket leaves a 30 s close timer running (Client.close ->
// CLOSE_TIMEOUT), which would keep the test process alive; a child can simply be killed.
import PusherClient from 'pusher-js';

const [wsUrl, key, userAuthEndpoint, userId] = process.argv.slice(2);
const url = new URL(wsUrl);
const client = new PusherClient(key, {
  cluster: 'mt1',
  wsHost: url.hostname,
  wsPort: Number(url.port),
  forceTLS: false,
  enabledTransports: ['ws'],
  userAuthentication: { endpoint: userAuthEndpoint, transport: 'ajax', params: { user_id: userId } },
});
const say = (msg) => process.stdout.write(`${JSON.stringify(msg)}\n`);
client.connection.bind('state_change', (s) => say({ state: s.current }));
client.connection.bind('connected', () => client.signin());
const timer = setInterval(() => {
  if (client.user.serverToUserChannel?.subscribed) {
    clearInterval(timer);
    say({ signedIn: client.user.user_data.id });
  }
}, 20);
