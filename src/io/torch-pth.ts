/**
 * Reads PyTorch checkpoints written by `torch.save(state_dict, path)` (the zip format of torch >= 1.6):
 * `<prefix>/data.pkl` is a pickle of the dict whose tensors point, through persistent ids, at raw
 * storages stored as `<prefix>/data/<key>`. The pickle is interpreted by a small stack machine
 * that only knows plain data, OrderedDict and the torch rebuild functions: any other global is
 * refused before anything is built, so no code from the file ever runs.
 */
import { readFailure } from './read-error.ts';
import fs from 'node:fs/promises';
import { UserError } from '../errors.ts';
import { allocData, dtypeBytes, numel, typedView, type DType, type Tensor, type TensorData } from './tensor.ts';
import { ZipReader } from './zip.ts';

/** Storage classes named in persistent ids, by their dtype. */
const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

const CALLABLES = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
]);

class Global {
  constructor(readonly path: string) {}
}

class StorageRef {
  constructor(readonly dtype: DType, readonly key: string) {}
}

class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly size: number[], readonly stride: number[]) {}
}

const FIX = 'save a plain state_dict with torch.save(model.state_dict(), path)';

function pyTypeName(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof Map) return 'dict';
  if (Array.isArray(v)) return 'list/tuple';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof TensorRef) return 'tensor';
  if (v instanceof StorageRef) return 'storage';
  if (v instanceof Global) return v.path;
  return typeof v === 'bigint' ? 'int' : typeof v;
}

