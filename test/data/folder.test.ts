import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeImage, loadImageTensor } from '../../src/data/decode.ts';
import { IMAGENET_NORMALIZATION } from '../../src/data/normalization.ts';
import { openImageFolder, openLabelledFolder, validateImageFolder } from '../../src/data/folder.ts';
import { parseLabelsCsv } from '../../src/data/labels.ts';
import { tempDirs, writePng } from './helpers.ts';

const newDir = tempDirs('ort-dann-folder-');

/** A folder of n distinct 8x8 PNGs named a0.png … and returns its path. */
async function folder(n: number, sub = ''): Promise<string> {
  const dir = newDir();
  for (let i = 0; i < n; i++) await writePng(join(dir, sub), `a${i}.png`, 8, 8, i);
  return dir;
}

/** Asserts a one-line UserError whose message matches every pattern. */
async function rejectsWith(p: Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.equal(e.name, 'UserError', e.stack);
    assert.ok(!e.message.includes('\n'), `multi-line message: ${e.message}`);
    for (const re of patterns) assert.match(e.message, re);
    return true;
  });
}

test('target folder: every image once per pass, reshuffled per epoch, deterministic per seed', async () => {
  const dir = await folder(6);
  const open = (seed: number) => openImageFolder(dir, { size: 4, seed });
  const src = await open(1);
  assert.equal(src.length, 6);
  assert.equal(src.labelled, false);
  const ids = async (s: typeof src, n: number) => (await s.nextBatch(n)).ids!;
  src.startEpoch(0);
  const e0 = await ids(src, 6);
  assert.equal(new Set(e0).size, 6);
  src.startEpoch(1);
  const e1 = await ids(src, 6);
  assert.deepEqual([...e1].sort(), [...e0].sort());
  // Any one reshuffle of 6 images repeats the last with probability 1/720; three in a row cannot.
  const later: string[][] = [e1];
  for (const epoch of [2, 3]) {
    src.startEpoch(epoch);
    later.push(await ids(src, 6));
  }
  assert.ok(later.some((order) => order.join() !== e0.join()), 'epochs are not reshuffled');
  const again = await open(1);
  again.startEpoch(1);
  assert.deepEqual(await ids(again, 6), e1);
  again.startEpoch(1);
  again.seek(2); // a resumed run continues mid-epoch
  assert.deepEqual(await ids(again, 4), e1.slice(2));
  assert.equal(again.position, 6);
  const other = await open(2);
  const otherOrders: string[][] = [];
  for (const epoch of [1, 2, 3]) {
    other.startEpoch(epoch);
    otherOrders.push(await ids(other, 6));
  }
  assert.notDeepEqual(otherOrders, later, 'another seed gives the same shuffles');
  await Promise.all([src.close(), again.close(), other.close()]);
});

test('batches cycle past the end with a fresh shuffle, and pixels match the file', async () => {
  const dir = await folder(3);
  const src = await openImageFolder(dir, { size: 8, seed: 0 });
  src.startEpoch(0);
  const b = await src.nextBatch(7); // 2 passes + 1
  assert.equal(b.count, 7);
  assert.equal(b.images.length, 7 * 3 * 64);
  assert.equal(new Set(b.ids!.slice(0, 3)).size, 3);
  assert.equal(new Set(b.ids!.slice(3, 6)).size, 3);
  for (let k = 0; k < 7; k++) {
    const expected = await decodeImage(b.ids![k], 8);
    assert.deepEqual(b.images.subarray(k * 192, (k + 1) * 192), expected);
  }
  await src.close();
});

test('shuffle: false keeps sorted file order; images/ subfolder is used when present', async () => {
  const dir = await folder(3, 'images');
  const src = await openImageFolder(dir, { size: 4, shuffle: false });
  const b = await src.nextBatch(4);
  assert.deepEqual(b.ids, ['a0.png', 'a1.png', 'a2.png', 'a0.png'].map((n) => join(dir, 'images', n)));
  await src.close();
});

