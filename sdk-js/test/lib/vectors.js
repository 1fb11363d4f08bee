// Loads the shared JSON test vectors from conformance/vectors/.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const VECTORS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../conformance/vectors');

export function loadVectors(file) {
  const parsed = JSON.parse(readFileSync(resolve(VECTORS_DIR, file), 'utf8'));
  if (!Array.isArray(parsed.vectors) || parsed.vectors.length === 0) throw new Error(`${file} has no vectors`);
  return parsed.vectors;
}
