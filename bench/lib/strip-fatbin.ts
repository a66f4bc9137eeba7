/**
 * Shrinks ONNX Runtime's CUDA provider for one GPU architecture, so the GPU check's bundle fits the
 * device tool's carry limit: zeroes the payload of every cubin in the .nv_fatbin section whose SM
 * version is not kept (headers stay, so offsets and the ELF are unchanged; zeros compress away).
 * The fatbin layout (docs/gpu.md): containers of magic 0xBA55ED50 {u32 magic, u16 version,
 * u16 headerSize, u64 payloadSize}, each holding entries {u16 kind, u16 _, u32 headerSize,
 * u64 payloadSize, …, u32 sm at byte 28}. Prints the bytes kept per architecture.
 *   node --import tsx bench/lib/strip-fatbin.ts IN.so OUT.so [SM=90]
 */
import { readFileSync, writeFileSync } from 'node:fs';

const [input, output, keep = '90'] = process.argv.slice(2);
const so = readFileSync(input);
const shoff = Number(so.readBigUInt64LE(0x28));
const shentsize = so.readUInt16LE(0x3a);
const shnum = so.readUInt16LE(0x3c);
const shstrndx = so.readUInt16LE(0x3e);
const section = (i: number) => ({ name: so.readUInt32LE(shoff + i * shentsize), offset: Number(so.readBigUInt64LE(shoff + i * shentsize + 24)), size: Number(so.readBigUInt64LE(shoff + i * shentsize + 32)) });
const names = section(shstrndx).offset;
const nameOf = (n: number) => so.toString('latin1', names + n, so.indexOf(0, names + n));
const fatbin = Array.from({ length: shnum }, (_, i) => section(i)).find((s) => nameOf(s.name) === '.nv_fatbin');
if (!fatbin) throw new Error(`${input} has no .nv_fatbin section`);

const bytes = new Map<number, { kept: boolean; size: number }>();
const end = fatbin.offset + fatbin.size;
let p = fatbin.offset;
while (p + 16 <= end) {
  if (so.readUInt32LE(p) !== 0xba55ed50) { p += 8; continue; } // containers are 8-byte aligned
  const containerEnd = p + so.readUInt16LE(p + 6) + Number(so.readBigUInt64LE(p + 8));
  for (let q = p + so.readUInt16LE(p + 6); q < containerEnd;) {
    const headerSize = so.readUInt32LE(q + 4);
    const size = Number(so.readBigUInt64LE(q + 8));
    const sm = so.readUInt32LE(q + 28);
    const kept = String(sm) === keep;
    if (!kept) so.fill(0, q + headerSize, q + headerSize + size);
    const tally = bytes.get(sm) ?? { kept, size: 0 };
    tally.size += size;
    bytes.set(sm, tally);
    q += headerSize + size;
  }
  p = containerEnd;
}
if (!bytes.get(Number(keep))) throw new Error(`${input} has no sm_${keep} code; the architectures are ${[...bytes.keys()].join(', ')}`);
writeFileSync(output, so);
console.log([...bytes].sort((a, b) => a[0] - b[0]).map(([sm, t]) => `sm_${sm} ${(t.size / 1e6).toFixed(1)} MB ${t.kept ? 'kept' : 'zeroed'}`).join(', '));
