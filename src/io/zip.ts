/**
 * A read-only zip reader that reads the central directory once and then single entries with
 * positioned reads, so a multi-gigabyte archive is never loaded whole. Handles ZIP64 (what
 * PyTorch writes for large checkpoints), stored and deflated entries, and checks CRC-32s.
 */
import fs from 'node:fs/promises';
import { crc32, inflateRawSync } from 'node:zlib';
import { UserError } from '../errors.ts';

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate. */
  method: number;
  compressedSize: number;
  size: number;
  crc: number;
  localHeaderOffset: number;
  encrypted: boolean;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;

// Values beyond 2^53 lose precision but still exceed the file size, which the readers check.
function u64(b: Buffer, at: number): number {
  return Number(b.readBigUInt64LE(at));
}

export class ZipReader {
  private constructor(
    readonly file: string,
    private readonly fh: fs.FileHandle,
    readonly entries: Map<string, ZipEntry>,
  ) {}

  /** Opens `file` and reads its central directory; errors name `file`. */
  static async open(file: string): Promise<ZipReader> {
    const fh = await fs.open(file, 'r');
    try {
      return new ZipReader(file, fh, await readDirectory(file, fh));
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  private corrupt(what: string): UserError {
    return new UserError(`${this.file}: damaged zip archive (${what}); re-save or re-download it`);
  }

  private async readAt(position: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafeSlow(length);
    for (let got = 0; got < length; ) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, position + got);
      if (bytesRead === 0) throw new UserError(`${this.file}: truncated (an entry runs past the end of the file); re-save or re-download it`);
      got += bytesRead;
    }
    return buf;
  }

  /** The uncompressed bytes of entry `name`, in a buffer of their own. */
  async read(name: string): Promise<Buffer> {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.file}: no zip entry ${name}`);
    if (e.encrypted) throw new UserError(`${this.file}: entry ${name} is encrypted; save the archive without encryption`);
    const local = await this.readAt(e.localHeaderOffset, 30);
    if (local.readUInt32LE(0) !== LOCAL_SIG) throw this.corrupt(`no local header for ${name}`);
    const start = e.localHeaderOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
    let data = await this.readAt(start, e.compressedSize);
    if (e.method === 8) {
      try {
        data = inflateRawSync(data);
      } catch (err) {
        throw this.corrupt(`entry ${name} does not inflate: ${(err as Error).message}`);
      }
    } else if (e.method !== 0) {
      throw new UserError(`${this.file}: entry ${name} uses zip compression method ${e.method}; re-save it with torch.save (stored) or as deflate`);
    }
    if (data.length !== e.size) throw this.corrupt(`entry ${name} has ${data.length} bytes, the directory says ${e.size}`);
    if (crc32(data) >>> 0 !== e.crc) throw this.corrupt(`entry ${name} fails its CRC-32 check`);
    return data;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

async function readDirectory(file: string, fh: fs.FileHandle): Promise<Map<string, ZipEntry>> {
  const corrupt = (what: string) => new UserError(`${file}: damaged zip archive (${what}); re-save or re-download it`);
  const { size } = await fh.stat();
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT + 20);
  const tail = Buffer.alloc(tailLen);
  await fh.read(tail, 0, tailLen, size - tailLen);
  // The end record sits before a comment of up to 64 KiB; the real one's comment ends the file.
  let eocd = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG && i + EOCD_SIZE + tail.readUInt16LE(i + 20) === tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new UserError(`${file}: truncated or not a zip archive (no end-of-central-directory record); re-save or re-download it`);
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if ((count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) && eocd >= 20 && tail.readUInt32LE(eocd - 20) === ZIP64_LOCATOR_SIG) {
    const recOffset = u64(tail, eocd - 20 + 8);
    const rec = Buffer.alloc(56);
    await fh.read(rec, 0, 56, recOffset);
    if (rec.readUInt32LE(0) !== ZIP64_EOCD_SIG) throw corrupt('bad ZIP64 end record');
    count = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
  }
  if (cdOffset + cdSize > size) throw new UserError(`${file}: truncated (the central directory runs past the end of the file); re-save or re-download it`);
  const cd = Buffer.alloc(cdSize);
  await fh.read(cd, 0, cdSize, cdOffset);

  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG) throw corrupt(`bad central directory entry ${i}`);
    const flags = cd.readUInt16LE(p + 8);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    // Bit 11: the name is UTF-8; otherwise CP437, which agrees with UTF-8 on ASCII names.
    const name = cd.toString(flags & 0x800 ? 'utf8' : 'latin1', p + 46, p + 46 + nameLen);
    const entry: ZipEntry = {
      name,
      method: cd.readUInt16LE(p + 10),
      crc: cd.readUInt32LE(p + 16),
      compressedSize: cd.readUInt32LE(p + 20),
      size: cd.readUInt32LE(p + 24),
      localHeaderOffset: cd.readUInt32LE(p + 42),
      encrypted: (flags & 1) !== 0,
    };
    // ZIP64 extra field: 64-bit values for exactly those fields saturated at 0xffffffff, in this order.
    for (let x = p + 46 + nameLen, end = x + extraLen; x + 4 <= end; ) {
      const id = cd.readUInt16LE(x);
      const len = cd.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let q = x + 4;
        for (const field of ['size', 'compressedSize', 'localHeaderOffset'] as const) {
          if (entry[field] === 0xffffffff) {
            if (q + 8 > x + 4 + len) throw corrupt(`short ZIP64 field for ${name}`);
            entry[field] = u64(cd, q);
            q += 8;
          }
        }
      }
      x += 4 + len;
    }
    entries.set(name, entry);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}
