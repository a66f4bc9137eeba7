import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { downloadOnce, sha256PrefixFromFilename } from '../../src/io/download.ts';
import { UserError } from '../../src/errors.ts';
import { tempDirs } from './tmp.ts';

// Only the loopback server below is ever contacted; a proxy from the environment would intercept it.
for (const v of ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY']) delete process.env[v];

const payload = randomBytes(200_000);
const sha = createHash('sha256').update(payload).digest('hex');
const hits = new Map<string, number>();
let server: Server;
let base: string;

before(async () => {
  server = createServer((req, res) => {
    hits.set(req.url!, (hits.get(req.url!) ?? 0) + 1);
    if (req.url!.startsWith('/weights-')) {
      res.writeHead(200, { 'content-length': payload.length });
      res.write(payload.subarray(0, 1000));
      setTimeout(() => res.end(payload.subarray(1000)), 5);
    } else if (req.url === '/moved') {
      res.writeHead(302, { location: `/weights-${sha.slice(0, 8)}.pth` }).end();
    } else if (req.url === '/stall') {
      res.writeHead(200, { 'content-length': payload.length });
      res.write(payload.subarray(0, 1000)); // and never the rest
    } else if (req.url === '/hang') {
      // Accept the connection, never answer.
    } else {
      res.writeHead(404).end('not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

const tmp = tempDirs('ort-dann-dl-');

async function userError(p: Promise<unknown>): Promise<UserError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof UserError, `expected a UserError, got ${err}`);
  assert.ok(!err.message.includes('\n'), err.message);
  return err;
}

test('sha256PrefixFromFilename reads torch hub names', () => {
  assert.equal(sha256PrefixFromFilename('https://download.pytorch.org/models/resnet34-b627a593.pth'), 'b627a593');
  assert.equal(sha256PrefixFromFilename('/cache/resnet18-f37072fd.pth?x=1'), 'f37072fd');
  assert.equal(sha256PrefixFromFilename('model.pth'), undefined);
});

test('downloads, verifies the hash prefix, reports progress, then reuses the copy', async () => {
  const url = `${base}/weights-${sha.slice(0, 8)}.pth`;
  const dest = join(tmp(), 'cache', 'sub', 'w.pth');
  const progress: [number, number | undefined][] = [];
  const first = await downloadOnce(url, dest, { sha256Prefix: sha256PrefixFromFilename(url), onProgress: (r, t) => progress.push([r, t]) });
  assert.deepEqual(first, { path: dest, digest: sha, downloaded: true });
  assert.ok(readFileSync(dest).equals(payload));
  assert.deepEqual(progress.at(-1), [payload.length, payload.length]);
  const n = hits.get(new URL(url).pathname);
  const second = await downloadOnce(url, dest, { sha256Prefix: sha.slice(0, 8) });
  assert.equal(second.downloaded, false);
  assert.equal(hits.get(new URL(url).pathname), n, 'no request for a valid cached copy');
});

test('follows redirects and checks a full sha256; a damaged cached copy is replaced', async () => {
  const dest = join(tmp(), 'w.pth');
  writeFileSync(dest, 'damaged');
  const r = await downloadOnce(`${base}/moved`, dest, { sha256: sha.toUpperCase() });
  assert.equal(r.downloaded, true);
  assert.ok(readFileSync(dest).equals(payload));
});

test('a wrong hash is a UserError and leaves nothing behind', async () => {
  const dir = tmp();
  const url = `${base}/weights-00000000.pth`;
  const err = await userError(downloadOnce(url, join(dir, 'w.pth'), { sha256Prefix: '00000000' }));
  assert.ok(err.message.includes(url) && err.message.includes('--weights <file>'), err.message);
  assert.match(err.message, /does not match the expected 00000000/);
  assert.deepEqual(readdirSync(dir), []);
});

test('offline (connection refused) is a UserError naming the URL and --weights', async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/resnet34-b627a593.pth`;
  await new Promise((r) => closed.close(r));
  const err = await userError(downloadOnce(url, join(tmp(), 'w.pth'), { sha256Prefix: 'b627a593' }));
  assert.match(err.message, /ECONNREFUSED/);
  assert.ok(err.message.includes(url) && err.message.includes('--weights <file>'), err.message);
});

test('a server that never answers, or stalls mid-body, times out', async () => {
  for (const path of ['/hang', '/stall']) {
    const dir = tmp();
    const started = Date.now();
    const err = await userError(downloadOnce(`${base}${path}`, join(dir, 'w.pth'), { sha256: sha, timeoutMs: 300 }));
    assert.match(err.message, /timed out/);
    assert.ok(err.message.includes(`${base}${path}`));
    assert.ok(Date.now() - started < 3000);
    assert.deepEqual(readdirSync(dir), [], 'no partial file is left');
  }
});

test('an HTTP error status is a UserError', async () => {
  const dest = join(tmp(), 'w.pth');
  const err = await userError(downloadOnce(`${base}/missing.pth`, dest, { sha256: sha }));
  assert.match(err.message, /HTTP 404/);
  assert.ok(!existsSync(dest));
});
