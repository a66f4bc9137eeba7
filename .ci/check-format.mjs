// The formatting rules CI holds every tracked text file to (no formatter is installed): UTF-8 with LF
// line ends, a final newline, no trailing whitespace, and no tabs in code. Prints each offending
// file:line and exits 1. Markdown keeps trailing double spaces (a hard line break).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const TEXT = /\.(ts|mjs|js|json|md|py|sh|yml|yaml|html|css)$|(^|\/)run$/;
const CODE = /\.(ts|mjs|js|json|py|sh)$|(^|\/)run$/;
const files = execFileSync('git', ['ls-files', '-z'], { encoding: 'utf8' }).split('\0').filter((f) => TEXT.test(f) && f !== 'package-lock.json');
const problems = [];
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    continue; // listed by git but deleted in the work tree
  }
  if (text.length === 0) continue;
  if (text.includes('\r')) problems.push(`${file}: CR line ends; use LF`);
  if (!text.endsWith('\n')) problems.push(`${file}: no newline at the end`);
  text.split('\n').forEach((line, i) => {
    const trailing = /[ \t]+$/.exec(line);
    if (trailing && !(file.endsWith('.md') && trailing[0] === '  ')) problems.push(`${file}:${i + 1}: trailing whitespace`);
    if (CODE.test(file) && line.includes('\t')) problems.push(`${file}:${i + 1}: tab; indent with spaces`);
  });
}
for (const p of problems) console.log(p);
if (problems.length > 0) {
  console.log(`${problems.length} formatting problem(s) in ${files.length} files`);
  process.exit(1);
}
console.log(`format: ${files.length} files ok`);
