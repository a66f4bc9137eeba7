/**
 * Each side of a comparison runs in its own child process, so its peak RSS is its own and start-up
 * is timed the same way for both: from spawn to the child's 'first_step' event.
 *
 * Protocol: a child writes JSON objects on stdout lines starting with '@bench ' — {event:
 * 'first_step'} once, then {event: 'result', ...}, or {event: 'error', message} when it fails. Other
 * stdout and all stderr lines are diagnostics, passed through to our stderr; without an error event,
 * the last of them explains a failure (a Python traceback ends with the exception).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { UserError } from '../../src/errors.ts';

const PREFIX = '@bench ';

export type Json = Record<string, unknown>;

export interface ChildRun {
  result: Json;
  /** Seconds from spawn to the end of the child's first step. */
  startupS: number;
}

/** Writes one protocol line (for the child side). */
export function emit(obj: Json): void {
  process.stdout.write(`${PREFIX}${JSON.stringify(obj)}\n`);
}

export function runChild(command: string, args: string[], label: string): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let startupS = NaN;
    let result: Json | undefined;
    let last = '';
    let failure: string | undefined;
    const keep = (line: string) => {
      if (line.trim()) last = line.trim();
      process.stderr.write(`[${label}] ${line}\n`);
    };
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.startsWith(PREFIX)) return keep(line);
      const msg = JSON.parse(line.slice(PREFIX.length)) as Json;
      if (msg.event === 'first_step') startupS = (performance.now() - t0) / 1000;
      else if (msg.event === 'result') result = msg;
      else if (msg.event === 'error') failure = String(msg.message);
    });
    createInterface({ input: child.stderr }).on('line', keep);
    child.on('error', (e) => reject(new UserError(`${label}: cannot start ${command} (${e.message})`)));
    child.on('close', (code, signal) => {
      if (code === 0 && result) resolve({ result, startupS });
      else reject(new UserError(`${label}: ${command} ${signal ? `killed by ${signal}` : `exited with code ${code}`}${result ? '' : ' before reporting a result'}: ${failure ?? last}`));
    });
  });
}