test('labels CSV: labels travel with their image', async () => {
  const dir = await folder(4, 'images');
  writeFileSync(join(dir, 'labels.csv'), 'filename,count,dist\na2.png,2,0.2\na0.png,0,0.0\n"a1.png",1,1e-1\na3.png,3,-3.5\n');
  const src = await openLabelledFolder(dir, { size: 4, seed: 3 });
  assert.equal(src.labelled, true);
  assert.deepEqual(src.outputNames, ['count', 'dist']);
  src.startEpoch(0);
  const b = await src.nextBatch(8);
  const expected: Record<string, number[]> = { 'a0.png': [0, 0], 'a1.png': [1, 0.1], 'a2.png': [2, 0.2], 'a3.png': [3, -3.5] };
  b.ids!.forEach((id, k) => assert.deepEqual([...b.labels!.subarray(2 * k, 2 * k + 2)], expected[id.split('/').pop()!].map(Math.fround)));
  await src.close();
  // A target folder may take its labels CSV from anywhere (evaluation only).
  const csv = join(newDir(), 'eval.csv');
  writeFileSync(csv, readFileSync(join(dir, 'labels.csv')));
  const t = await openImageFolder(dir, { size: 4, labelsCsv: csv, shuffle: false });
  assert.deepEqual([...(await t.nextBatch(1)).labels!], [2, 0.2].map(Math.fround));
});

test('bad folders: missing, empty, no labels.csv', async () => {
  await rejectsWith(openImageFolder(join(newDir(), 'nope'), { size: 4, label: '--target' }), /^--target .*nope: folder not found; check the path$/);
  await rejectsWith(openImageFolder(newDir(), { size: 4 }), /no images found/, /point at the right folder/);
  await rejectsWith(openLabelledFolder(await folder(1, 'images'), { size: 4 }), /no labels\.csv; a labelled folder needs images\/ and labels\.csv/);
});

test('bad files: zero-byte, non-image, wrong extension, corrupt, huge, each named', async () => {
  const cases: [string, (path: string) => Promise<void> | void, RegExp][] = [
    ['zero.png', (p) => writeFileSync(p, ''), /zero\.png: empty file \(0 bytes\)/],
    ['text.png', (p) => writeFileSync(p, 'hello'), /text\.png: not an image format sharp can read; convert it to PNG or remove it/],
    ['notes.txt', (p) => writeFileSync(p, 'hello'), /notes\.txt: not an image file \(unknown extension\); move it out of the image folder/],
    ['corrupt.png', async (p) => {
      const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).png().toBuffer();
      for (let i = 8; i < 40; i++) png[i] ^= 0x55;
      writeFileSync(p, png);
    }, /corrupt\.png: cannot decode image \(Input file has corrupt header\); it is truncated or corrupt/],
    ['huge.png', (p) => writePng(join(p, '..'), 'huge.png', 20, 20).then(() => undefined), /huge\.png: image has more than 300 pixels/],
  ];
  for (const [name, make, re] of cases) {
    const dir = await folder(2);
    await make(join(dir, name));
    await rejectsWith(validateImageFolder(dir, { maxInputPixels: 300 }), re, /pass --skip-bad-images/);
  }
});

test('truncated image: found by verify "full" up front, else named when its batch decodes', async () => {
  const dir = await folder(2);
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'red' }, }).png({ compressionLevel: 0 }).toBuffer();
  writeFileSync(join(dir, 'cut.png'), png.subarray(0, png.length / 2));
  await rejectsWith(validateImageFolder(dir, { verify: 'full' }), /cut\.png: cannot decode image .*truncated or corrupt/);
  const src = await openImageFolder(dir, { size: 4, shuffle: false }); // header scan passes
  await rejectsWith(src.nextBatch(3), /cut\.png: cannot decode image/, /--skip-bad-images/);
  await src.close();
});

test('skipBadImages leaves bad files out with a warning and a count', async () => {
  const dir = await folder(3);
  writeFileSync(join(dir, 'zero.png'), '');
  writeFileSync(join(dir, 'junk.jpg'), 'junk');
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'red' } }).png({ compressionLevel: 0 }).toBuffer();
  writeFileSync(join(dir, 'cut.png'), png.subarray(0, png.length / 2));
  const warnings: string[] = [];
  const src = await openImageFolder(dir, { size: 4, skipBadImages: true, warn: (m) => warnings.push(m), shuffle: false });
  assert.equal(src.length, 4); // cut.png passes the header scan
  assert.match(warnings[0], /skipped 2 unreadable files/);
  const b = await src.nextBatch(6);
  assert.equal(b.count, 6);
  assert.ok(!b.ids!.some((id) => id.endsWith('cut.png')));
  assert.equal(src.skippedCount, 3);
  assert.match(warnings[1], /skipping unreadable image \(3 skipped so far\): .*cut\.png/);
  await src.close();
  const all = newDir();
  writeFileSync(join(all, 'zero.png'), '');
  await rejectsWith(openImageFolder(all, { size: 4, skipBadImages: true, warn: () => undefined }), /none of the 1 files is a readable image/);
});

