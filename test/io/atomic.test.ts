import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KILL_ENV, readDirConsistent, recoverAtomicDir, writeDirAtomic, writeFileAtomic } from '../../src/io/atomic.ts';
import { UserError } from '../../src/errors.ts';
import { tempDirs } from './tmp.ts';

const ATOMIC = fileURLToPath(new URL('../../src/io/atomic.ts', import.meta.url));
const tmp = tempDirs('ort-dann-atomic-');

/** Runs `body` (TypeScript, with writeFileAtomic/writeDirAtomic in scope) in a child with the kill hook set. */
function runChild(dir: string, body: string, killOn: string) {
  const script = join(dir, 'child.mts');
  writeFileSync(script, `import { writeFileAtomic, writeDirAtomic } from ${JSON.stringify(ATOMIC)};\n${body}\n`);
  return spawnSync(process.execPath, ['--import', 'tsx', script], { env: { ...process.env, [KILL_ENV]: killOn }, encoding: 'utf8' });
}

test('writeFileAtomic writes strings, bytes and chunk streams, and replaces old content', async () => {
  const dir = tmp();
  const f = join(dir, 'a.txt');
  await writeFileAtomic(f, 'hello');
  assert.equal(readFileSync(f, 'utf8'), 'hello');
  await writeFileAtomic(f, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...readFileSync(f)], [1, 2, 3]);
  await writeFileAtomic(f, [new Uint8Array([4]), new Uint8Array([5, 6])]);
  assert.deepEqual([...readFileSync(f)], [4, 5, 6]);
  async function* gen() {
    yield Buffer.from('x');
    yield Buffer.from('yz');
  }
  await writeFileAtomic(f, gen());
  assert.equal(readFileSync(f, 'utf8'), 'xyz');
  assert.deepEqual(readdirSync(dir), ['a.txt']);
});

test('a failing source leaves the old file and no temp file', async () => {
  const dir = tmp();
  const f = join(dir, 'a.bin');
  writeFileSync(f, 'old');
  async function* failing() {
    yield Buffer.from('partial');
    throw new Error('source broke');
  }
  await assert.rejects(writeFileAtomic(f, failing()), /source broke/);
  assert.equal(readFileSync(f, 'utf8'), 'old');
  assert.deepEqual(readdirSync(dir), ['a.bin']);
});

for (const code of ['ENOSPC', 'EACCES'] as const) {
  test(`${code} becomes a one-line UserError naming the path, old file intact`, async (t) => {
    const dir = tmp();
    const f = join(dir, 'model.safetensors');
    writeFileSync(f, 'old');
    const realOpen = fs.open;
    // Running as root makes real permission errors impossible, and a full disk is hard to fake.
    t.mock.method(fs, 'open', async (...args: Parameters<typeof fs.open>) => {
      const fh = await realOpen(...args);
      if (String(args[0]).includes('.tmp-')) {
        fh.write = (async () => {
          throw Object.assign(new Error(`${code}: simulated, write`), { code });
        }) as never;
      }
      return fh;
    });
    const err = await writeFileAtomic(f, 'new content').then(() => undefined, (e: unknown) => e);
    t.mock.restoreAll();
    assert.ok(err instanceof UserError, String(err));
    assert.ok(err.message.includes(f));
    assert.ok(!err.message.includes('\n'));
    assert.match(err.message, code === 'ENOSPC' ? /no space/ : /permission denied/);
    assert.equal(readFileSync(f, 'utf8'), 'old');
    assert.deepEqual(readdirSync(dir), ['model.safetensors']);
  });
}

test('a missing folder is a UserError', async () => {
  const f = join(tmp(), 'nope', 'x.bin');
  await assert.rejects(writeFileAtomic(f, 'x'), (e: unknown) => e instanceof UserError && e.message.includes(f) && /does not exist/.test(e.message));
});

