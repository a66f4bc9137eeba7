/**
 * An append-only file of lines (wandb-history.jsonl, wandb-events.jsonl, output.log) that the uploader
 * reads back by line number. Lines go to disk in the background; memory keeps only the lines the uploader
 * has not had acknowledged, and once those exceed the budget the ones already on disk are dropped from
 * memory and read back from the file later. So a long outage costs disk, not memory, and nothing is lost.
 */
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface SpoolOptions {
  /** Memory budget for lines awaiting acknowledgement (bytes). */
  memoryBytes: number;
  /** Keep unacknowledged lines readable (an uploader reads them); false for offline runs. */
  keepForReading: boolean;
  /** Called once if the disk write fails; the spool then keeps lines in memory only, up to 4× the budget. */
  onDiskError(error: Error): void;
}

export interface SpoolRead {
  lines: string[];
  /** Lines before `lines[0]` that are gone (disk failure and memory overflow together); skip them. */
  skipped: number;
}

const NEWLINE = 0x0a;

export class Spool {
  private starts = new Float64Array(1024);
  private lineCount = 0;
  private byteCount = 0;
  private readonly mem: string[] = [];
  private memHead = 0;
  /** Line number of mem[memHead]. */
  private memStart = 0;
  private memBytes = 0;
  private writeBuf: string[] = [];
  private writing: Promise<void> | undefined;
  private durable = 0;
  private acked = 0;
  private diskFailed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly opts: SpoolOptions,
  ) {}

  /** A new, empty spool file for a live run. */
  static async create(path: string, opts: SpoolOptions): Promise<Spool> {
    await mkdir(dirname(path), { recursive: true });
    return new Spool(path, await open(path, 'w+'), opts);
  }

  /**
   * An existing spool file, read-only (wandb-sync). A last line without its newline was cut off by a crash
   * mid-write and is left out; `cutOff` says so.
   */
  static async openExisting(path: string): Promise<{ spool: Spool; cutOff: boolean }> {
    const fh = await open(path, 'r');
    const spool = new Spool(path, fh, { memoryBytes: 0, keepForReading: false, onDiskError: () => {} });
    const buf = Buffer.allocUnsafe(1 << 20);
    let pos = 0;
    let lineStart = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      for (let i = 0; i < bytesRead; i++) {
        if (buf[i] !== NEWLINE) continue;
        spool.pushLine(lineStart, pos + i + 1);
        lineStart = pos + i + 1;
      }
      pos += bytesRead;
    }
    spool.byteCount = lineStart;
    spool.durable = spool.lineCount;
    spool.memStart = spool.lineCount;
    return { spool, cutOff: pos > lineStart };
  }

  get count(): number {
    return this.lineCount;
  }

  /** Appends one line (no newline inside). Never waits. */
  append(line: string): void {
    const size = Buffer.byteLength(line) + 1;
    this.pushLine(this.byteCount, this.byteCount + size);
    this.byteCount += size;
    if (!this.diskFailed) {
      this.writeBuf.push(line);
      this.writing ??= this.drain();
    }
    if (this.opts.keepForReading) {
      this.mem.push(line);
      this.memBytes += size;
    } else {
      this.memStart = this.lineCount;
    }
    this.evict();
  }

  /** Lines from `from` on, at most `maxLines` and (beyond the first) `maxBytes` bytes. */
  async read(from: number, maxLines: number, maxBytes: number): Promise<SpoolRead> {
    let skipped = 0;
    if (from < this.memStart && from >= this.durable) {
      skipped = this.memStart - from;
      from = this.memStart;
    }
    const lines: string[] = [];
    let bytes = 0;
    const fits = (size: number) => lines.length < maxLines && (lines.length === 0 || bytes + size <= maxBytes);
    if (from < this.memStart) {
      let end = from;
      const limit = Math.min(this.memStart, this.durable, from + maxLines);
      while (end < limit && (end === from || this.starts[end + 1] - this.starts[from] <= maxBytes)) end++;
      const start = this.starts[from];
      const buf = Buffer.allocUnsafe(this.starts[end] - start);
      let got = 0;
      while (got < buf.length) {
        const { bytesRead } = await this.fh.read(buf, got, buf.length - got, start + got);
        if (bytesRead === 0) throw new Error(`${this.path} is shorter than expected (was it changed while in use?)`);
        got += bytesRead;
      }
      lines.push(...buf.toString('utf8', 0, buf.length - 1).split('\n'));
      bytes = buf.length;
      from = end;
    }
    // Memory may have moved on while the disk read was waiting; then the next read continues from disk.
    if (from >= this.memStart) {
      for (let i = from; i < this.lineCount; i++) {
        const size = this.lineSize(i);
        if (!fits(size)) break;
        lines.push(this.mem[this.memHead + i - this.memStart]);
        bytes += size;
      }
    }
    return { lines, skipped };
  }

  /** The uploader got lines below `upTo` acknowledged: memory can let them go. */
  ack(upTo: number): void {
    this.acked = Math.max(this.acked, upTo);
    this.evict();
  }

  /** Waits until every appended line is on disk (or the disk failed). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.fh.close();
  }

  /** Records a line at bytes [start, end); starts[n] is always the end of the last line. */
  private pushLine(start: number, end: number): void {
    if (this.lineCount + 2 > this.starts.length) {
      const grown = new Float64Array(this.starts.length * 2);
      grown.set(this.starts);
      this.starts = grown;
    }
    this.starts[this.lineCount] = start;
    this.lineCount++;
    this.starts[this.lineCount] = end;
  }

  private lineSize(i: number): number {
    return this.starts[i + 1] - this.starts[i];
  }

  private async drain(): Promise<void> {
    while (this.writeBuf.length > 0 && !this.diskFailed) {
      const batch = this.writeBuf;
      this.writeBuf = [];
      try {
        await this.fh.appendFile(`${batch.join('\n')}\n`);
        this.durable += batch.length;
      } catch (e) {
        this.diskFailed = true;
        this.writeBuf = [];
        this.opts.onDiskError(e as Error);
      }
      this.evict();
    }
    this.writing = undefined;
  }

  private evict(): void {
    const hardCap = this.opts.memoryBytes * 4;
    while (this.memStart < this.lineCount) {
      const acked = this.memStart < this.acked;
      const onDisk = this.memStart < this.durable && this.memBytes > this.opts.memoryBytes;
      const hopeless = this.diskFailed && this.memBytes > hardCap;
      if (!acked && !onDisk && !hopeless) break;
      this.memBytes -= this.lineSize(this.memStart);
      this.memHead++;
      this.memStart++;
    }
    if (this.memHead > 1024 && this.memHead * 2 > this.mem.length) {
      this.mem.splice(0, this.memHead);
      this.memHead = 0;
    }
  }
}
