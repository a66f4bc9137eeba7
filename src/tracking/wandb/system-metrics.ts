/**
 * System metrics for W&B's System tab, under wandb-core's key names (sent as `system.<key>` in
 * wandb-events.jsonl): process CPU, per-core CPU, memory, disk and, when nvidia-smi exists, each GPU.
 * Sampling runs on a timer outside the training step and never throws.
 */
import { execFile } from 'node:child_process';
import { readFile, statfs } from 'node:fs/promises';
import os from 'node:os';
import type { GpuInfo } from './run-files.ts';

const MiB = 1024 * 1024;

const GPU_FIELDS = ['index', 'utilization.gpu', 'utilization.memory', 'memory.used', 'memory.total', 'temperature.gpu', 'power.draw', 'power.limit'];

/** Runs nvidia-smi; undefined when it is missing or fails (no NVIDIA GPU here). */
export function runNvidiaSmi(args: string[], command = 'nvidia-smi'): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 5000 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
}

/** Parses `nvidia-smi --query-gpu=<GPU_FIELDS> --format=csv,noheader,nounits` into gpu.<i>.* metrics. */
export function parseGpuMetrics(csv: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of csv.split('\n')) {
    const cols = line.split(',').map((c) => c.trim());
    if (cols.length < GPU_FIELDS.length) continue;
    const [index, util, memUtil, used, total, temp, power, powerLimit] = cols.map((c) => (/^[-+]?\d/.test(c) ? Number(c) : NaN));
    if (Number.isNaN(index)) continue;
    const put = (key: string, v: number) => {
      if (Number.isFinite(v)) out[`gpu.${index}.${key}`] = v;
    };
    put('gpu', util);
    put('memory', memUtil);
    put('memoryAllocated', (used / total) * 100);
    put('memoryAllocatedBytes', used * MiB);
    put('temp', temp);
    put('powerWatts', power);
    put('powerPercent', (power / powerLimit) * 100);
  }
  return out;
}

/** Parses `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` for the metadata. */
export function parseGpuInfo(csv: string): GpuInfo[] {
  return csv
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => {
      const i = l.lastIndexOf(',');
      return { name: l.slice(0, i).trim(), memoryTotal: Number(l.slice(i + 1)) * MiB };
    });
}

export async function gpuInventory(command?: string): Promise<GpuInfo[]> {
  const csv = await runNvidiaSmi(['--query-gpu=name,memory.total', '--format=csv,noheader,nounits'], command);
  return csv ? parseGpuInfo(csv) : [];
}

export interface SystemMonitorOptions {
  intervalMs: number;
  /** nvidia-smi's name or path; false to skip GPUs. */
  nvidiaSmi: string | false;
}

export class SystemMonitor {
  private timer: NodeJS.Timeout | undefined;
  private lastCpu = process.cpuUsage();
  private lastWall = process.hrtime.bigint();
  private lastCores = os.cpus().map((c) => c.times);
  private gpu: string | false;
  private sampling = false;

  constructor(private readonly emit: (metrics: Record<string, number>) => void, private readonly opts: SystemMonitorOptions) {
    this.gpu = opts.nvidiaSmi;
  }

  start(): void {
    this.timer = setInterval(() => {
      // A slow nvidia-smi must not pile up samples.
      if (this.sampling) return;
      this.sampling = true;
      this.sample()
        .then((m) => this.emit(m))
        .catch(() => {})
        .finally(() => (this.sampling = false));
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async sample(): Promise<Record<string, number>> {
    const m: Record<string, number> = {};
    const cores = os.cpus();
    const cpu = process.cpuUsage(this.lastCpu);
    const wall = process.hrtime.bigint();
    const wallUs = Number(wall - this.lastWall) / 1000;
    if (wallUs > 0) m.cpu = ((cpu.user + cpu.system) / wallUs / Math.max(1, cores.length)) * 100;
    this.lastCpu = process.cpuUsage();
    this.lastWall = wall;
    cores.forEach((c, i) => {
      const before = this.lastCores[i];
      if (!before) return;
      const busy = c.times.user + c.times.nice + c.times.sys + c.times.irq - (before.user + before.nice + before.sys + before.irq);
      const total = busy + c.times.idle - before.idle;
      if (total > 0) m[`cpu.${i}.cpu_percent`] = (busy / total) * 100;
    });
    this.lastCores = cores.map((c) => c.times);

    const total = os.totalmem();
    const free = os.freemem();
    const rss = process.memoryUsage.rss();
    m.memory_percent = ((total - free) / total) * 100;
    m['proc.memory.availableMB'] = free / MiB;
    m['proc.memory.rssMB'] = rss / MiB;
    m['proc.memory.percent'] = (rss / total) * 100;
    const threads = await readFile('/proc/self/status', 'utf8').then((s) => /^Threads:\s+(\d+)/m.exec(s)?.[1], () => undefined);
    if (threads) m['proc.cpu.threads'] = Number(threads);
    const disk = await statfs(process.cwd()).catch(() => undefined);
    if (disk && disk.blocks > 0) {
      m['disk./.usagePercent'] = ((disk.blocks - disk.bfree) / disk.blocks) * 100;
      m['disk./.usageGB'] = ((disk.blocks - disk.bfree) * disk.bsize) / 1024 ** 3;
    }
    if (this.gpu) {
      const csv = await runNvidiaSmi([`--query-gpu=${GPU_FIELDS.join(',')}`, '--format=csv,noheader,nounits'], this.gpu);
      if (csv === undefined) this.gpu = false;
      else Object.assign(m, parseGpuMetrics(csv));
    }
    return m;
  }
}
