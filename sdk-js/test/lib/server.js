// The server under test: the one named by COMNESTOR_URL, COMNESTOR_APP_ID, COMNESTOR_APP_KEY and
// COMNESTOR_APP_SECRET (as .ci/test exports them), or else a fresh `target/debug/comnestor serve`
// on a free loopback port, killed when the tests end. A missing binary is an error, not a skip.
//
// `startServer({ dedicated: true, env })` always starts its own server, whatever COMNESTOR_URL
// says, with no COMNESTOR_* variable inherited from the caller's environment and `env` (extra
// COMNESTOR_* settings, such as COMNESTOR_APP_WEBHOOK_URL) on top of the test app's.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const BINARY = process.env.COMNESTOR_BIN ?? resolve(REPO, 'target/debug/comnestor');
const ENV_NAMES = ['COMNESTOR_URL', 'COMNESTOR_APP_ID', 'COMNESTOR_APP_KEY', 'COMNESTOR_APP_SECRET'];

function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function waitUp(url, child, log, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) break;
    try {
      const r = await fetch(`${url}/up`);
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (e) {
      last = e.cause?.message ?? e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the server at ${url} did not answer GET /up with 200 (${last}).\nserver output:\n${log.join('')}`);
}

export async function startServer({ dedicated = false, env = {} } = {}) {
  const given = dedicated ? [] : ENV_NAMES.filter((n) => process.env[n]);
  if (given.length === ENV_NAMES.length) {
    const url = process.env.COMNESTOR_URL.replace(/\/+$/, '');
    await waitUp(url, null, ['(external server from COMNESTOR_URL)']);
    return {
      url,
      appId: process.env.COMNESTOR_APP_ID,
      key: process.env.COMNESTOR_APP_KEY,
      secret: process.env.COMNESTOR_APP_SECRET,
      external: true,
      stop: async () => {},
    };
  }
  if (given.length > 0) {
    throw new Error(`set all of ${ENV_NAMES.join(', ')} to test against a running server, or none to start one (have: ${given.join(', ')})`);
  }
  if (!existsSync(BINARY)) {
    throw new Error(
      `sdk-js integration tests: the server binary ${BINARY} is missing. Build it with ` +
        '`cd /work/main && cargo build --bin comnestor`' +
        (dedicated
          ? ' (this test always starts its own server).'
          : ', or point COMNESTOR_URL, COMNESTOR_APP_ID, COMNESTOR_APP_KEY and COMNESTOR_APP_SECRET at a running server.'),
    );
  }
  const port = await freePort();
  const app = { appId: '100', key: 'sdk-js-key', secret: 'sdk-js-secret' };
  const log = [];
  // A dedicated server inherits nothing of the caller's COMNESTOR_* settings (CI exports some).
  const inherited = dedicated
    ? Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('COMNESTOR_')))
    : process.env;
  const child = spawn(BINARY, ['serve'], {
    env: {
      ...inherited,
      COMNESTOR_HOST: '127.0.0.1',
      COMNESTOR_PORT: String(port),
      COMNESTOR_DATABASE_URL: 'sqlite::memory:',
      COMNESTOR_APP_ID: app.appId,
      COMNESTOR_APP_KEY: app.key,
      COMNESTOR_APP_SECRET: app.secret,
      COMNESTOR_LOG: 'warn',
      // A test server: no need to wait the default 10 s per shutdown stage.
      COMNESTOR_SHUTDOWN_GRACE_SECS: '1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => log.push(String(d)));
  child.stderr.on('data', (d) => log.push(String(d)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitUp(url, child, log);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    url,
    ...app,
    external: false,
    log,
    stop: () =>
      new Promise((res) => {
        if (child.exitCode !== null) return res();
        child.once('exit', () => res());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      }),
  };
}
