/**
 * The bad-input catalogue (cases.ts) on the real CLI: each case exits 1 with one line on stderr that
 * names the file, flag or value and the fix, no stack trace, and leaves the artifacts, an earlier run
 * and the data exactly as they were; the cases that should work do. docs/errors.md must match.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { AREAS, CASES } from './cases.ts';
import { contentHashes, runCli, STACK_FRAME, trainBase } from './harness.ts';
import { catalogueFixture, DOC_PATH, problems, renderDoc, runCases, type CaseResult, type CatalogueFixture } from './run-cases.ts';

let f: CatalogueFixture;
let results: Map<string, CaseResult>;
let hashesBefore: Map<string, string>;
const shared = () => [f.artifacts, f.prevRun, f.demo.out];

before(async () => {
  f = await catalogueFixture();
  hashesBefore = contentHashes(shared());
  results = await runCases(f);
});
after(() => f?.close());

test('the catalogue has at least 25 cases with distinct ids, covering every area', () => {
  assert.ok(CASES.length >= 25, `${CASES.length} cases`);
  assert.equal(new Set(CASES.map((c) => c.id)).size, CASES.length);
  for (const area of AREAS) assert.ok(CASES.some((c) => c.area === area), `no case for ${area}`);
});

for (const c of CASES) {
  test(`${c.area}: ${c.title} [${c.id}]`, () => {
    const r = results.get(c.id)!;
    assert.deepEqual(problems(r, f), [], `${c.id}: stderr was:\n${r.stderr}`);
  });
}

test('after every case, the artifacts, the earlier run and the data have their original content', () => {
  assert.deepEqual(contentHashes(shared()), hashesBefore);
});

test('--debug adds the stack trace to a user error', async () => {
  const r = await runCli(f, [...trainBase(f, join(f.root, 'runs', 'debug')), '--target', join(f.root, 'no-such-folder'), '--debug']);
  assert.equal(r.code, 1);
  assert.match(r.stderr.split('\n')[0], /^ort-dann: --target .*no-such-folder: folder not found; check the path$/);
  assert.match(r.stderr, STACK_FRAME);
});

test('docs/errors.md lists every case with the message the CLI prints now', () => {
  const current = (existsSync(DOC_PATH) ? readFileSync(DOC_PATH, 'utf8') : '').split('\n');
  const now = renderDoc(results).split('\n');
  const line = now.findIndex((l, i) => l !== current[i]);
  assert.ok(line === -1 && now.length === current.length,
    `docs/errors.md is out of date (line ${line + 1}: has ${JSON.stringify(current[line])}, the CLI now says ${JSON.stringify(now[line])}); `
    + 'run `node --import tsx test/reliability/write-errors-doc.ts` and commit it');
});
