/**
 * ModelProto read/write on top of the onnx-proto package (protobufjs), and conversion between
 * TensorProto and typed arrays. int64 fields may decode as Long objects: everything leaving this
 * module is a plain number.
 */
import { readFileSync } from 'node:fs';
import onnxProto from 'onnx-proto';
import { UserError } from '../errors.ts';

export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.IModelProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type AttributeProto = onnxProto.onnx.IAttributeProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

/** ONNX TensorProto.DataType codes for the dtypes this project handles. */
export const DataType = {
  float: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, double: 11,
} as const;
export type DType = keyof typeof DataType;

const dtypeByCode = new Map<number, DType>(Object.entries(DataType).map(([k, v]) => [v, k as DType]));

export function dtypeFromCode(code: number): DType {
  const d = dtypeByCode.get(code);
  if (!d) throw new Error(`unsupported ONNX tensor data type ${code}`);
  return d;
}

export type TypedData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array;

/** A dense host tensor. int64 data is kept as BigInt64Array. */
export interface HostTensor {
  dtype: DType;
  dims: number[];
  data: TypedData;
}

export function toNumber(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

const bytesPer: Record<DType, number> = { float: 4, uint8: 1, int8: 1, int32: 4, int64: 8, bool: 1, float16: 2, double: 8 };

function viewOf(dtype: DType, bytes: Uint8Array, count: number): TypedData {
  // Copy into an aligned buffer: raw_data offsets inside a decoded message are not aligned.
  const buf = new ArrayBuffer(count * bytesPer[dtype]);
  new Uint8Array(buf).set(bytes.subarray(0, count * bytesPer[dtype]));
  switch (dtype) {
    case 'float': return new Float32Array(buf);
    case 'double': return new Float64Array(buf);
    case 'int32': return new Int32Array(buf);
    case 'int64': return new BigInt64Array(buf);
    case 'float16': return new Uint16Array(buf);
    case 'int8': return new Int8Array(buf);
    default: return new Uint8Array(buf);
  }
}

export function numel(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function tensorFromProto(t: TensorProto): HostTensor {
  const dtype = dtypeFromCode(t.dataType ?? 0);
  const dims = (t.dims ?? []).map(toNumber);
  const count = numel(dims);
  if (t.dataLocation === 1) throw new UserError(`tensor ${t.name} uses external data; save the model with all tensors inside the .onnx file`);
  if (t.rawData && t.rawData.length > 0) {
    if (t.rawData.length < count * bytesPer[dtype]) throw new UserError(`tensor ${t.name} has ${t.rawData.length} bytes for ${count} elements; the model file is corrupt`);
    return { dtype, dims, data: viewOf(dtype, t.rawData, count) };
  }
  switch (dtype) {
    case 'float': return { dtype, dims, data: Float32Array.from(t.floatData ?? []) };
    case 'double': return { dtype, dims, data: Float64Array.from(t.doubleData ?? []) };
    case 'int64': return { dtype, dims, data: BigInt64Array.from((t.int64Data ?? []).map((v) => BigInt(toNumber(v)))) };
    case 'float16': return { dtype, dims, data: Uint16Array.from(t.int32Data ?? []) };
    case 'int32': return { dtype, dims, data: Int32Array.from(t.int32Data ?? []) };
    case 'int8': return { dtype, dims, data: Int8Array.from(t.int32Data ?? []) };
    default: return { dtype, dims, data: Uint8Array.from(t.int32Data ?? []) };
  }
}

export function tensorToProto(name: string, t: HostTensor): TensorProto {
  const d = t.data;
  return {
    name,
    dataType: DataType[t.dtype],
    dims: t.dims,
    rawData: new Uint8Array(d.buffer, d.byteOffset, d.byteLength),
  };
}

/** Values of a small integer tensor as numbers (shapes, axes, pads). */
export function intValues(t: HostTensor): number[] {
  return Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
}

const MAX_PROTO_BYTES = 2 ** 31 - 1;

export function encodeModel(model: ModelProto): Uint8Array {
  const bytes = onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
  if (bytes.length > MAX_PROTO_BYTES) throw new UserError(`model is ${bytes.length} bytes, above protobuf's 2 GB limit; use a smaller model or image size`);
  return bytes;
}

export function decodeModel(bytes: Uint8Array, source = 'model'): ModelProto {
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new UserError(`${source} is not a valid ONNX model (${(e as Error).message}); re-export or rebuild it`);
  }
}

export function readModelFile(path: string): ModelProto {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(code === 'ENOENT' ? `${path} does not exist; check the path` : `cannot read ${path} (${code ?? (e as Error).message})`);
  }
  if (bytes.length === 0) throw new UserError(`${path} is empty (0 bytes); rebuild or re-export the model`);
  const model = decodeModel(bytes, path);
  if (!model.graph || (model.graph.node ?? []).length === 0) throw new UserError(`${path} holds no ONNX graph; it is truncated or not an ONNX model`);
  return model;
}
