import assert from 'node:assert/strict';
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Spool } from '../../src/tracking/wandb/spool.ts';
import { tempDir } from './helpers.ts';

const line = (i: number) => `{"_step":${i},"pad":"${'x'.repeat(i % 7)}é"}`;

test('unacknowledged lines beyond the memory budget are read back from disk, in order, nothing lost', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.create(join(dir, 'h.jsonl'), { memoryBytes: 200, keepForReading: true, onDiskError: assert.fail });
  for (let i = 0; i < 500; i++) spool.append(line(i));
  await spool.flush();
  const memBytes = (spool as unknown as { memBytes: number }).memBytes;
  assert.ok(memBytes <= 200, `memory stays within budget once on disk (${memBytes})`);
  const got: string[] = [];
  for (let from = 0; from < spool.count; ) {
    const { lines, skipped } = await spool.read(from, 37, 1000);
    assert.equal(skipped, 0);
    assert.ok(lines.length > 0 && lines.length <= 37);
    got.push(...lines);
    from += lines.length;
    spool.ack(from);
  }
  assert.deepEqual(got, Array.from({ length: 500 }, (_, i) => line(i)));
  assert.equal(await readFile(join(dir, 'h.jsonl'), 'utf8'), got.map((l) => `${l}\n`).join(''));
  await spool.close();
});

test('a read takes at least one line, then stops at the byte budget', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.create(join(dir, 'h.jsonl'), { memoryBytes: 1 << 20, keepForReading: true, onDiskError: assert.fail });
  spool.append('a'.repeat(100));
  spool.append('b');
  assert.deepEqual((await spool.read(0, 10, 10)).lines, ['a'.repeat(100)]);
  assert.deepEqual((await spool.read(0, 10, 1000)).lines, ['a'.repeat(100), 'b']);
  assert.deepEqual((await spool.read(2, 10, 1000)).lines, []);
  await spool.close();
});

test('an existing spool is indexed by lines; a last line cut off by a crash is left out', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'h.jsonl');
  await appendFile(path, `${line(0)}\n${line(1)}\n{"_step":2,"cut`);
  const { spool, cutOff } = await Spool.openExisting(path);
  assert.equal(cutOff, true);
  assert.equal(spool.count, 2);
  assert.deepEqual((await spool.read(1, 10, 1000)).lines, [line(1)]);
  await spool.close();
});

test('when the disk fails, lines stay in memory up to 4× the budget, then the oldest are skipped, and it says so', async (t) => {
  const dir = await tempDir(t);
  const errors: Error[] = [];
  const spool = await Spool.create(join(dir, 'h.jsonl'), { memoryBytes: 100, keepForReading: true, onDiskError: (e) => errors.push(e) });
  // Closing the file under the spool makes every write fail, like a disk gone read-only.
  await (spool as unknown as { fh: { close(): Promise<void> } }).fh.close();
  for (let i = 0; i < 50; i++) spool.append(`line-${String(i).padStart(3, '0')}`);
  await spool.flush();
  assert.equal(errors.length, 1);
  const { lines, skipped } = await spool.read(0, 1000, 1 << 20);
  assert.ok(skipped > 0);
  assert.equal(skipped + lines.length, 50);
  assert.equal(lines.at(-1), 'line-049');
  assert.ok(lines.reduce((n, l) => n + l.length + 1, 0) <= 400, 'memory held to 4× the budget');
});
