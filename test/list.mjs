// Prints every test file under test/ (recursively), for `npm test`: node 20's runner does not expand ** globs.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
const walk = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : []);
const only = process.argv.slice(2);
console.log(walk('test').filter((f) => only.length === 0 || only.some((o) => f.includes(o))).sort().join(' '));
