import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSafetensors, parseSafetensors, readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { toFloat32, type Tensor } from '../../src/io/tensor.ts';
import { UserError } from '../../src/errors.ts';
import { PY_SAFETENSORS, runPython } from './python.ts';
import { tempDirs } from './tmp.ts';

const tmp = tempDirs('ort-dann-st-');

const ours: Record<string, Tensor> = {
  'layer.weight': { dtype: 'F32', shape: [2, 3], data: new Float32Array([0.5, -1.25, 3, 4e-8, 1e30, -0]) },
  // 1, -2, 65504 (largest half) and the smallest subnormal.
  half: { dtype: 'F16', shape: [4], data: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001]) },
  bf: { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0xc040]) },
  d: { dtype: 'F64', shape: [], data: new Float64Array([Math.PI]) },
  n: { dtype: 'I64', shape: [3], data: new BigInt64Array([0n, -5n, 2n ** 40n]) },
  i: { dtype: 'I32', shape: [1, 2], data: new Int32Array([7, -8]) },
  i16: { dtype: 'I16', shape: [2], data: new Int16Array([-300, 300]) },
  i8: { dtype: 'I8', shape: [2], data: new Int8Array([-1, 127]) },
  u: { dtype: 'U8', shape: [3], data: new Uint8Array([0, 255, 9]) },
  mask: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
  // An integer-like name (JS objects reorder those) and an empty tensor.
  '0': { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
  'é.weight': { dtype: 'F32', shape: [1], data: new Float32Array([2]) },
};

interface Described {
  dtype: string;
  shape: number[];
  values: number[];
}

function describe(t: Tensor): Described {
  return { dtype: t.dtype, shape: t.shape, values: [...toFloat32(t)].map((v, i) => (t.dtype === 'F64' || t.dtype === 'I64' ? Number(t.data[i]) : v)) };
}

test('safetensors interoperate with an independent Python reader and writer', async () => {
  const dir = tmp();
  await writeSafetensors(join(dir, 'ours.safetensors'), ours, { format: 'pt', note: 'x' });
  runPython(
    PY_SAFETENSORS +
      String.raw`
import sys, os
d = sys.argv[1]
ours, meta, keys = read_st(os.path.join(d, 'ours.safetensors'))
json.dump({'meta': meta, 'keys': keys, 'tensors': {k: describe(t) for k, t in ours.items()}}, open(os.path.join(d, 'ours.json'), 'w'))
write_st(os.path.join(d, 'roundtrip.safetensors'), ours, meta)
g = torch.Generator().manual_seed(0)
py = {
    'conv.weight': torch.randn(4, 3, 3, 3, generator=g),
    'fc.weight': torch.randn(5, 4, generator=g).t(),
    'bn.num_batches_tracked': torch.tensor(7),
    'half': torch.randn(6, generator=g).half(),
    'bf': torch.randn(3, generator=g).bfloat16(),
    'mask': torch.tensor([True, False, True]),
    'ids': torch.tensor([1, -2, 3], dtype=torch.int32),
}
write_st(os.path.join(d, 'py.safetensors'), py, {'format': 'pt'})
json.dump({k: describe(t) for k, t in py.items()}, open(os.path.join(d, 'py.json'), 'w'))
`,
    [dir],
  );

  // Python reads what we wrote, in the reference writer's order.
  const seen = JSON.parse(readFileSync(join(dir, 'ours.json'), 'utf8'));
  assert.deepEqual(seen.meta, { format: 'pt', note: 'x' });
  assert.deepEqual(seen.keys, ['n', 'd', '0', 'layer.weight', 'é.weight', 'i', 'bf', 'half', 'i16', 'i8', 'u', 'mask']);
  for (const [name, t] of Object.entries(ours)) assert.deepEqual(seen.tensors[name], describe(t), name);
  assert.deepEqual(seen.tensors.half.values, [1, -2, 65504, 2 ** -24]);
  assert.deepEqual(seen.tensors.bf.values, [1, -3]);
  // The Python writer produces the very same bytes.
  assert.ok(readFileSync(join(dir, 'roundtrip.safetensors')).equals(readFileSync(join(dir, 'ours.safetensors'))));

  // We read what Python wrote.
  const expected: Record<string, Described> = JSON.parse(readFileSync(join(dir, 'py.json'), 'utf8'));
  const got = await readSafetensors(join(dir, 'py.safetensors'));
  assert.deepEqual(got.metadata, { format: 'pt' });
  assert.deepEqual([...got.tensors.keys()], ['bn.num_batches_tracked', 'conv.weight', 'fc.weight', 'ids', 'bf', 'half', 'mask']);
  for (const [name, t] of got.tensors) assert.deepEqual(describe(t), expected[name], name);
});

