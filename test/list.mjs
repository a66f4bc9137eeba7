// Prints every test file under test/ (recursively), for `npm test`: node 20's runner does not expand ** globs.
// `--unit` prints the fast tier only: files that launch no Python or Chromium and build no ResNet
// artifacts (they import none of the helpers that do). Other arguments keep files whose path contains one.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
const walk = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : []);
const SLOW = /\/(python|fixture|harness|run-cases)\.ts'|playwright|chromium|buildArtifacts|benchTrainStep/;
const args = process.argv.slice(2);
const unit = args.includes('--unit');
const only = args.filter((a) => a !== '--unit');
console.log(walk('test')
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .filter((f) => !unit || !SLOW.test(readFileSync(f, 'utf8')))
  .sort().join(' '));