test('SIGKILL mid-write (test hook) leaves the old file intact', () => {
  const dir = tmp();
  const f = join(dir, 'ckpt.bin');
  writeFileSync(f, 'old content');
  const r = runChild(dir, `await writeFileAtomic(${JSON.stringify(f)}, [new Uint8Array(1 << 20).fill(7), new Uint8Array(10)]);`, 'ckpt.bin');
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  assert.equal(readFileSync(f, 'utf8'), 'old content');
  const temps = readdirSync(dir).filter((n) => n.includes('.tmp-'));
  assert.equal(temps.length, 1, 'the killed writer left its partial temp file');
  assert.equal(readFileSync(join(dir, temps[0])).length, 1 << 19, 'killed halfway through the first chunk');
});

test('writeDirAtomic creates and replaces a whole set', async () => {
  const dir = join(tmp(), 'ckpt');
  await writeDirAtomic(dir, { 'a.txt': 'A1', 'b.txt': 'B1' });
  assert.deepEqual(readdirSync(dir).sort(), ['a.txt', 'b.txt']);
  await writeDirAtomic(dir, new Map([['c.txt', 'C2']]));
  assert.deepEqual(readdirSync(dir), ['c.txt']);
  assert.deepEqual(readdirSync(join(dir, '..')), ['ckpt']);
  await assert.rejects(writeDirAtomic(dir, { '../x': 'no' }), /plain file name/);
});

test('writeDirAtomic killed while writing a file keeps the old set; recovery removes the partial one', async () => {
  const root = tmp();
  const dir = join(root, 'ckpt');
  await writeDirAtomic(dir, { 'a.txt': 'old A', 'b.txt': 'old B' });
  const r = runChild(root, `await writeDirAtomic(${JSON.stringify(dir)}, { 'a.txt': 'new A', 'b.txt': 'new B' });`, 'ckpt/b.txt');
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  assert.equal(readFileSync(join(dir, 'a.txt'), 'utf8'), 'old A');
  assert.equal(readdirSync(root).filter((n) => n.startsWith('ckpt.tmp-')).length, 1);
  await recoverAtomicDir(dir);
  assert.deepEqual(readdirSync(root).sort(), ['child.mts', 'ckpt']);
  assert.equal(readFileSync(join(dir, 'b.txt'), 'utf8'), 'old B');
});

test('writeDirAtomic killed between its two renames rolls forward on recovery', async () => {
  const root = tmp();
  const dir = join(root, 'ckpt');
  await writeDirAtomic(dir, { 'a.txt': 'old A' });
  const r = runChild(root, `await writeDirAtomic(${JSON.stringify(dir)}, { 'a.txt': 'new A', 'b.txt': 'new B' });`, 'ckpt#swap');
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  assert.ok(!existsSync(dir), 'died with the folder moved aside');
  // Readers recover by themselves.
  const files = await readDirConsistent(dir);
  assert.deepEqual([...files].map(([k, v]) => [k, v.toString()]), [['a.txt', 'new A'], ['b.txt', 'new B']]);
  assert.deepEqual(readdirSync(root).sort(), ['child.mts', 'ckpt']);
});

test('readDirConsistent never mixes two sets while a writer swaps', async () => {
  const dir = join(tmp(), 'ckpt');
  await writeDirAtomic(dir, { 'a.txt': '0', 'b.txt': '0' });
  let stop = false;
  const writer = (async () => {
    for (let i = 1; !stop; i++) await writeDirAtomic(dir, { 'a.txt': String(i), 'b.txt': String(i) });
  })();
  for (let i = 0; i < 100; i++) {
    const set = await readDirConsistent(dir, ['a.txt', 'b.txt']);
    assert.equal(set.get('a.txt')!.toString(), set.get('b.txt')!.toString());
  }
  stop = true;
  await writer;
});

test('readDirConsistent on a folder that does not exist is a UserError', async () => {
  const dir = join(tmp(), 'missing');
  await assert.rejects(readDirConsistent(dir), (e: unknown) => e instanceof UserError && e.message.includes(dir));
});
