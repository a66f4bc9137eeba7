/**
 * Reads the regular files of a .tgz (an npm package tarball) as a stream: 512-byte ustar headers,
 * each followed by the file's bytes padded to 512. A file body is handed over chunk by chunk, so a
 * 230 MB shared library never sits in memory whole.
 */
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { UserError } from '../errors.ts';

export interface TarEntry {
  /** Path inside the archive (ustar prefix joined with name). */
  name: string;
  size: number;
  /** The file's bytes; must be consumed (or `skip`ped) before the next entry is read. */
  body: AsyncIterable<Buffer>;
}

const BLOCK = 512;

function field(header: Buffer, start: number, length: number): string {
  const raw = header.subarray(start, start + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? length : end).toString('utf8');
}

function octal(header: Buffer, start: number, length: number, file: string): number {
  const text = field(header, start, length).trim();
  const value = text === '' ? 0 : parseInt(text, 8);
  if (!Number.isSafeInteger(value) || value < 0) throw new UserError(`${file} is not a valid .tgz (a tar header has size '${text}'); download it again`);
  return value;
}

/** A byte reader over a stream that can hand out exact lengths. */
class Reader {
  private buffered: Buffer[] = [];
  private length = 0;
  private readonly source: AsyncIterator<Buffer>;
  constructor(stream: AsyncIterable<Buffer>) {
    this.source = stream[Symbol.asyncIterator]();
  }

  /** Exactly `n` bytes, or fewer only at the end of the stream. */
  async take(n: number): Promise<Buffer> {
    while (this.length < n) {
      const next = await this.source.next();
      if (next.done) break;
      this.buffered.push(next.value);
      this.length += next.value.length;
    }
    const all = Buffer.concat(this.buffered);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    this.buffered = rest.length ? [rest] : [];
    this.length = rest.length;
    return out;
  }

  /** Up to `max` bytes as they come (at least one unless the stream ended). */
  async some(max: number): Promise<Buffer> {
    if (this.length === 0) {
      const next = await this.source.next();
      if (next.done) return Buffer.alloc(0);
      this.buffered = [next.value];
      this.length = next.value.length;
    }
    return this.take(Math.min(max, this.length));
  }
}

/** Every regular file of the gzipped tar `file`, in archive order. */
export async function* readTarGz(file: string): AsyncGenerator<TarEntry> {
  const reader = new Reader(createReadStream(file).pipe(createGunzip()));
  const truncated = () => new UserError(`${file} is truncated or not a .tgz; download it again`);
  try {
    for (;;) {
      const header = await reader.take(BLOCK);
      if (header.length < BLOCK) throw truncated();
      if (header.every((b) => b === 0)) return; // end-of-archive marker
      const name = [field(header, 345, 155), field(header, 0, 100)].filter(Boolean).join('/');
      const size = octal(header, 124, 12, file);
      const type = String.fromCharCode(header[156] || 0x30);
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      let left = size;
      const nextChunk = async () => {
        const chunk = await reader.some(Math.min(left, 1 << 20));
        if (chunk.length === 0) throw truncated();
        left -= chunk.length;
        return chunk;
      };
      async function* body(): AsyncGenerator<Buffer> {
        while (left > 0) yield await nextChunk();
      }
      if (type === '0' || type === '\0') yield { name, size, body: body() };
      while (left > 0) await nextChunk(); // whatever the consumer left unread
      if (padded > size && (await reader.take(padded - size)).length < padded - size) throw truncated();
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') throw new UserError(`${file} is not a valid .tgz (${(e as Error).message}); download it again`);
    throw e;
  }
}
