import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readTorchPth } from '../../src/io/torch-pth.ts';
import { toFloat32, type Tensor } from '../../src/io/tensor.ts';
import { UserError } from '../../src/errors.ts';
import { runPython } from './python.ts';
import { tempDirs } from './tmp.ts';

const dir = tempDirs('ort-dann-pth-')();
const at = (name: string) => join(dir, name);

// One Python run makes every fixture, with the expected values next to them.
const FIXTURES = String.raw`
import collections, json, os, pickle, sys, zipfile, torch
d = sys.argv[1]
torch.manual_seed(0)

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)

net = Net()
net.bn.running_mean.uniform_()
net.bn.num_batches_tracked.fill_(3)
sd = net.state_dict()
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
sd['half'] = torch.randn(3, 2).half()
sd['bf16'] = torch.randn(4).bfloat16()
sd['double'] = torch.randn(2).double()
sd['transposed'] = base.t()          # non-contiguous, shares its storage with 'base'
sd['base'] = base
sd['slice'] = base[1:3]              # contiguous with a storage offset
sd['strided'] = base[:, ::2]         # non-contiguous
sd['column'] = base[1:, 3]           # storage offset and stride
sd['expanded'] = torch.ones(3, 1).expand(3, 4)  # stride 0
sd['ints'] = torch.tensor([1, -2, 3], dtype=torch.int32)
sd['longs'] = torch.tensor([2 ** 40, -7])
sd['bytes'] = torch.tensor([0, 255], dtype=torch.uint8)
sd['mask'] = torch.tensor([True, False])
sd['i8'] = torch.tensor([-1], dtype=torch.int8)
sd['i16'] = torch.tensor([-300], dtype=torch.int16)
sd['scalar'] = torch.tensor(2.5)
sd['empty'] = torch.empty(0, 3)

def describe(t):
    return {'dtype': str(t.dtype), 'shape': list(t.shape), 'values': t.flatten().double().tolist()}
json.dump({'keys': list(sd.keys()), 'tensors': {k: describe(t) for k, t in sd.items()}}, open(os.path.join(d, 'expected.json'), 'w'))

torch.save(sd, os.path.join(d, 'resnet-b627a593.pth'))
torch.save(sd, os.path.join(d, 'proto4.pth'), pickle_protocol=4)
torch.save(net.state_dict(keep_vars=True), os.path.join(d, 'params.pth'))

# The same archive rewritten with deflate and ZIP64 records (forced by lowering the limits).
with zipfile.ZipFile(os.path.join(d, 'resnet-b627a593.pth')) as src:
    zipfile.ZIP64_LIMIT = 0
    zipfile.ZIP_FILECOUNT_LIMIT = 0
    with zipfile.ZipFile(os.path.join(d, 'deflate64.pth'), 'w', zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            with dst.open(info.filename.replace('resnet-b627a593/', 'other_prefix/'), 'w', force_zip64=True) as f:
                f.write(src.read(info))

torch.save(sd, os.path.join(d, 'legacy.pth'), _use_new_zipfile_serialization=False)
torch.save({'model': sd, 'epoch': 3}, os.path.join(d, 'checkpoint.pth'))
torch.save(net, os.path.join(d, 'whole-model.pth'))
torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), os.path.join(d, 'scripted.pt'))

class Evil:
    def __reduce__(self):
        return (os.system, ('touch ' + os.path.join(d, 'pwned'),))
with zipfile.ZipFile(os.path.join(d, 'evil.pth'), 'w') as z:
    z.writestr('archive/data.pkl', pickle.dumps(collections.OrderedDict(w=Evil()), protocol=2))
`;

interface Expected {
  keys: string[];
  tensors: Record<string, { dtype: string; shape: number[]; values: number[] }>;
}
let expected: Expected;

before(() => {
  runPython(FIXTURES, [dir]);
  expected = JSON.parse(readFileSync(at('expected.json'), 'utf8'));
});

