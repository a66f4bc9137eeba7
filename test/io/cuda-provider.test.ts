import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { CUDA_PROVIDER_PACKAGE, findProviderRelease, installProviderFromRegistry, installProviderFromTarball, ortVersionInReadme } from '../../src/io/cuda-provider.ts';
import { readTarGz } from '../../src/io/tar.ts';
import { UserError } from '../../src/errors.ts';
import { tempDirs } from './tmp.ts';

for (const v of ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY']) delete process.env[v];

/** A ustar archive as `tar` writes it: 512-byte headers with octal fields and a checksum. */
function tar(files: Record<string, Buffer | string>): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, content] of Object.entries(files)) {
    const body = Buffer.from(content);
    const h = Buffer.alloc(512);
    h.write(name, 0, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    const sum = h.reduce((a, b) => a + b, 0);
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** A provider package like the registry's: README naming the version, the two .so files (the version string inside). */
function providerPackage(ortVersion: string): Buffer {
  const so = Buffer.concat([Buffer.from('\x7fELF'), Buffer.alloc(70_000, 7), Buffer.from(`\0${ortVersion}\0`), Buffer.alloc(3000, 1)]);
  return gzipSync(tar({
    'package/package.json': JSON.stringify({ name: CUDA_PROVIDER_PACKAGE }),
    'package/README.md': `- ONNX Runtime: [${ortVersion}](https://example.invalid)\n`,
    'package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so': so,
    'package/Plugins/Linux/x64/libonnxruntime_providers_shared.so': Buffer.alloc(1234, 3),
    'package/Plugins/Linux/x64/libonnxruntime_providers_tensorrt.so': Buffer.alloc(99, 4),
  }));
}

const integrity = (b: Buffer) => `sha512-${createHash('sha512').update(b).digest('base64')}`;
const tgz = { '0.4.9': providerPackage('1.29.0'), '0.5.0': providerPackage('1.30.0') };
let server: Server;
let registry: string;
let packumentStatus = 200;
let corrupt = false;

before(async () => {
  server = createServer((req, res) => {
    if (req.url === `/${CUDA_PROVIDER_PACKAGE}`) {
      if (packumentStatus !== 200) return void res.writeHead(packumentStatus).end();
      const versions = Object.fromEntries(Object.entries(tgz).map(([v, b]) => [v, { dist: { tarball: `${registry}/t/${v}.tgz`, integrity: integrity(b) } }]));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        'dist-tags': { latest: '0.5.0' }, readme: '# ONNX Runtime for Unity\n- ONNX Runtime: [1.30.0](https://github.com/microsoft/onnxruntime/releases/tag/v1.30.0)\n', versions,
      }));
    } else if (req.url?.startsWith('/t/')) {
      const body = Buffer.from(tgz[req.url.slice(3, -4) as keyof typeof tgz]);
      if (corrupt) body[body.length - 20] ^= 0xff;
      res.writeHead(200, { 'content-length': body.length }).end(body);
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

const tmp = tempDirs('ort-dann-cuda-');

/** An onnxruntime-node install layout: package folder with its binding folder. */
function fakeOrt(version: string) {
  const packageDir = join(tmp(), 'node_modules', 'onnxruntime-node');
  const bindingDir = join(packageDir, 'bin', 'napi-v6', 'linux', 'x64');
  mkdirSync(bindingDir, { recursive: true });
  writeFileSync(join(bindingDir, 'libonnxruntime.so.1'), 'core');
  return { version, packageDir, bindingDir };
}

async function userError(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  assert.ok(e instanceof UserError, `expected a UserError, got ${e}`);
  assert.doesNotMatch(e.message, /\n/);
  return e.message;
}

test('the tar reader streams every regular file with its exact bytes', async () => {
  const dir = tmp();
  const big = Buffer.from(Array.from({ length: 3_000_001 }, (_, i) => (i * 7) % 251));
  writeFileSync(join(dir, 'a.tgz'), gzipSync(tar({ 'a/small.txt': 'hello', 'a/big.bin': big, 'a/empty': '' })));
  const seen: Record<string, Buffer> = {};
  for await (const e of readTarGz(join(dir, 'a.tgz'))) {
    const chunks: Buffer[] = [];
    if (e.name !== 'a/small.txt') for await (const c of e.body) chunks.push(c); // small.txt left unread: the reader skips it
    seen[e.name] = Buffer.concat(chunks);
  }
  assert.deepEqual(Object.keys(seen), ['a/small.txt', 'a/big.bin', 'a/empty']);
  assert.ok(seen['a/big.bin'].equals(big));
  writeFileSync(join(dir, 'cut.tgz'), gzipSync(tar({ 'x.bin': big }).subarray(0, 100_000)));
  assert.match(await userError((async () => { for await (const e of readTarGz(join(dir, 'cut.tgz'))) for await (const _ of e.body); })()), /cut\.tgz is truncated/);
  writeFileSync(join(dir, 'not.tgz'), 'plain text');
  assert.match(await userError((async () => { for await (const _ of readTarGz(join(dir, 'not.tgz'))); })()), /not\.tgz is not a valid \.tgz/);
});

test('finds the package version carrying the installed ONNX Runtime, from the known table or the latest README', async () => {
  assert.equal(ortVersionInReadme('- ONNX Runtime: [1.29.0](https://x)'), '1.29.0');
  assert.equal((await findProviderRelease(registry, '1.29.0')).packageVersion, '0.4.9');
  assert.equal((await findProviderRelease(registry, '1.30.0')).packageVersion, '0.5.0');
  assert.match(await userError(findProviderRelease(registry, '1.31.0')), /no com\.github\.asus4\.onnxruntime\.linux-x64-gpu on .* carries ONNX Runtime 1\.31\.0 \(found 1\.29\.0, 1\.30\.0\); pin onnxruntime-node to 1\.30\.0/);
  packumentStatus = 404;
  try {
    assert.match(await userError(findProviderRelease(registry, '1.29.0')), /does not exist \(HTTP 404\); pass --registry/);
  } finally {
    packumentStatus = 200;
  }
  assert.match(await userError(findProviderRelease('http://127.0.0.1:9', '1.29.0')), /cannot reach .* \(ECONNREFUSED\)/);
});

test('installs the provider files next to libonnxruntime.so.1, checked against the registry integrity and the version inside', async () => {
  const ort = fakeOrt('1.29.0');
  const { release, files } = await installProviderFromRegistry(registry, ort);
  assert.equal(release.packageVersion, '0.4.9');
  assert.deepEqual(readdirSync(ort.bindingDir).sort(), ['libonnxruntime.so.1', 'libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so']);
  assert.equal(files.length, 2);
  assert.ok(readFileSync(join(ort.bindingDir, 'libonnxruntime_providers_cuda.so')).includes(Buffer.from('\x001.29.0\x00')));

  // A download that does not match the registry's integrity installs nothing.
  const fresh = fakeOrt('1.29.0');
  corrupt = true;
  try {
    assert.match(await userError(installProviderFromRegistry(registry, fresh)), /sha512 .* does not match/);
  } finally {
    corrupt = false;
  }
  assert.deepEqual(readdirSync(fresh.bindingDir), ['libonnxruntime.so.1']);
});

test('a package of another ONNX Runtime version is refused and leaves the binding untouched', async () => {
  const ort = fakeOrt('1.29.0');
  const file = join(tmp(), 'other.tgz');
  writeFileSync(file, tgz['0.5.0']);
  assert.match(await userError(installProviderFromTarball(file, '1.29.0', ort.bindingDir)), /is not ONNX Runtime 1\.29\.0, the version of the installed onnxruntime-node/);
  assert.deepEqual(readdirSync(ort.bindingDir), ['libonnxruntime.so.1']);
  const notProvider = join(tmp(), 'x.tgz');
  writeFileSync(notProvider, gzipSync(tar({ 'package/README.md': 'hi' })));
  assert.match(await userError(installProviderFromTarball(notProvider, '1.29.0', ort.bindingDir)), /has no libonnxruntime_providers_cuda\.so, libonnxruntime_providers_shared\.so; it is not a/);
  assert.ok(!existsSync(join(ort.bindingDir, 'libonnxruntime_providers_cuda.so')));
});
