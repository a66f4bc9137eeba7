/**
 * safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 * `{"__metadata__"?: {string: string}, name: {dtype, shape, data_offsets: [begin, end]}}` padded with
 * spaces to a multiple of 8, then the tensors' bytes, tiling the rest of the file exactly.
 *
 * Reading loads the file into one buffer and hands out typed-array views into it (tensors whose
 * offset is misaligned for their type, which our writer never produces, are copied). Writing emits
 * the header and then each tensor's own bytes in turn, so no second copy of the model is built.
 */
import { readFailure } from './read-error.ts';
import fs from 'node:fs/promises';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from './atomic.ts';
import { dataBytes, dataMatchesDType, dtypeBytes, isDType, numel, typedView, type DType, type Tensor } from './tensor.ts';

export interface SafetensorsContent {
  /** In file (data offset) order. */
  tensors: Map<string, Tensor>;
  /** The `__metadata__` string map; empty when absent. */
  metadata: Record<string, string>;
}

/** The reference implementation's cap; a larger header means a corrupt length prefix. */
const MAX_HEADER_BYTES = 100_000_000;

// The reference writer orders tensors by this rank, highest first (largest alignment first, so
// every tensor starts aligned), then by name.
const DTYPE_RANK: Record<DType, number> = { BOOL: 0, U8: 1, I8: 2, I16: 5, U16: 6, F16: 7, BF16: 8, I32: 9, U32: 10, F32: 11, F64: 12, I64: 13, U64: 14 };

function corrupt(file: string, what: string): UserError {
  return new UserError(`${file}: not a valid safetensors file (${what}); re-save or re-download it`);
}

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** Parses a whole safetensors file held in `bytes`; `file` names it in errors. */
export function parseSafetensors(bytes: Uint8Array, file: string): SafetensorsContent {
  if (bytes.length < 8) throw new UserError(`${file}: truncated (${bytes.length} bytes, not even a safetensors header length); re-save or re-download it`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) throw corrupt(file, `header length ${headerLen} exceeds ${MAX_HEADER_BYTES} bytes`);
  const n = Number(headerLen);
  if (8 + n > bytes.length) throw new UserError(`${file}: truncated (the header alone needs ${8 + n} bytes, the file has ${bytes.length}); re-save or re-download it`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw corrupt(file, `header is not UTF-8 JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw corrupt(file, 'header is not a JSON object');

  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof info !== 'object' || info === null || Array.isArray(info)) throw corrupt(file, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') throw corrupt(file, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = (info ?? {}) as Record<string, unknown>;
    if (!isDType(dtype)) throw corrupt(file, `tensor "${name}" has unsupported dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isCount)) throw corrupt(file, `tensor "${name}" has a bad shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
      throw corrupt(file, `tensor "${name}" has bad data_offsets`);
    }
    const [begin, end] = offsets as number[];
    if (end - begin !== numel(shape) * dtypeBytes(dtype)) {
      throw corrupt(file, `tensor "${name}" spans ${end - begin} bytes but ${dtype}[${shape.join(',')}] needs ${numel(shape) * dtypeBytes(dtype)}`);
    }
    entries.push({ name, dtype, shape, begin, end });
  }

  const dataStart = 8 + n;
  const dataLen = bytes.length - dataStart;
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of entries) {
    if (e.end > dataLen) {
      throw new UserError(`${file}: truncated (tensor "${e.name}" ends at data byte ${e.end}, the file has ${dataLen} data bytes); re-save or re-download it`);
    }
    if (e.begin < pos) throw corrupt(file, `tensor "${e.name}" overlaps the previous tensor`);
    if (e.begin > pos) throw corrupt(file, `${e.begin - pos} unused bytes before tensor "${e.name}"`);
    pos = e.end;
  }
  if (pos !== dataLen) throw corrupt(file, `${dataLen - pos} bytes after the last tensor`);

  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    const data = typedView(e.dtype, bytes.buffer, bytes.byteOffset + dataStart + e.begin, numel(e.shape));
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/** Reads a safetensors file, validating it; tensors are views into one buffer holding the file. */
export async function readSafetensors(file: string): Promise<SafetensorsContent> {
  let bytes: Buffer;
  try {
    const fh = await fs.open(file, 'r');
    try {
      // One allocation of exactly the file's size (readFile caps at 2 GiB and may reallocate).
      const { size } = await fh.stat();
      bytes = Buffer.allocUnsafeSlow(size);
      for (let got = 0; got < size; ) {
        const { bytesRead } = await fh.read(bytes, got, size - got, got);
        if (bytesRead === 0) throw new UserError(`${file}: shrank while being read; retry once nothing else writes it`);
        got += bytesRead;
      }
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw readFailure(e, file);
  }
  return parseSafetensors(bytes, file);
}

function byteCompare(a: string, b: string): number {
  // The reference sorts names by their UTF-8 bytes, which differs from JS's UTF-16 order.
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The file as a list of chunks: the length-prefixed header, then views of each tensor's data.
 * Byte-identical to the reference (Python/Rust) writer's output, metadata keys aside (they are
 * sorted here; the reference uses hash order).
 */
export function encodeSafetensors(tensors: Map<string, Tensor> | Record<string, Tensor>, metadata: Record<string, string> = {}): Uint8Array[] {
  const list = [...(tensors instanceof Map ? tensors : Object.entries(tensors))];
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new Error('a tensor cannot be named __metadata__');
    if (!isDType(t.dtype) || !dataMatchesDType(t.dtype, t.data)) throw new Error(`tensor "${name}": ${t.data?.constructor?.name} does not hold dtype ${t.dtype}`);
    if (!t.shape.every(isCount) || numel(t.shape) !== t.data.length) {
      throw new Error(`tensor "${name}": shape [${t.shape.join(',')}] does not match its ${t.data.length} elements`);
    }
  }
  list.sort(([an, a], [bn, b]) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || byteCompare(an, bn));

  // Built by hand: a JS object would move integer-like names such as "0" to the front.
  const parts: string[] = [];
  const metaKeys = Object.keys(metadata).sort(byteCompare);
  if (metaKeys.length > 0) {
    parts.push(`"__metadata__":{${metaKeys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(String(metadata[k]))}`).join(',')}}`);
  }
  let offset = 0;
  for (const [name, t] of list) {
    const end = offset + t.data.byteLength;
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8 + padded, 0x20);
  head.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(head, 8);
  return [head, ...list.map(([, t]) => dataBytes(t.data))];
}

/** Writes a safetensors file atomically (see atomic.ts), streaming each tensor's bytes. */
export async function writeSafetensors(file: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
