/**
 * `ort-dann train` inside a sweep: the agent (ours or Python's `wandb agent`) starts it with
 * WANDB_SWEEP_ID, WANDB_RUN_ID and WANDB_SWEEP_PARAM_PATH. The run then takes the parameters from that
 * file (they win over the command line, as the wandb SDK locks sweep values over the program's config),
 * keeps them unchanged in its config so the controller recognises them, joins the sweep on UpsertBucket
 * and uses the run id as its default run name. See docs/wandb-sweeps.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Options } from 'yargs';
import { UserError } from '../errors.ts';
import { pythonStr } from './command.ts';
import { parseYaml, YamlError } from './yaml.ts';

/** Flags the agent and the sweep decide for each run (its directory, its W&B identity); a sweep cannot set them. */
export function isSweepable(flags: Record<string, Options>, name: string): boolean {
  return Object.hasOwn(flags, name) && !['resume', 'run-dir', 'run-name'].includes(name) && !name.startsWith('wandb');
}

/**
 * A parameter value in the type train's flag has: a number for number flags, text for text flags,
 * true/false for switches. Values that train's own checks refuse (a negative lr…) fail there, by flag.
 */
export function coerceParameter(flags: Record<string, Options>, name: string, value: unknown, where: string): unknown {
  const flag = flags[name];
  if (flag.type === 'boolean') {
    if (typeof value === 'boolean') return value;
    if (typeof value === 'string' && /^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
    throw new UserError(`${where}: ${name} is ${pythonStr(value)}, but --${name} is a switch (true or false)`);
  }
  if (flag.type === 'number') {
    const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
    if (Number.isNaN(n)) throw new UserError(`${where}: ${name} is ${pythonStr(value)}, not a number (--${name} takes a number)`);
    return n;
  }
  const text = pythonStr(value);
  const choices = flag.choices as string[] | undefined;
  if (choices && !choices.includes(text)) throw new UserError(`${where}: ${name} is ${text}; --${name} takes ${choices.join(', ')}`);
  return text;
}

/** Reads a sweep parameter file (`wandb_version: 1` then `name: {value: v}` per parameter). */
export function readParamFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`WANDB_SWEEP_PARAM_PATH ${path}: cannot read it (${(e as NodeJS.ErrnoException).code}); start the run from a sweep agent, or unset WANDB_SWEEP_PARAM_PATH`);
  }
  let doc;
  try {
    doc = parseYaml(text);
  } catch (e) {
    if (e instanceof YamlError) throw new UserError(`WANDB_SWEEP_PARAM_PATH ${path}: ${e.message}`);
    throw e;
  }
  if (doc === null) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new UserError(`WANDB_SWEEP_PARAM_PATH ${path}: not a mapping of parameters`);
  const params: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) {
    if (k === 'wandb_version') {
      if (v !== 1) throw new UserError(`WANDB_SWEEP_PARAM_PATH ${path}: wandb_version ${pythonStr(v)} is not 1`);
      continue;
    }
    if (!v || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, 'value')) throw new UserError(`WANDB_SWEEP_PARAM_PATH ${path}: ${k} has no "value"`);
    params[k] = (v as Record<string, unknown>).value;
  }
  return params;
}

export interface SweepRunEnvironment {
  sweepId: string;
  /** The handed-out parameters, unchanged, for the run's config. */
  params: Record<string, unknown>;
}

/**
 * Applies the agent environment to train's parsed flags (in place): parameters from
 * WANDB_SWEEP_PARAM_PATH, the sweep's project/entity/run id over the flags, the run id as the default
 * run name, and `--resume` when that run's directory already holds its checkpoint (a `resume` command,
 * or the same run handed out again after a crash). Undefined outside a sweep.
 */
export function applySweepEnvironment(args: Record<string, unknown>, flags: Record<string, Options>, env: NodeJS.ProcessEnv = process.env): SweepRunEnvironment | undefined {
  const sweepId = env.WANDB_SWEEP_ID?.trim();
  if (!sweepId) return undefined;
  const set = (name: string, value: unknown) => {
    args[name] = value;
    args[name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())] = value;
  };
  const params: Record<string, unknown> = {};
  const path = env.WANDB_SWEEP_PARAM_PATH?.trim();
  if (path) {
    for (const [name, value] of Object.entries(readParamFile(path))) {
      if (!isSweepable(flags, name)) throw new UserError(`WANDB_SWEEP_PARAM_PATH ${path}: parameter "${name}" is not an ort-dann train flag that a sweep can set (see ort-dann train --help)`);
      set(name, coerceParameter(flags, name, value, `WANDB_SWEEP_PARAM_PATH ${path}`));
      params[name] = value;
    }
  }
  // In a sweep the run belongs to the sweep's project and entity, under the id the controller chose.
  for (const [flag, variable] of [['wandb-project', 'WANDB_PROJECT'], ['wandb-entity', 'WANDB_ENTITY'], ['wandb-run-id', 'WANDB_RUN_ID']] as const) {
    if (env[variable]?.trim()) set(flag, env[variable]!.trim());
  }
  if (args.wandb === 'disabled') throw new UserError(`--wandb disabled: this run belongs to sweep ${sweepId} (WANDB_SWEEP_ID), which would never see its results; drop --wandb disabled`);
  const runId = env.WANDB_RUN_ID?.trim();
  if (runId && args['run-name'] === undefined && args['run-dir'] === undefined) {
    set('run-name', runId);
    if (existsSync(join('runs', runId, 'latest', 'model.safetensors'))) set('resume', true);
  }
  return { sweepId, params };
}
