// src/generated/api.ts must be what scripts/generate-api-types.mjs makes of openapi/openapi.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { generate, readSpec, OUTPUT_PATH, REGENERATE_COMMAND } from '../scripts/generate-api-types.mjs';
import { operations, API_BASE_PATH } from '../dist/index.js';

test('src/generated/api.ts is up to date with openapi/openapi.json', () => {
  const expected = generate(readSpec());
  const actual = readFileSync(OUTPUT_PATH, 'utf8');
  if (actual !== expected) {
    const a = actual.split('\n');
    const e = expected.split('\n');
    const line = e.findIndex((l, i) => l !== a[i]);
    assert.fail(
      `src/generated/api.ts is stale: openapi/openapi.json changed. Run \`${REGENERATE_COMMAND}\` and commit the result.\n` +
        `first difference at line ${line + 1}:\n  checked in: ${a[line]}\n  generated:  ${e[line]}`,
    );
  }
});

test('every operation and schema of the spec is in the generated module', () => {
  const spec = readSpec();
  const text = readFileSync(OUTPUT_PATH, 'utf8');
  assert.equal(API_BASE_PATH, spec.servers[0].url);
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      assert.deepEqual(
        { method: operations[op.operationId]?.method, path: operations[op.operationId]?.path },
        { method: method.toUpperCase(), path },
        op.operationId,
      );
    }
  }
  for (const name of Object.keys(spec.components.schemas)) {
    assert.match(text, new RegExp(`export (interface|type) ${name}\\b`), name);
  }
});

test('the generator notices a change to the spec', () => {
  const spec = readSpec();
  spec.components.schemas.Accepted.properties.extra = { type: 'string', description: 'new field' };
  assert.notEqual(generate(spec), readFileSync(OUTPUT_PATH, 'utf8'));
  assert.match(generate(spec), /extra\?: string;/);
});
