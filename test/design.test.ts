/**
 * docs/design.md's layer picture is the truth about imports: every relative import in src/ and
 * tools/ points to its own layer or one below it.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { test } from 'node:test';

const root = join(import.meta.dirname, '..');

function layers(): string[][] {
  const doc = readFileSync(join(root, 'docs', 'design.md'), 'utf8');
  const block = /```layers\n([\s\S]*?)```/.exec(doc);
  assert.ok(block, 'docs/design.md has no ```layers block');
  return block[1].trim().split('\n').map((line) => line.trim().split(/\s+/));
}

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : /\.(ts|mjs)$/.test(e.name) ? [join(dir, e.name)] : []);
}

test('no import in src/ or tools/ points up the layers of docs/design.md', () => {
  const table = layers();
  // The most specific entry wins: tools/model is its own layer below tools.
  const layerOf = (file: string): number | undefined => {
    let best: { depth: number; layer: number } | undefined;
    table.forEach((entries, layer) => {
      for (const e of entries) {
        if (file === e || file.startsWith(`${e}/`)) if (!best || e.length > best.depth) best = { depth: e.length, layer };
      }
    });
    return best?.layer;
  };
  const violations: string[] = [];
  for (const file of [...sources('src'), ...sources('tools')]) {
    const from = layerOf(file);
    if (from === undefined) {
      violations.push(`${file} is in no layer`);
      continue;
    }
    for (const m of readFileSync(join(root, file), 'utf8').matchAll(/(?:from|import\()\s*['"](\.[^'"]+)['"]/g)) {
      const target = relative(root, join(root, normalize(join(dirname(file), m[1]))));
      const to = layerOf(target);
      if (to === undefined) violations.push(`${file} imports ${target}, which is in no layer`);
      else if (to < from) violations.push(`${file} (layer ${from + 1}) imports ${target} (layer ${to + 1})`);
    }
  }
  assert.deepEqual(violations, []);
});
