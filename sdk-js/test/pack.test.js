// `npm pack` gives a package that installs into a fresh project, imports as ESM and type-checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('npm pack → npm install → import and tsc in a fresh project', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'comnestor-sdk-pack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // --ignore-scripts: dist was just built by `npm test`; prepare would rebuild it again.
  const [info] = JSON.parse(run(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], root));
  const names = info.files.map((f) => f.path);
  assert.ok(names.includes('dist/index.js') && names.includes('dist/index.d.ts') && names.includes('README.md'), names.join(' '));
  assert.ok(!names.some((n) => n.startsWith('test/') || n.startsWith('node_modules/')));
  t.diagnostic(`package: ${info.filename}, ${info.files.length} files, ${(info.size / 1024).toFixed(1)} KiB packed, ${(info.unpackedSize / 1024).toFixed(1)} KiB unpacked`);

  const app = join(dir, 'app');
  run('mkdir', ['-p', app], dir);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, info.filename)], app);
  const installed = JSON.parse(readFileSync(join(app, 'node_modules/@comnestor/realtime/package.json'), 'utf8'));
  assert.equal(installed.name, '@comnestor/realtime');

  writeFileSync(
    join(app, 'main.mjs'),
    `import { Comnestor, md5Hex, ComnestorApiError } from '@comnestor/realtime';
const c = new Comnestor({ appId: '1', key: 'k', secret: 's', baseUrl: 'http://127.0.0.1:1' });
const auth = await c.authorizeChannel('1.2', 'private-x');
console.log(JSON.stringify({ auth: auth.auth, md5: md5Hex('{}'), error: typeof ComnestorApiError }));`,
  );
  const out = JSON.parse(run(process.execPath, ['main.mjs'], app));
  assert.equal(out.md5, '99914b932bd37a50b983c5e7c90ae93b');
  assert.match(out.auth, /^k:[0-9a-f]{64}$/);
  assert.equal(out.error, 'function');

  writeFileSync(
    join(app, 'check.ts'),
    `import { Comnestor, ComnestorApiError, type EventRecord, type PublishRequest, type WebhookPayload } from '@comnestor/realtime';
const c = new Comnestor({ appId: '1', key: 'k', secret: 's', baseUrl: 'https://example.com' });
const req: PublishRequest = { channel: 'orders', event: 'order.created', data: { id: 1 } };
export async function f(): Promise<string> {
  const accepted = await c.sendEvent(req, { idempotencyKey: 'order-1' });
  const record: EventRecord = await c.getEvent(accepted.id);
  const hook: WebhookPayload = await c.verifyWebhook(new Request('https://x', { method: 'POST', body: '{}' }));
  try { await c.trigger('c', 'e', {}); } catch (e) { if (e instanceof ComnestorApiError) return String(e.status + (e.problem?.detail ?? '')); }
  return record.status + hook.time_ms;
}
// @ts-expect-error: event is required by the generated PublishRequest
const bad: PublishRequest = { channel: 'x', data: 1 };
void bad;
`,
  );
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, noEmit: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', lib: ['ES2022', 'DOM'], types: [] }, files: ['check.ts'] }),
  );
  run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], app);
});
