/**
 * Security basics on the real CLI: the W&B API key appears nowhere but in the Authorization header;
 * file names from data folders are data, never shell code; `--source` modules are documented as code.
 * (User paths that would leave the run directory, --run-name ../ and --wandb-run-id ../, are
 * catalogue cases.)
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { TEST_KEY } from '../helpers/fake-wandb.ts';
import { buildFixture, REPO, runCli, trainBase, type Fixture } from './harness.ts';

let f: Fixture;
before(async () => {
  f = await buildFixture({ prefix: 'ort-dann-security-', wandb: true });
});
after(() => f?.close());

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

test('the W&B API key appears in no output, run file, or request body of an online run', async () => {
  const runDir = join(f.root, 'online');
  // The key is also pasted where users do paste things: the notes (sent to W&B) and the process arguments (recorded).
  const r = await runCli(f, [...trainBase(f, runDir), '--wandb', 'online', '--wandb-notes', `debugging with key ${TEST_KEY}`], {
    env: { WANDB_API_KEY: TEST_KEY, WANDB_BASE_URL: f.wandb!.url },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(f.wandb!.runs.size > 0, 'the run should have reached the fake W&B server');
  const files = filesUnder(runDir);
  for (const name of ['train.log', 'metrics.jsonl', 'report.html', 'summary.json']) assert.ok(files.includes(join(runDir, name)), `no ${name}`);
  assert.ok(files.some((p) => p.endsWith('config.yaml')) && files.some((p) => p.endsWith('wandb-metadata.json')), 'no W&B journal files');
  const leaks = [
    ...files.filter((p) => readFileSync(p).includes(TEST_KEY)).map((p) => `file ${p}`),
    ...(r.stdout.includes(TEST_KEY) ? ['stdout'] : []),
    ...(r.stderr.includes(TEST_KEY) ? ['stderr'] : []),
    ...f.wandb!.requests.filter((q) => q.body.includes(TEST_KEY) || q.path.includes(TEST_KEY)).map((q) => `request ${q.method} ${q.path}`),
    ...[...f.wandb!.runs.values()].flatMap((run) => [...run.uploads].filter(([, b]) => b.includes(TEST_KEY)).map(([n]) => `uploaded ${n}`)),
  ];
  assert.deepEqual(leaks, []);
  assert.equal(f.wandb!.authLeaks, 0, 'an upload to a signed URL carried the Authorization header');
  assert.ok(f.wandb!.requests.some((q) => q.headers.authorization), 'the key should still authenticate the API calls');
});

test('file names with shell metacharacters are read as plain files and never run', async () => {
  const target = join(f.root, 'odd-names');
  mkdirSync(target);
  const names = ['$(touch pwned).png', '`touch pwned`.png', 'a;touch pwned.png', 'x|y&z.png', 'it\'s "q".png', '-rf.png', '${IFS}.png'];
  for (const [i, name] of names.entries()) {
    await sharp(new Uint8Array(16 * 16 * 3).fill(40 * i), { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(join(target, name));
  }
  const runDir = join(f.root, 'odd');
  const train = await runCli(f, [...trainBase(f, runDir), '--target', target]);
  assert.equal(train.code, 0, train.stderr);
  const predict = await runCli(f, ['predict', '--model', join(runDir, 'model.onnx'), '--threads', '2', target]);
  assert.equal(predict.code, 0, predict.stderr);
  // Every odd name comes back verbatim (CSV-quoted where needed) as a file that was read.
  for (const name of names) assert.ok(predict.stdout.includes(name.includes('"') ? `"${join(target, name).replace(/"/g, '""')}"` : join(target, name)), `${name} missing from predict's output`);
  // Nothing was executed: no file named pwned anywhere under the fixture (the subprocesses' cwd is in it).
  const pwned = filesUnder(f.root).filter((p) => /pwned$/.test(p));
  assert.deepEqual(pwned, []);
  assert.ok(statSync(target).isDirectory() && readdirSync(target).length === names.length, 'the data folder must be left as it was');
});

test('--source modules are documented as code execution (train --help and README)', async () => {
  const help = await runCli(f, ['train', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout.replace(/\s+/g, ' '), /--source .*simulator module \([^)]*runs its code\)/);
  assert.ok(existsSync(join(REPO, 'README.md')));
  assert.match(readFileSync(join(REPO, 'README.md'), 'utf8'), /A `--source` module is code: ort-dann imports and runs it\./);
});
