// Reads the target server from the environment. Fails loudly: a missing
// variable is a broken setup, never a reason to skip tests.

const REQUIRED = [
  'COMNESTOR_URL',
  'COMNESTOR_APP_ID',
  'COMNESTOR_APP_KEY',
  'COMNESTOR_APP_SECRET',
];

// Fixed, test-only master key (32 bytes, base64) used when
// COMNESTOR_ENCRYPTION_MASTER_KEY is not set. Only the backend side (the
// `pusher` SDK) uses it; the server under test never sees it.
const DEFAULT_MASTER_KEY_BASE64 = Buffer.from(
  'comnestor-conformance-master-key'.padEnd(32, '!').slice(0, 32),
  'utf8',
).toString('base64');

function readEnv() {
  const missing = REQUIRED.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    throw new Error(
      `conformance/clients: missing required environment variable(s): ${missing.join(', ')}. ` +
        'Set COMNESTOR_URL (e.g. http://127.0.0.1:6001), COMNESTOR_APP_ID, ' +
        'COMNESTOR_APP_KEY and COMNESTOR_APP_SECRET (see conformance/clients/README.md).',
    );
  }

  let url;
  try {
    url = new URL(process.env.COMNESTOR_URL);
  } catch (err) {
    throw new Error(`COMNESTOR_URL is not a valid URL: ${process.env.COMNESTOR_URL} (${err.message})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`COMNESTOR_URL must be http:// or https://, got ${url.protocol}`);
  }
  const useTLS = url.protocol === 'https:';
  const port = url.port ? Number(url.port) : useTLS ? 443 : 80;

  const masterKeyBase64 = process.env.COMNESTOR_ENCRYPTION_MASTER_KEY || DEFAULT_MASTER_KEY_BASE64;
  if (Buffer.from(masterKeyBase64, 'base64').length !== 32) {
    throw new Error('COMNESTOR_ENCRYPTION_MASTER_KEY must be base64 of exactly 32 bytes');
  }

  const expectSubscriptionCount = process.env.COMNESTOR_EXPECT_SUBSCRIPTION_COUNT === '1';

  return Object.freeze({
    url: url.toString(),
    host: url.hostname,
    port,
    useTLS,
    appId: process.env.COMNESTOR_APP_ID,
    key: process.env.COMNESTOR_APP_KEY,
    secret: process.env.COMNESTOR_APP_SECRET,
    masterKeyBase64,
    expectSubscriptionCount,
    debug: process.env.COMNESTOR_DEBUG === '1',
  });
}

// Evaluated at import time so every test file fails at startup when the
// environment is incomplete.
export const env = readEnv();
