/**
 * Files rewritten whole while a run goes on (report.html, the run journal's run.json and sync.json):
 * each write goes through src/io/atomic.ts, in the background, and a burst of writes to one file
 * coalesces so only its latest content is written. A failed write is reported, never thrown: tracking
 * must not stop training.
 */
import { writeFileAtomic } from '../io/atomic.ts';

export class LatestWriter {
  private readonly pending = new Map<string, string>();
  private running: Promise<void> | undefined;

  constructor(private readonly onError: (path: string, e: Error) => void) {}

  write(path: string, content: string): void {
    this.pending.set(path, content);
    this.running ??= this.drain();
  }

  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.pending.size > 0) {
      const [path, content] = this.pending.entries().next().value as [string, string];
      this.pending.delete(path);
      try {
        await writeFileAtomic(path, content);
      } catch (e) {
        this.onError(path, e as Error);
      }
    }
    this.running = undefined;
  }
}
