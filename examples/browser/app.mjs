// Predicts with an ort-dann inference model in the browser: onnxruntime-web (wasm) runs the model,
// a canvas resizes the image to the size recorded in the model, and the recorded normalization is
// applied with the same float arithmetic as ort-dann's data layer (src/data/decode.ts, normalization.ts).
import * as ort from './ort/ort.wasm.min.mjs';
import { modelInfo, readMetadataProps } from './model-metadata.mjs';

const $ = (id) => document.getElementById(id);
const status = (text) => { $('status').textContent = text; };

/** RGBA canvas pixels → float32 CHW in [0, 1], then normalized: x/255 as x·(1/255), (x − mean)·(1/std). */
function toTensorData(rgba, size, normalization) {
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  const k = 1 / 255;
  for (let i = 0; i < plane; i++) {
    out[i] = rgba[4 * i] * k;
    out[plane + i] = rgba[4 * i + 1] * k;
    out[2 * plane + i] = rgba[4 * i + 2] * k;
  }
  if (normalization.kind !== 'none') {
    for (let c = 0; c < 3; c++) {
      const mean = normalization.mean[c];
      const inv = 1 / normalization.std[c];
      for (let i = c * plane; i < (c + 1) * plane; i++) out[i] = (out[i] - mean) * inv;
    }
  }
  return out;
}

/** Stretches the image to size×size (as training did) and returns the model input. */
async function preprocess(blob, info) {
  // Raw stored pixel values, like the training decoder: no colour-profile conversion, no premultiplied alpha.
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = new OffscreenCanvas(info.imageSize, info.imageSize);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, 0, 0, info.imageSize, info.imageSize);
  bitmap.close();
  const { data } = ctx.getImageData(0, 0, info.imageSize, info.imageSize);
  return toTensorData(data, info.imageSize, info.normalization);
}

function softmax(logits) {
  const max = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

async function loadModel(url) {
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const info = modelInfo(readMetadataProps(bytes));
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  return { info, session };
}

async function predict(model, blob) {
  const { info, session } = model;
  const input = await preprocess(blob, info);
  const result = await session.run({ images: new ort.Tensor('float32', input, [1, 3, info.imageSize, info.imageSize]) });
  const outputs = Object.fromEntries(info.outputs.map((name) => [name, Array.from(result[name].data)]));
  return { input, outputs };
}

function show(info, outputs) {
  const values = outputs.prediction;
  const rows = info.task === 'classification'
    ? softmax(values).map((p, k) => [info.outputNames[k], `${(100 * p).toFixed(1)} %`])
    : values.map((v, k) => [info.outputNames[k], v.toPrecision(5)]);
  if (outputs.domain_logit) rows.push(['domain_logit', outputs.domain_logit[0].toPrecision(5)]);
  $('outputs').replaceChildren(...rows.map(([name, value]) => {
    const tr = document.createElement('tr');
    for (const text of [name, value]) tr.appendChild(document.createElement('td')).textContent = text;
    return tr;
  }));
  // Full-precision values for scripts (and the headless test).
  $('outputs').dataset.outputs = JSON.stringify(outputs);
}

async function main() {
  const modelUrl = new URLSearchParams(location.search).get('model') ?? 'model.onnx';
  status(`loading ${modelUrl} …`);
  let model;
  try {
    model = await loadModel(modelUrl);
  } catch (e) {
    status(`cannot load ${modelUrl}: ${e.message}`);
    return;
  }
  const { info } = model;
  status(`${info.modelName}: ${info.task} of ${info.outputNames.join(', ')} at ${info.imageSize} px, normalization ${info.normalization.kind}. Drop an image.`);
  const run = async (blob) => {
    status('predicting …');
    const t0 = performance.now();
    const { input, outputs } = await predict(model, blob);
    window.ortDann.lastInput = input;
    show(info, outputs);
    $('preview').src = URL.createObjectURL(blob);
    status(`done in ${(performance.now() - t0).toFixed(0)} ms`);
  };
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const file = e.dataTransfer.files[0];
    if (file) run(file).catch((err) => status(`error: ${err.message}`));
  });
  $('file').addEventListener('change', (e) => {
    const file = e.target.files[0];
    if (file) run(file).catch((err) => status(`error: ${err.message}`));
  });
}

// `ready` settles once the model is loaded; `lastInput` holds the last model input (for the headless test).
window.ortDann = { ready: main(), lastInput: undefined };
