/**
 * Regenerates docs/errors.md from what the CLI prints for every catalogue case:
 *   node --import tsx test/reliability/write-errors-doc.ts
 * Refuses (exit 1, doc untouched) while a case does not behave as the catalogue says.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CASES } from './cases.ts';
import { catalogueFixture, DOC_PATH, problems, renderDoc, runCases } from './run-cases.ts';

const f = await catalogueFixture();
try {
  const results = await runCases(f);
  const failing = CASES.map((c) => [c.id, problems(results.get(c.id)!, f)] as const).filter(([, p]) => p.length > 0);
  if (failing.length > 0) {
    for (const [id, p] of failing) process.stderr.write(`${id}: ${p.join('; ')}\n`);
    process.stderr.write(`${failing.length} case(s) misbehave; fix them (or cases.ts) first; ${DOC_PATH} not written\n`);
    process.exitCode = 1;
  } else {
    mkdirSync(dirname(DOC_PATH), { recursive: true });
    writeFileSync(DOC_PATH, renderDoc(results));
    process.stdout.write(`wrote ${DOC_PATH}: ${CASES.length} cases\n`);
  }
} finally {
  await f.close();
}
