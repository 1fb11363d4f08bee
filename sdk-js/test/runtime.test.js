// The built package must run outside Node: no node: imports, no Buffer, no process, and only
// tweetnacl as a dependency.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : [],
  );
}

test('dist uses only web-standard APIs and imports only tweetnacl', () => {
  const js = files(join(root, 'dist'));
  assert.ok(js.length > 5);
  for (const file of js) {
    const code = readFileSync(file, 'utf8').replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
    for (const m of code.matchAll(/\bfrom\s+['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]/g)) {
      const spec = m[1] ?? m[2];
      assert.ok(spec.startsWith('./') || spec.startsWith('../') || spec === 'tweetnacl', `${file} imports ${spec}`);
    }
    assert.doesNotMatch(code, /\bBuffer\b|\bprocess\.|\brequire\(/, file);
  }
});

test('package.json: ESM, typed exports, one runtime dependency', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  assert.equal(pkg.type, 'module');
  assert.deepEqual(Object.keys(pkg.dependencies), ['tweetnacl']);
  assert.equal(pkg.exports['.'].types, './dist/index.d.ts');
  assert.equal(pkg.exports['.'].import, './dist/index.js');
});