test('labels CSV errors name the file and line', async () => {
  const dir = await folder(2, 'images');
  const csv = join(dir, 'labels.csv');
  const cases: [string, RegExp][] = [
    ['filename,y\na0.png,1\na1.png,2\nmissing.png,3\n', /labels\.csv:4: .*missing\.png not found; add the image or delete the row/],
    ['filename,y\na0.png,1\na1.png\n', /labels\.csv:3: expected 2 columns \(filename,y\), got 1/],
    ['filename,y\na0.png,1\na1.png,2,3\n', /labels\.csv:3: expected 2 columns/],
    ['filename,y\na0.png,1\na1.png,2\na0.png,3\n', /labels\.csv:4: duplicate filename "a0\.png" \(first on line 2\); keep one row per image/],
    ['filename,y\na0.png,NaN\na1.png,2\n', /labels\.csv:2: y is "NaN", not a finite number/],
    ['filename,y\na0.png,1\na1.png,Infinity\n', /labels\.csv:3: y is "Infinity", not a finite number/],
    ['filename,y\na0.png,1\na1.png,1e999\n', /labels\.csv:3: y is "1e999", which overflows to infinity/],
    ['filename,y\na0.png,\na1.png,1\n', /labels\.csv:2: y is empty, not a finite number/],
    ['filename,y\na0.png,1\n', /a1\.png: no row in .*labels\.csv; add a row for it or move the image out/],
    ['name,y\na0.png,1\n', /labels\.csv:1: header must be "filename,<output names…>"/],
    ['filename\na0.png\n', /labels\.csv:1: header must be/],
    ['filename,y,y\na0.png,1,2\n', /labels\.csv:1: output name "y" appears twice/],
    ['', /labels\.csv: empty CSV/],
    ['filename,y\n', /labels\.csv: no rows after the header/],
    ['filename,y\n../a0.png,1\n', /labels\.csv:2: filename "\.\.\/a0\.png" must be a path relative to the image folder/],
  ];
  for (const [text, re] of cases) {
    writeFileSync(csv, text);
    await rejectsWith(openLabelledFolder(dir, { size: 4 }), re);
  }
  await rejectsWith(openImageFolder(dir, { size: 4, labelsCsv: join(dir, 'none.csv') }), /none\.csv: labels CSV not found/);
});

test('CSV parsing: quotes, CRLF, BOM, blank lines, subfolder names', () => {
  const t = parseLabelsCsv('\uFEFFfilename,"a ""b"""\r\n"x,1.png", 2.5 \r\n\r\n./sub\\y.png,-1e-3\r\n', 'l.csv');
  assert.deepEqual(t.outputNames, ['a "b"']);
  assert.deepEqual(t.rows.map((r) => [r.name, r.line, r.values]), [['x,1.png', 2, [2.5]], ['sub/y.png', 4, [-0.001]]]);
});

test('tiny and odd-sized images are accepted and upsampled', async () => {
  const dir = newDir();
  await writePng(dir, 'one.png', 1, 1);
  await writePng(dir, 'wide.png', 9, 2);
  mkdirSync(join(dir, 'ignored-subfolder'));
  writeFileSync(join(dir, '.DS_Store'), 'x');
  const src = await openImageFolder(dir, { size: 16 });
  const b = await src.nextBatch(2);
  assert.equal(b.images.length, 2 * 3 * 256);
  assert.ok(b.images.every((v) => v >= 0 && v <= 1));
  await src.close();
});

test('batches use the same preprocessing as loadImageTensor, with or without the decode cache', async () => {
  const dir = await folder(3);
  for (const cacheMegabytes of [0, 512]) {
    const src = await openImageFolder(dir, { size: 5, seed: 2, normalization: IMAGENET_NORMALIZATION, cacheMegabytes });
    for (let epoch = 0; epoch < 2; epoch++) {
      src.startEpoch(epoch);
      const b = await src.nextBatch(4);
      for (let k = 0; k < 4; k++) {
        assert.deepEqual(b.images.subarray(k * 75, (k + 1) * 75), await loadImageTensor(b.ids![k], 5, IMAGENET_NORMALIZATION));
      }
    }
    await src.close();
  }
});