test('reading is zero-copy: tensors are views into one buffer', async () => {
  const file = join(tmp(), 'a.safetensors');
  await writeSafetensors(file, ours);
  const { tensors } = await readSafetensors(file);
  const buffers = new Set([...tensors.values()].map((t) => t.data.buffer));
  assert.equal(buffers.size, 1);
  for (const [name, t] of tensors) assert.deepEqual(t, ours[name], name);
});

test('unsigned types the Python side lacks round-trip through our own reader', () => {
  const t: Record<string, Tensor> = {
    a: { dtype: 'U16', shape: [2], data: new Uint16Array([1, 65535]) },
    b: { dtype: 'U32', shape: [1], data: new Uint32Array([4e9]) },
    c: { dtype: 'U64', shape: [1], data: new BigUint64Array([2n ** 63n]) },
  };
  const bytes = Buffer.concat(encodeSafetensors(t));
  const back = parseSafetensors(bytes, 'mem');
  for (const [name, v] of Object.entries(t)) assert.deepEqual(back.tensors.get(name), v);
});

test('header bytes match the reference implementation exactly', () => {
  const bytes = (t: Record<string, Tensor>, m?: Record<string, string>) => [...Buffer.concat(encodeSafetensors(t, m))];
  assert.deepEqual(bytes({}), [8, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from('{}      ')]);
  assert.deepEqual(bytes({}, { framework: 'pt' }), [40, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from('{"__metadata__":{"framework":"pt"}}     ')]);
  const json = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ';
  assert.equal(json.length, 72);
  const data = new Float32Array([0, 1, 2, 3, 4, 5]);
  assert.deepEqual(bytes({ attn0: { dtype: 'F32', shape: [1, 1, 2, 3], data } }), [72, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from(json), ...new Uint8Array(data.buffer)]);
});

test('writing rejects tensors whose data does not match dtype or shape', () => {
  assert.throws(() => encodeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), /shape \[3\]/);
  assert.throws(() => encodeSafetensors({ a: { dtype: 'F16', shape: [1], data: new Float32Array(1) } as unknown as Tensor }), /does not hold dtype F16/);
});

/** A file with the given header (object or raw text) and `dataLen` data bytes. */
function craft(header: unknown, dataLen: number): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataLen)]);
}

const f32 = (shape: number[], begin: number, end: number) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

const badFiles: [string, Buffer, RegExp][] = [
  ['shorter than the length prefix', Buffer.from([1, 2, 3]), /truncated/],
  ['header length larger than the file', craft({ a: f32([1], 0, 4) }, 4).subarray(0, 20), /truncated .*header alone/],
  ['absurd header length', Buffer.from([0, 0, 0, 0, 0, 0, 0, 0xff, 0x7b, 0x7d]), /header length .* exceeds/],
  ['header not JSON', craft('{"a": [', 0), /not UTF-8 JSON/],
  ['header not an object', craft('[1,2]', 0), /not a JSON object/],
  ['unknown dtype', craft({ a: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, 8), /unsupported dtype "C64"/],
  ['negative shape', craft({ a: f32([-1], 0, 4) }, 4), /bad shape/],
  ['offsets reversed', craft({ a: f32([0], 4, 0) }, 4), /bad data_offsets/],
  ['size does not match shape', craft({ a: f32([2], 0, 4) }, 4), /spans 4 bytes but F32\[2\] needs 8/],
  ['offsets past the end', craft({ a: f32([2], 0, 8) }, 4), /truncated .*tensor "a" ends at data byte 8/],
  ['overlapping tensors', craft({ a: f32([2], 0, 8), b: f32([1], 4, 8) }, 8), /overlaps/],
  ['a hole between tensors', craft({ a: f32([1], 0, 4), b: f32([1], 8, 12) }, 12), /4 unused bytes before tensor "b"/],
  ['trailing bytes', craft({ a: f32([1], 0, 4) }, 12), /8 bytes after the last tensor/],
  ['metadata not strings', craft({ __metadata__: { a: 1 } }, 0), /__metadata__.a is not a string/],
];

for (const [what, bytes, pattern] of badFiles) {
  test(`corrupt file: ${what} → one-line UserError naming the file`, async () => {
    const file = join(tmp(), 'bad.safetensors');
    writeFileSync(file, bytes);
    const err = await readSafetensors(file).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof UserError, `expected a UserError, got ${err}`);
    assert.match(err.message, pattern);
    assert.ok(err.message.startsWith(`${file}: `), err.message);
    assert.ok(!err.message.includes('\n'), err.message);
  });
}

test('a file cut short mid-data is reported as truncated', async () => {
  const dir = tmp();
  const file = join(dir, 'cut.safetensors');
  const whole = Buffer.concat(encodeSafetensors(ours));
  writeFileSync(file, whole.subarray(0, whole.length - 3));
  await assert.rejects(readSafetensors(file), (e: unknown) => e instanceof UserError && /truncated/.test(e.message));
  await assert.rejects(readSafetensors(join(dir, 'missing.safetensors')), (e: unknown) => e instanceof UserError && /no such file/.test(e.message));
});
