/**
 * How much of the machine other processes used while a bench timed its steps. The load average
 * lags by a minute and counts the bench's own previous child; this is measured over the window
 * itself: all CPUs' busy time (/proc/stat) minus this process's CPU time, in cores.
 */
import { readFileSync } from 'node:fs';

/** Busy CPU seconds of the whole machine since boot (user, nice, system, irq, softirq, steal); null off Linux. */
function machineBusyS(): number | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // USER_HZ is 100 on every Linux ABI that Node supports.
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100;
  } catch {
    return null;
  }
}

/** Starts a window; the returned function gives the cores other processes used since (null off Linux). */
export function otherCoresWindow(): () => number | null {
  const busy0 = machineBusyS();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const busy1 = machineBusyS();
    if (busy0 === null || busy1 === null) return null;
    const own = process.cpuUsage(cpu0);
    const wallS = (performance.now() - t0) / 1000;
    return Math.max(0, busy1 - busy0 - (own.user + own.system) / 1e6) / wallS;
  };
}
