/**
 * The per-epoch progress bar (steps, elapsed<ETA, running loss), like fastai's console bar. On a TTY
 * it is a cli-progress bar cleared at the end of the epoch, leaving the table row; elsewhere (logs,
 * CI) it writes a plain line every `lineEverySec` seconds, or nothing when that is 0.
 */
import cliProgress from 'cli-progress';
import { formatTime } from './recorder.ts';
import type { Callback, LoopState } from './types.ts';

export interface ProgressOptions {
  stepsPerEpoch: number;
  /** Epochs of the whole run, for the "Epoch e/N" label. */
  epochs: number;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Without a TTY: seconds between progress lines (default 30; 0 = silent). */
  lineEverySec?: number;
  /** Clock in milliseconds, injectable for tests. */
  now?: () => number;
}

export class EpochProgress implements Callback {
  readonly name = 'progress';
  private readonly stream: NodeJS.WritableStream & { isTTY?: boolean };
  private readonly now: () => number;
  private bar?: cliProgress.SingleBar;
  private startStep = 0;
  private startTime = 0;
  private lastLine = 0;

  constructor(private readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stdout;
    this.now = opts.now ?? (() => performance.now());
  }

  beforeEpoch(state: LoopState): void {
    this.startStep = state.step;
    this.startTime = this.lastLine = this.now();
    if (!this.stream.isTTY) return;
    this.bar = new cliProgress.SingleBar({
      stream: this.stream,
      format: `Epoch ${state.epoch + 1}/${this.opts.epochs} |{bar}| {value}/{total} [{elapsed}<{remaining}{loss}]`,
      barsize: 30,
      barCompleteChar: '█',
      barIncompleteChar: '-',
      hideCursor: true,
      clearOnComplete: true,
    });
    this.bar.start(this.opts.stepsPerEpoch, 0, this.payload(0, state));
  }

  afterBatch(state: LoopState): void {
    const done = state.step - this.startStep;
    const payload = this.payload(done, state);
    if (this.bar) {
      this.bar.update(done, payload);
      if (done >= this.opts.stepsPerEpoch) this.stop();
      return;
    }
    const every = (this.opts.lineEverySec ?? 30) * 1000;
    if (every > 0 && this.now() - this.lastLine >= every) {
      this.lastLine = this.now();
      const label = `epoch ${state.epoch + 1}/${this.opts.epochs}`;
      this.stream.write(`${label} step ${done}/${this.opts.stepsPerEpoch} [${payload.elapsed}<${payload.remaining}${payload.loss}]\n`);
    }
  }

  afterEpoch(): void {
    this.stop();
  }

  afterFit(): void {
    this.stop();
  }

  private stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }

  private payload(done: number, state: LoopState): { elapsed: string; remaining: string; loss: string } {
    const elapsed = (this.now() - this.startTime) / 1000;
    const remaining = done > 0 ? (elapsed / done) * (this.opts.stepsPerEpoch - done) : undefined;
    const loss = state.smoothLoss ?? state.loss;
    return {
      elapsed: formatTime(elapsed),
      remaining: remaining === undefined ? '--:--' : formatTime(remaining),
      loss: loss === undefined ? '' : ` ${loss.toFixed(4)}`,
    };
  }
}
