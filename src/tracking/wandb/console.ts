/**
 * Console capture for W&B's Logs tab (output.log): everything the process writes to stdout/stderr still
 * reaches the terminal, and each completed line is also handed to `onLine`. A carriage return restarts
 * the line, so progress bars contribute their final state rather than every redraw.
 */
import type { Writable } from 'node:stream';

const MAX_LINE = 16_384;

type Write = Writable['write'];

/** Hooks the streams' write methods; returns the function that restores them (emitting any partial line). */
export function captureConsole(
  onLine: (text: string, stderr: boolean) => void,
  streams: { stdout: Writable; stderr: Writable } = { stdout: process.stdout, stderr: process.stderr },
): () => void {
  const restores = ([['stdout', false], ['stderr', true]] as const).map(([which, isErr]) => {
    const stream = streams[which];
    const original = stream.write;
    let line = '';
    // A CR is resolved by what follows it (LF: end of line; anything else: redraw), possibly in the next write.
    let cr = false;
    const feed = (chunk: unknown, encoding?: unknown) => {
      const text = typeof chunk === 'string' ? chunk : chunk instanceof Uint8Array
        ? Buffer.from(chunk).toString(typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : '';
      for (const part of text.split(/(\n|\r)/)) {
        if (part === '') continue;
        if (part === '\n') {
          onLine(line, isErr);
          line = '';
          cr = false;
          continue;
        }
        if (cr) line = '';
        cr = part === '\r';
        if (!cr && line.length < MAX_LINE) line += part.slice(0, MAX_LINE - line.length);
      }
    };
    stream.write = function (this: Writable, chunk: unknown, ...rest: unknown[]) {
      try {
        feed(chunk, rest[0]);
      } catch {
        // Capture is best effort; the write itself must go through.
      }
      return (original as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as Write;
    return () => {
      stream.write = original;
      if (line !== '') onLine(line, isErr);
    };
  });
  return () => restores.forEach((r) => r());
}

/** output.log's legacy line format: `[ERROR ]<UTC time with microseconds, no Z> <text>`. */
export function outputLogLine(text: string, stderr: boolean, nowMs: number): string {
  const stamp = new Date(nowMs).toISOString().replace('Z', '000');
  return `${stderr ? 'ERROR ' : ''}${stamp} ${text}`;
}