const TORCH_DTYPES: Record<string, string> = {
  F32: 'torch.float32',
  F64: 'torch.float64',
  F16: 'torch.float16',
  BF16: 'torch.bfloat16',
  I64: 'torch.int64',
  I32: 'torch.int32',
  I16: 'torch.int16',
  I8: 'torch.int8',
  U8: 'torch.uint8',
  BOOL: 'torch.bool',
};

function describe(t: Tensor) {
  const exact = t.dtype === 'F64' || t.dtype === 'I64';
  return { dtype: TORCH_DTYPES[t.dtype], shape: t.shape, values: exact ? [...t.data].map(Number) : [...toFloat32(t)] };
}

function assertMatchesExpected(got: Map<string, Tensor>, keys = expected.keys) {
  assert.deepEqual([...got.keys()], keys);
  for (const k of keys) assert.deepEqual(describe(got.get(k)!), expected.tensors[k], k);
}

test('a torch.save state_dict reads back identically, in file order', async () => {
  const got = await readTorchPth(at('resnet-b627a593.pth'));
  assertMatchesExpected(got);
  assert.equal(got.get('bn.num_batches_tracked')!.dtype, 'I64');
  assert.deepEqual(got.get('bn.num_batches_tracked')!.shape, []);
  // Contiguous tensors are views of their storage, shared like in PyTorch.
  assert.equal(got.get('slice')!.data.buffer, got.get('base')!.data.buffer);
});

test('pickle protocol 4, nn.Parameter values, deflate, ZIP64 and another prefix folder', async () => {
  assertMatchesExpected(await readTorchPth(at('proto4.pth')));
  assertMatchesExpected(await readTorchPth(at('deflate64.pth')));
  const params = await readTorchPth(at('params.pth'));
  assertMatchesExpected(params, [...params.keys()]);
  assert.ok(params.has('conv.weight'));
});

async function userError(file: string): Promise<UserError> {
  const err = await readTorchPth(file).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof UserError, `expected a UserError, got ${err}`);
  assert.ok(err.message.startsWith(`${file}: `), err.message);
  assert.ok(!err.message.includes('\n'), err.message);
  return err;
}

test('files that are not plain state_dicts get one-line errors with the fix', async () => {
  assert.match((await userError(at('legacy.pth'))).message, /legacy .*torch>=1\.6/);
  assert.match((await userError(at('checkpoint.pth'))).message, /entry 'model' is a dict.*torch\.save\(ckpt\['model'\]/);
  assert.match((await userError(at('whole-model.pth'))).message, /refuses to load the Python object __main__\.Net.*state_dict\(\)/);
  assert.match((await userError(at('scripted.pt'))).message, /TorchScript/);
  assert.match((await userError(at('expected.json'))).message, /not a PyTorch checkpoint/);
  assert.match((await userError(at('missing.pth'))).message, /no such file/);
});

test('pickled code is refused, never run', async () => {
  assert.match((await userError(at('evil.pth'))).message, /refuses to load the Python object (posix|os)\.system/);
  assert.ok(!existsSync(at('pwned')));
});

test('truncated and corrupted archives are one-line errors', async () => {
  const whole = readFileSync(at('resnet-b627a593.pth'));
  writeFileSync(at('cut.pth'), whole.subarray(0, whole.length >> 1));
  assert.match((await userError(at('cut.pth'))).message, /truncated/);

  // Flip a byte inside the first storage: the CRC check catches it.
  const flipped = Buffer.from(whole);
  const storage = flipped.indexOf('resnet-b627a593/data/0');
  const dataStart = storage + 'resnet-b627a593/data/0'.length;
  const payload = flipped.indexOf(Buffer.from(new Float32Array(expected.tensors['conv.weight'].values.slice(0, 1)).buffer), dataStart);
  assert.ok(payload > 0);
  flipped[payload] ^= 0xff;
  writeFileSync(at('flipped.pth'), flipped);
  assert.match((await userError(at('flipped.pth'))).message, /CRC/);
});
