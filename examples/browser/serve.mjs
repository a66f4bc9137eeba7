#!/usr/bin/env node
// A local static server for the browser example: the page from this folder, onnxruntime-web's
// dist files from node_modules under /ort/, and the model under /model.onnx. Nothing comes from a CDN.
//   node examples/browser/serve.mjs --model runs/<name>/model.onnx [--port 8080]
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ORT_DIST = dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
const TYPES = { '.html': 'text/html', '.mjs': 'text/javascript', '.js': 'text/javascript', '.wasm': 'application/wasm', '.onnx': 'application/octet-stream', '.png': 'image/png', '.jpg': 'image/jpeg' };

/** The file a URL path maps to, or undefined when it is outside the served folders. */
function resolvePath(urlPath, model) {
  if (urlPath === '/model.onnx') return model;
  const [root, rest] = urlPath.startsWith('/ort/') ? [ORT_DIST, urlPath.slice(5)] : [HERE, urlPath === '/' ? 'index.html' : urlPath.slice(1)];
  const file = normalize(join(root, decodeURIComponent(rest)));
  return file.startsWith(root + sep) ? file : undefined;
}

/** Starts the server; `extra` maps further URL paths to files (the test serves its image this way). */
export function startServer({ model, port = 8080, host = '127.0.0.1', extra = {} }) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = extra[path] ?? resolvePath(path, model);
    let size;
    try {
      size = file && statSync(file).isFile() ? statSync(file).size : undefined;
    } catch {
      size = undefined;
    }
    if (size === undefined) {
      res.writeHead(404).end('not found');
      return;
    }
    // Cross-origin isolation lets onnxruntime-web use wasm threads (SharedArrayBuffer).
    res.writeHead(200, {
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': size,
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve({ url: `http://${host}:${server.address().port}/`, close: () => new Promise((r) => server.close(r)) }));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const model = arg('--model');
  if (!model) {
    console.error('usage: node examples/browser/serve.mjs --model model.onnx [--port 8080]');
    process.exit(2);
  }
  const { url } = await startServer({ model, port: Number(arg('--port', 8080)) });
  console.log(`serving ${model} at ${url} (Ctrl-C to stop)`);
}
