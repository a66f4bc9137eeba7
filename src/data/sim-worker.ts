/**
 * Body of a simulator worker thread. Protocol (all messages carry `id`):
 *   in:  { type: 'render', id, start, n, length? }
 *   out: { type: 'chunk', id, images, labels, outputNames? } (buffers transferred)
 *        { type: 'error', id, message, user }  (user: the message is a UserError's, fit to show as is)
 * Requests are served one at a time in arrival order; `workerData` is the GeneratorConfig.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { UserError } from '../errors.ts';
import { createGenerator, type GeneratorConfig } from './generator.ts';

interface RenderRequest {
  type: 'render';
  id: number;
  start: number;
  n: number;
  length?: number;
}

const port = parentPort!;
const generator = createGenerator(workerData as GeneratorConfig);
// Load errors are reported per request, so the first render names them.
generator.catch(() => undefined);
let queue: Promise<void> = Promise.resolve();

port.on('message', (msg: RenderRequest) => {
  queue = queue.then(async () => {
    try {
      const chunk = await (await generator).render(msg.start, msg.n, msg.length);
      port.postMessage({ type: 'chunk', id: msg.id, ...chunk }, [chunk.images.buffer as ArrayBuffer, chunk.labels.buffer as ArrayBuffer]);
    } catch (e) {
      const user = e instanceof UserError;
      const message = user ? e.message : e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e);
      port.postMessage({ type: 'error', id: msg.id, message, user });
    }
  });
});
