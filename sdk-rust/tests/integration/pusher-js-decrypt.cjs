// Subscribes with pusher-js to an encrypted channel through an auth endpoint, and prints one
// JSON line when subscribed and one with the decrypted data of the first `eventName` event.
// Usage: node pusher-js-decrypt.cjs <host> <port> <key> <auth endpoint> <channel> <event>
// Run with NODE_PATH pointing at conformance/clients/node_modules.
const Pusher = require('pusher-js');
const nacl = require('tweetnacl');

const [host, port, key, authEndpoint, channelName, eventName] = process.argv.slice(2);
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

const pusher = new Pusher(key, {
  cluster: 'mt1',
  wsHost: host,
  wsPort: Number(port),
  wssPort: Number(port),
  forceTLS: false,
  enabledTransports: ['ws'],
  channelAuthorization: { endpoint: authEndpoint, transport: 'ajax' },
  nacl,
});
const channel = pusher.subscribe(channelName);
channel.bind('pusher:subscription_succeeded', () => print({ subscribed: true }));
channel.bind('pusher:subscription_error', (error) => {
  print({ error: String(error && (error.error || error.type)) });
  process.exit(1);
});
channel.bind(eventName, (data) => {
  print({ data });
  pusher.disconnect();
  process.exit(0);
});
