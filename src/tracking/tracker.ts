/**
 * The one interface every tracker implements, W&B (wandb/) and the local sinks (metrics.jsonl,
 * report.html) alike: a loop callback that records what it sees, and an end.
 */
import type { Callback } from '../training/types.ts';

export interface Tracker extends Callback {
  /**
   * Writes what is pending and closes the record; `exitCode` 0 means the run finished, anything else
   * that it failed or stopped; `modelPath` is the exported model, if any. Never throws for disk or
   * network trouble: those become warnings, since tracking must not cost the user the run.
   */
  finish(exitCode: number, modelPath?: string): Promise<void>;
}
