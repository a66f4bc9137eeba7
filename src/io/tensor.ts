/**
 * The host-side tensor that checkpoint readers and writers exchange: a dtype tag, a shape and a
 * row-major typed array. F16 and BF16 have no typed array in Node 20, so they carry their raw
 * 16-bit patterns in a Uint16Array; `toFloat32` decodes them.
 */
import { endianness } from 'node:os';

/** safetensors' dtype names; torch storages map onto the same set. */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export interface DTypeArrays {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U64: BigUint64Array;
  U32: Uint32Array;
  U16: Uint16Array;
  U8: Uint8Array;
  /** One byte per element, 0 or 1. */
  BOOL: Uint8Array;
}

export type TensorData = DTypeArrays[DType];

export interface Tensor<D extends DType = DType> {
  dtype: D;
  /** Row-major dimensions; [] for a scalar (one element). */
  shape: number[];
  /** Exactly `numel(shape)` elements; may be a view into a larger buffer shared with other tensors. */
  data: DTypeArrays[D];
}

type ArrayCtor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData; BYTES_PER_ELEMENT: number };

const CTORS: Record<DType, ArrayCtor> = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I16: Int16Array,
  I8: Int8Array,
  U64: BigUint64Array,
  U32: Uint32Array,
  U16: Uint16Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
};

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.hasOwn(CTORS, s);
}

export function dtypeBytes(dtype: DType): number {
  return CTORS[dtype].BYTES_PER_ELEMENT;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Whether `data` is the typed array class that `dtype` uses. */
export function dataMatchesDType(dtype: DType, data: TensorData): boolean {
  return data instanceof CTORS[dtype];
}

// Both file formats store little-endian values and we hand out views without swapping bytes.
const LITTLE_ENDIAN = endianness() === 'LE';

/**
 * `length` elements of `dtype` starting at `byteOffset` of `buffer`, without copying when the
 * offset is aligned for the element type (typed arrays require that); otherwise an aligned copy.
 */
export function typedView(dtype: DType, buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData {
  if (!LITTLE_ENDIAN) throw new Error('tensor files are little-endian and this host is big-endian, which is not supported');
  const Ctor = CTORS[dtype];
  if (byteOffset % Ctor.BYTES_PER_ELEMENT === 0) return new Ctor(buffer, byteOffset, length);
  const copy = new Uint8Array(length * Ctor.BYTES_PER_ELEMENT);
  copy.set(new Uint8Array(buffer, byteOffset, copy.length));
  return new Ctor(copy.buffer, 0, length);
}

/** A zeroed array of `length` elements of `dtype`. */
export function allocData(dtype: DType, length: number): TensorData {
  const Ctor = CTORS[dtype];
  return new Ctor(new ArrayBuffer(length * Ctor.BYTES_PER_ELEMENT), 0, length);
}

/** The bytes of a tensor's data, as a view (no copy). */
export function dataBytes(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bf16ToNumber(bits: number): number {
  u32[0] = bits << 16;
  return f32[0];
}

function f16ToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The tensor's values as float32 (the data itself when it already is F32). */
export function toFloat32(t: Tensor): Float32Array {
  if (t.dtype === 'F32') return t.data as Float32Array;
  const out = new Float32Array(t.data.length);
  if (t.dtype === 'F16' || t.dtype === 'BF16') {
    const decode = t.dtype === 'F16' ? f16ToNumber : bf16ToNumber;
    const src = t.data as Uint16Array;
    for (let i = 0; i < src.length; i++) out[i] = decode(src[i]);
  } else {
    const src = t.data;
    for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
  }
  return out;
}
