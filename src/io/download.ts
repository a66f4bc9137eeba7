/**
 * Fetches a file once: later calls find it in place and only re-hash it. The body streams through
 * a SHA-256 into a temp file next to the destination, which is renamed into place only once the
 * hash matches, so the destination is always either absent or verified.
 */
import axios, { isAxiosError } from 'axios';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from './atomic.ts';

export interface DownloadOptions {
  /** The full hex SHA-256 of the file. */
  sha256?: string;
  /** Leading hex digits of the SHA-256, as torchvision file names carry (`resnet34-b627a593.pth`). */
  sha256Prefix?: string;
  /** A Subresource Integrity string (`sha512-<base64>`), as npm registry packages carry. */
  integrity?: string;
  /** The user's alternative, ending every error message (default: pass the file with --weights). */
  fallback?: string;
  /** Give up when no data arrives for this long (connecting included); default 30 s. */
  timeoutMs?: number;
  /** Called as data arrives; `total` is undefined when the server does not announce a length. */
  onProgress?: (received: number, total: number | undefined) => void;
}

export interface DownloadResult {
  path: string;
  /** Hex digest in the algorithm that was checked (SHA-256 unless an integrity names another). */
  digest: string;
  /** False when a valid copy was already in place. */
  downloaded: boolean;
}

/** The hash prefix embedded in a torch hub style file name (`name-<hex>.ext`), if any. */
export function sha256PrefixFromFilename(nameOrUrl: string): string | undefined {
  return /-([0-9a-f]{8,64})\.[^.]*$/.exec(basename(nameOrUrl.split(/[?#]/)[0]))?.[1];
}

async function digestOfFile(file: string, algorithm: string): Promise<string | undefined> {
  const hash = createHash(algorithm);
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return hash.digest('hex');
}

const OFFLINE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ECONNRESET', 'ENETUNREACH', 'EHOSTUNREACH', 'ETIMEDOUT', 'ECONNABORTED', 'EPIPE', 'ERR_NETWORK']);


/**
 * Makes sure `destPath` holds the file at `url` with the expected hash, downloading it only when
 * no valid copy is there. Errors a user can act on (offline, timeout, HTTP status, wrong hash,
 * unwritable folder) are one-line UserErrors naming the URL or path.
 */
export async function downloadOnce(url: string, destPath: string, opts: DownloadOptions): Promise<DownloadResult> {
  const sri = opts.integrity ? /^(sha256|sha384|sha512)-([A-Za-z0-9+/]+=*)$/.exec(opts.integrity) : null;
  if (opts.integrity && !sri) throw new Error(`downloadOnce: unsupported integrity ${opts.integrity}`);
  const algorithm = sri ? sri[1] : 'sha256';
  const expected = (sri ? Buffer.from(sri[2], 'base64').toString('hex') : (opts.sha256 ?? opts.sha256Prefix))?.toLowerCase();
  if (!expected || !/^[0-9a-f]+$/.test(expected)) throw new Error('downloadOnce needs a hex sha256, a sha256Prefix or an integrity');
  const matches = (digest: string) => (!sri && !opts.sha256 ? digest.startsWith(expected) : digest === expected);
  const FALLBACK = opts.fallback ?? 'or download the file yourself and pass --weights <file>';

  const existing = await digestOfFile(destPath, algorithm);
  if (existing && matches(existing)) return { path: destPath, digest: existing, downloaded: false };

  const timeoutMs = opts.timeoutMs ?? 30_000;
  const controller = new AbortController();
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const rearm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
  };
  try {
    rearm();
    const res = await axios.get<Readable>(url, { responseType: 'stream', signal: controller.signal, validateStatus: () => true });
    if (res.status < 200 || res.status >= 300) {
      res.data.destroy();
      throw new UserError(`cannot download ${url}: the server answered HTTP ${res.status}; check the URL, ${FALLBACK}`);
    }
    const total = Number(res.headers['content-length']) || undefined;
    const hash = createHash(algorithm);
    let digest = '';
    async function* verified(): AsyncGenerator<Uint8Array> {
      let received = 0;
      for await (const chunk of res.data as AsyncIterable<Buffer>) {
        rearm();
        hash.update(chunk);
        received += chunk.length;
        opts.onProgress?.(received, total);
        yield chunk;
      }
      digest = hash.digest('hex');
      if (!matches(digest)) {
        throw new UserError(`downloaded ${url} but its ${algorithm} ${digest.slice(0, 16)}… does not match the expected ${expected}; the server sent a different file — retry later, ${FALLBACK}`);
      }
    }
    await fs.mkdir(dirname(destPath), { recursive: true });
    await writeFileAtomic(destPath, verified());
    return { path: destPath, digest, downloaded: true };
  } catch (e) {
    if (e instanceof UserError) throw e;
    if (timedOut) throw new UserError(`cannot download ${url}: no data for ${timeoutMs / 1000} s (timed out); check the network, ${FALLBACK}`);
    const code = (e as NodeJS.ErrnoException).code ?? ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code && OFFLINE_CODES.has(code)) throw new UserError(`cannot download ${url} (${code}: offline or the server is unreachable); connect and retry, ${FALLBACK}`);
    if (isAxiosError(e)) throw new UserError(`cannot download ${url} (${e.message}); retry, ${FALLBACK}`);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
