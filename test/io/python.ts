/**
 * The one way tests launch Python: Debian's /usr/bin/python3 with torch, torchvision and numpy (CI
 * installs them with apt), or $PYTHON. A missing Python or torch is a test failure, never a skip.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';

export const PYTHON = process.env.PYTHON ?? '/usr/bin/python3';

function run(args: string[], what: string, options: SpawnSyncOptions = {}): string {
  const r = spawnSync(PYTHON, args, { encoding: 'utf8', maxBuffer: 256 << 20, ...options });
  if (r.error) throw new Error(`cannot run ${PYTHON} (${r.error.message}); these tests need python3 with torch: apt-get install python3-torch python3-torchvision python3-numpy`);
  if (r.status !== 0) throw new Error(`${what} failed (status ${r.status}):\n${r.stderr}`);
  return r.stdout as string;
}

/** Runs `script` with `args` in `cwd`; returns stdout, throws with stderr if it fails. */
export function runPython(script: string, args: string[] = [], cwd?: string): string {
  return run(['-c', script, ...args], 'python fixture script', { cwd });
}

/** Runs `script` with `input` as JSON on stdin and returns the JSON it prints (the training references). */
export function runPythonJson<T>(script: string, input: unknown): T {
  return JSON.parse(run(['-c', script], 'python reference', { input: JSON.stringify(input) })) as T;
}

/** A Python reader and writer of safetensors, independent of ours (the `safetensors` package is not installed). */
export const PY_SAFETENSORS = String.raw`
import json, struct, torch
DT = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
      'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8,
      'U8': torch.uint8, 'BOOL': torch.bool}
NAME = {v: k for k, v in DT.items()}
# Order of the reference writer: dtype rank descending, then name bytes.
RANK = {'BOOL': 0, 'U8': 1, 'I8': 2, 'I16': 5, 'U16': 6, 'F16': 7, 'BF16': 8, 'I32': 9, 'U32': 10, 'F32': 11, 'F64': 12, 'I64': 13, 'U64': 14}

def raw_bytes(t):
    return t.contiguous().flatten().view(torch.uint8).numpy().tobytes() if t.numel() else b''

def read_st(path):
    b = open(path, 'rb').read()
    n, = struct.unpack('<Q', b[:8])
    assert (8 + n) % 8 == 0, 'header not padded to 8'
    h = json.loads(b[8:8 + n].decode('utf-8'))
    meta = h.pop('__metadata__', {})
    out = {}
    for k, v in h.items():
        s, e = v['data_offsets']
        buf = bytearray(b[8 + n + s:8 + n + e])
        dt = DT[v['dtype']]
        t = torch.frombuffer(buf, dtype=dt) if buf else torch.empty(0, dtype=dt)
        out[k] = t.reshape(v['shape'])
    return out, meta, list(h.keys())

def write_st(path, tensors, meta=None):
    items = sorted(tensors.items(), key=lambda kv: (-RANK[NAME[kv[1].dtype]], kv[0].encode()))
    header = {}
    if meta:
        header['__metadata__'] = dict(sorted(meta.items()))
    off, blobs = 0, []
    for k, t in items:
        data = raw_bytes(t)
        header[k] = {'dtype': NAME[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    hj = json.dumps(header, separators=(',', ':'), ensure_ascii=False).encode()
    hj += b' ' * ((8 - len(hj) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)) + hj + b''.join(blobs))

def describe(t):
    return {'dtype': NAME[t.dtype], 'shape': list(t.shape), 'values': t.flatten().double().tolist()}
`;

/** Runs a Python script file with `args`; returns stdout, throws with stderr if it fails. */
export function runPythonFile(file: string, args: string[] = []): string {
  return run([file, ...args], `python script ${file}`);
}