/** Interprets a pickle (protocols 2 to 5, binary opcodes) holding a state dict. */
function unpickle(bytes: Buffer, file: string): unknown {
  const bad = (what: string) => new UserError(`${file}: damaged checkpoint (data.pkl: ${what}); re-save or re-download it`);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let p = 0;

  const need = (n: number) => {
    if (p + n > bytes.length) throw bad('ends early');
  };
  const u8 = () => (need(1), bytes[p++]);
  const u16 = () => (need(2), (p += 2), bytes.readUInt16LE(p - 2));
  const u32 = () => (need(4), (p += 4), bytes.readUInt32LE(p - 4));
  const u64 = () => (need(8), (p += 8), Number(bytes.readBigUInt64LE(p - 8)));
  const take = (n: number) => (need(n), (p += n), bytes.subarray(p - n, p));
  const line = () => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0) throw bad('ends early');
    const s = bytes.toString('latin1', p, end);
    p = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0) throw bad('stack underflow');
    return stack.pop();
  };
  const popMark = () => {
    const at = marks.pop();
    if (at === undefined) throw bad('missing MARK');
    return stack.splice(at);
  };
  const top = () => {
    if (stack.length === 0) throw bad('stack underflow');
    return stack[stack.length - 1];
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) throw bad(`memo ${i} used before it is set`);
    return memo.get(i);
  };
  const long = (b: Buffer): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const global = (module: string, name: string) => {
    const path = `${module}.${name}`;
    if (module === 'torch' && Object.hasOwn(STORAGE_DTYPES, name)) return new Global(path);
    if (CALLABLES.has(path)) return new Global(path);
    throw new UserError(`${file}: refuses to load the Python object ${path} (only tensors in dicts are read, never code); ${FIX}`);
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof Map)) throw bad(`SETITEM on a ${pyTypeName(target)}`);
    for (let i = 0; i + 1 < items.length; i += 2) target.set(items[i], items[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (!Array.isArray(target)) throw bad(`APPEND on a ${pyTypeName(target)}`);
    target.push(...items);
  };
  const ints = (v: unknown, what: string): number[] => {
    if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x) && x >= 0)) throw bad(`tensor ${what} is not a tuple of sizes`);
    return v as number[];
  };
  const call = (fn: unknown, args: unknown) => {
    if (!(fn instanceof Global) || !Array.isArray(args)) throw bad('REDUCE without a callable and its arguments');
    switch (fn.path) {
      case 'collections.OrderedDict':
        if (args.length > 0 && !(Array.isArray(args[0]) && args[0].every((kv) => Array.isArray(kv) && kv.length === 2))) {
          throw bad('OrderedDict built from something other than pairs');
        }
        return new Map((args[0] ?? []) as [unknown, unknown][]);
      case 'torch._utils._rebuild_tensor_v2': {
        const [storage, offset, size, stride] = args;
        if (!(storage instanceof StorageRef) || !Number.isSafeInteger(offset)) throw bad('tensor without a storage');
        const s = ints(size, 'size');
        const st = ints(stride, 'stride');
        if (s.length !== st.length) throw bad('tensor size and stride differ in length');
        return new TensorRef(storage, offset as number, s, st);
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        // Parameter(data, requires_grad, hooks[, state]): only the data matters here.
        if (!(args[0] instanceof TensorRef)) throw bad('parameter without a tensor');
        return args[0];
      default:
        throw bad(`${fn.path} called`);
    }
  };
  const persistent = (pid: unknown) => {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || !(pid[1] instanceof Global) || typeof pid[2] !== 'string') {
      throw bad('unknown persistent id');
    }
    const dtype = STORAGE_DTYPES[pid[1].path.slice('torch.'.length)];
    if (!dtype) throw bad(`${pid[1].path} is not a storage type`);
    return new StorageRef(dtype, pid[2]);
  };

  for (;;) {
    const at = p;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw bad('pickle protocol newer than 5');
        break;
      case 0x95: // FRAME: a length hint only
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(u32() | 0);
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(take(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(long(take(u32())));
        break;
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(bytes.readDoubleBE(p));
        p += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(take(u32()).toString('utf8'));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(take(u8()).toString('utf8'));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(take(u64()).toString('utf8'));
        break;
      case 0x54: // BINSTRING (Python 2 str)
        stack.push(take(u32()).toString('latin1'));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(take(u8()).toString('latin1'));
        break;
      case 0x42: // BINBYTES
        stack.push(Uint8Array.from(take(u32())));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(Uint8Array.from(take(u8())));
        break;
      case 0x8e: // BINBYTES8
        stack.push(Uint8Array.from(take(u64())));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: { // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: { // DICT
        const d = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x63: { // GLOBAL
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw bad('STACK_GLOBAL without names');
        stack.push(global(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        stack.push(call(pop(), args));
        break;
      }
      case 0x62: { // BUILD
        // Sets Python attributes (an OrderedDict's _metadata, a tensor's extra state): not needed.
        pop();
        const obj = top();
        if (!(obj instanceof Map) && !(obj instanceof TensorRef)) throw bad(`BUILD on a ${pyTypeName(obj)}`);
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistent(pop()));
        break;
      default:
        throw new UserError(`${file}: data.pkl uses pickle opcode 0x${op.toString(16)} at byte ${at}, which this reader does not support; ${FIX}`);
    }
  }
}

/** The tensor `ref` describes, over `bytes` (its whole storage). Contiguous tensors are views. */
function materialize(name: string, ref: TensorRef, bytes: Buffer, file: string): Tensor {
  const { dtype } = ref.storage;
  const storageLen = Math.floor(bytes.length / dtypeBytes(dtype));
  const n = numel(ref.size);
  const shape = ref.size;
  if (n === 0) return { dtype, shape, data: allocData(dtype, 0) };
  let last = ref.offset;
  ref.size.forEach((s, d) => (last += (s - 1) * ref.stride[d]));
  if (ref.offset < 0 || last >= storageLen) {
    throw new UserError(`${file}: damaged checkpoint (tensor ${name} reaches element ${last} of a storage of ${storageLen}); re-save or re-download it`);
  }
  const storage = typedView(dtype, bytes.buffer, bytes.byteOffset, storageLen);
  let contiguous = true;
  for (let d = shape.length - 1, expect = 1; d >= 0; d--) {
    if (shape[d] !== 1 && ref.stride[d] !== expect) contiguous = false;
    expect *= shape[d];
  }
  if (contiguous) return { dtype, shape, data: storage.subarray(ref.offset, ref.offset + n) as TensorData };
  // Gather a strided view (e.g. a transposed weight) into row-major order. Source and
  // destination are the same array class, so element copies need no conversion.
  const src = storage as Float64Array;
  const out = allocData(dtype, n);
  const dst = out as Float64Array;
  const index = new Array<number>(shape.length).fill(0);
  for (let i = 0, at = ref.offset; i < n; i++) {
    dst[i] = src[at];
    for (let d = shape.length - 1; d >= 0; d--) {
      at += ref.stride[d];
      if (++index[d] < shape[d]) break;
      at -= ref.stride[d] * shape[d];
      index[d] = 0;
    }
  }
  return { dtype, shape, data: out };
}

async function sniff(file: string): Promise<Buffer> {
  try {
    const fh = await fs.open(file, 'r');
    try {
      const head = Buffer.alloc(512);
      const { bytesRead } = await fh.read(head, 0, 512, 0);
      return head.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw readFailure(e, file);
  }
}

/**
 * Reads the state dict saved in `file`, in its key order. Tensors that shared a storage in PyTorch
 * (or are contiguous slices of one) share memory here too: copy before mutating in place.
 */
export async function readTorchPth(file: string): Promise<Map<string, Tensor>> {
  const head = await sniff(file);
  if (head.toString('latin1', 0, 2) !== 'PK') {
    if (head.toString('latin1', 257, 262) === 'ustar' || head[0] === 0x80) {
      throw new UserError(`${file}: is in PyTorch's legacy (pre-1.6) format, which is not supported; re-save it with torch>=1.6: torch.save(torch.load(f), 'new.pth')`);
    }
    throw new UserError(`${file}: not a PyTorch checkpoint (expected a zip archive written by torch.save); check the path`);
  }
  const zip = await ZipReader.open(file);
  try {
    const names = [...zip.entries.keys()];
    // TorchScript archives also have a data.pkl, but it pickles the scripted module.
    if (names.some((n) => /^[^/]+\/(constants\.pkl|code\/)/.test(n))) {
      throw new UserError(`${file}: is a TorchScript archive (torch.jit.save), not a state_dict; ${FIX}`);
    }
    const pkl = names.find((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (!pkl) throw new UserError(`${file}: is a zip archive but not a torch.save checkpoint (no data.pkl); ${FIX}`);
    const prefix = pkl.slice(0, -'data.pkl'.length);
    if (zip.entries.has(`${prefix}byteorder`) && (await zip.read(`${prefix}byteorder`)).toString().trim() !== 'little') {
      throw new UserError(`${file}: was saved on a big-endian machine, which is not supported; re-save it on a little-endian one (x86, ARM)`);
    }
    const root = unpickle(await zip.read(pkl), file);
    if (!(root instanceof Map)) throw new UserError(`${file}: holds a ${pyTypeName(root)}, not a state_dict; ${FIX}`);

    const refs = new Map<string, TensorRef>();
    for (const [key, value] of root) {
      if (typeof key !== 'string') throw new UserError(`${file}: has a ${pyTypeName(key)} key, not a state_dict; ${FIX}`);
      if (value instanceof TensorRef) {
        refs.set(key, value);
      } else if (value instanceof Map) {
        throw new UserError(`${file}: entry '${key}' is a dict, so this is a training checkpoint rather than a state_dict; re-save the weights alone, e.g. torch.save(ckpt['${key}'], 'weights.pth')`);
      } else {
        throw new UserError(`${file}: entry '${key}' is a ${pyTypeName(value)}, not a tensor; ${FIX}`);
      }
    }

    const storageBytes = new Map<string, Buffer>();
    const out = new Map<string, Tensor>();
    for (const [key, ref] of refs) {
      const entry = `${prefix}data/${ref.storage.key}`;
      let bytes = storageBytes.get(ref.storage.key);
      if (!bytes) {
        if (!zip.entries.has(entry)) throw new UserError(`${file}: damaged checkpoint (storage ${entry} of ${key} is missing); re-save or re-download it`);
        bytes = await zip.read(entry);
        storageBytes.set(ref.storage.key, bytes);
      }
      out.set(key, materialize(key, ref, bytes, file));
    }
    return out;
  } finally {
    await zip.close();
  }
}
