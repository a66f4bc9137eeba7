/**
 * A sweep YAML, checked as W&B's sweep schema (wandb/sweeps config/schema.json) and ort-dann's train
 * flags require, with the one default the `wandb sweep` CLI fills before UpsertSweep: the `distribution`
 * of a min/max parameter (int_uniform for int bounds, uniform for float bounds). The rest of the schema's
 * defaults (metric goal minimize, hyperband eta 3, categorical/constant distributions) are the server's,
 * and `describe` shows them. See docs/wandb-sweeps.md.
 */
import { readFileSync } from 'node:fs';
import { UserError } from '../errors.ts';
import { checkParameterName, checkParameterValue, checkTrainArgs, fixedTrainArgs } from './params.ts';
import { dumpYaml, parseYaml, plainYaml, YamlError, YamlFloat, type YamlValue } from './yaml.ts';

type Mapping = { [key: string]: YamlValue };

export interface LoadedSweep {
  /** The config with the CLI's defaults filled, whole-number floats kept as floats. */
  config: Mapping;
  /** What UpsertSweep receives: the config as yaml.dump writes it. */
  yaml: string;
  method: 'grid' | 'random' | 'bayes';
  metric?: { name: string; goal: 'minimize' | 'maximize' };
  /** Grid size (runs), for grids. */
  gridSize?: number;
}

const TOP_KEYS = ['apiVersion', 'kind', 'controller', 'description', 'program', 'job', 'image_uri', 'entity', 'project', 'method', 'command', 'name', 'run_cap', 'metric', 'early_terminate', 'parameters'];

/** The keys each distribution allows besides `distribution` (schema.json's param_* definitions). */
const DISTRIBUTIONS: Record<string, { keys: string[]; bounded: boolean; continuous: boolean; grid: boolean }> = {
  categorical: { keys: ['values'], bounded: false, continuous: false, grid: true },
  categorical_w_probabilities: { keys: ['values', 'probabilities'], bounded: false, continuous: false, grid: false },
  constant: { keys: ['value'], bounded: false, continuous: false, grid: true },
  int_uniform: { keys: ['min', 'max'], bounded: true, continuous: false, grid: true },
  uniform: { keys: ['min', 'max'], bounded: true, continuous: true, grid: false },
  q_uniform: { keys: ['min', 'max', 'q'], bounded: true, continuous: false, grid: true },
  log_uniform: { keys: ['min', 'max'], bounded: true, continuous: true, grid: false },
  log_uniform_values: { keys: ['min', 'max'], bounded: true, continuous: true, grid: false },
  q_log_uniform: { keys: ['min', 'max', 'q'], bounded: true, continuous: false, grid: false },
  q_log_uniform_values: { keys: ['min', 'max', 'q'], bounded: true, continuous: false, grid: false },
  inv_log_uniform: { keys: ['min', 'max'], bounded: true, continuous: true, grid: false },
  inv_log_uniform_values: { keys: ['min', 'max'], bounded: true, continuous: true, grid: false },
  normal: { keys: ['mu', 'sigma'], bounded: false, continuous: true, grid: false },
  q_normal: { keys: ['mu', 'sigma', 'q'], bounded: false, continuous: false, grid: false },
  log_normal: { keys: ['mu', 'sigma'], bounded: false, continuous: true, grid: false },
  q_log_normal: { keys: ['mu', 'sigma', 'q'], bounded: false, continuous: false, grid: false },
  beta: { keys: ['a', 'b'], bounded: false, continuous: true, grid: false },
  q_beta: { keys: ['a', 'b', 'q'], bounded: false, continuous: false, grid: false },
};

/**
 * Validation metrics: the loop logs them once per epoch, at top level, which is what the controller
 * reads (hyperband counts metric rows as epochs). Per-step values such as train_loss are not.
 */
const EPOCH_METRIC = /^(valid_loss|domain_accuracy|rmse_[\w.-]+|target_rmse_[\w.-]+|target_mae_[\w.-]+)$/;

const isMapping = (v: YamlValue | undefined): v is Mapping => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof YamlFloat);
const isInt = (v: YamlValue | undefined) => typeof v === 'number' && Number.isInteger(v);
const isFloat = (v: YamlValue | undefined) => v instanceof YamlFloat || (typeof v === 'number' && !Number.isInteger(v));
const num = (v: YamlValue | undefined) => (v instanceof YamlFloat ? v.value : (v as number));
const isNum = (v: YamlValue | undefined) => isInt(v) || isFloat(v);
const show = (v: YamlValue) => JSON.stringify(plainYaml(v));

export function loadSweepConfig(path: string): LoadedSweep {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`${path}: cannot read the sweep config (${(e as NodeJS.ErrnoException).code}); give the path of a sweep YAML`);
  }
  return checkSweepConfig(text, path);
}

/** Validates a sweep YAML (the text of `file`), fills the CLI's defaults and returns what to send. */
export function checkSweepConfig(text: string, file: string): LoadedSweep {
  let doc: YamlValue;
  try {
    doc = parseYaml(text, { keepFloats: true });
  } catch (e) {
    if (e instanceof YamlError) throw new UserError(`${file}: ${e.message}`);
    throw e;
  }
  if (!isMapping(doc) || Object.keys(doc).length === 0) throw new UserError(`${file}: the sweep config is empty or not a mapping; it needs at least method and parameters`);
  const fail = (key: string, message: string): never => {
    throw new UserError(`${file}: ${key}: ${message}`);
  };
  for (const key of Object.keys(doc)) {
    if (key === 'metrics' || key === 'scheduler') fail(key, 'multi-objective and custom schedulers (method: custom) are not supported by ort-dann agents; use metric');
    if (!TOP_KEYS.includes(key)) fail(key, `not a sweep config key (use ${TOP_KEYS.join(', ')})`);
  }
  for (const key of ['description', 'program', 'entity', 'project', 'name', 'job', 'image_uri', 'apiVersion']) {
    if (doc[key] !== undefined && typeof doc[key] !== 'string') fail(key, `must be text, not ${show(doc[key])}`);
  }
  if (doc.controller !== undefined && !(isMapping(doc.controller) && doc.controller.type === 'cloud' && Object.keys(doc.controller).length === 1)) {
    fail('controller', 'ort-dann agents work with W&B\'s cloud controller only; remove controller');
  }
  const method = doc.method;
  if (method === undefined) fail('method', 'missing; use grid, random or bayes');
  if (method !== 'grid' && method !== 'random' && method !== 'bayes') fail('method', `${show(method ?? null)} is not grid, random or bayes`);

  let metric: LoadedSweep['metric'];
  if (doc.metric !== undefined) {
    const m = doc.metric;
    if (!isMapping(m)) fail('metric', 'must be a mapping with name and goal');
    for (const k of Object.keys(m as Mapping)) if (!['name', 'goal', 'target', 'impute', 'impute_while_running'].includes(k)) fail(`metric.${k}`, 'not a metric key (name, goal, target, impute, impute_while_running)');
    const { name, goal, target } = m as Mapping;
    if (typeof name !== 'string' || name === '') fail('metric.name', 'missing; name the metric to optimise, e.g. valid_loss');
    if (!EPOCH_METRIC.test(name as string)) {
      fail('metric.name', `${name} is not logged once per epoch; the sweep metric must be a validation metric: valid_loss, domain_accuracy, rmse_<output>, target_rmse_<output> or target_mae_<output> (target_* need --target-labels)`);
    }
    if (goal !== undefined && goal !== 'minimize' && goal !== 'maximize') fail('metric.goal', `${show(goal)} is not minimize or maximize`);
    if (target !== undefined && !isNum(target)) fail('metric.target', `${show(target)} is not a number`);
    metric = { name: name as string, goal: (goal as 'minimize' | 'maximize' | undefined) ?? 'minimize' };
  }
  if (method === 'bayes' && !metric) fail('metric', 'bayes search needs a metric to optimise (name and goal)');

  let command: string[] | undefined;
  if (doc.command !== undefined) {
    if (!Array.isArray(doc.command) || doc.command.length === 0) fail('command', 'must be a list, e.g. [npx, ort-dann, train, ${args}] written one "- item" per line');
    command = (doc.command as YamlValue[]).map((c, i) => {
      if (c !== null && typeof c === 'object' && !(c instanceof YamlFloat)) fail(`command[${i}]`, `must be a single word, not ${show(c)}`);
      return typeof c === 'string' ? c : String(plainYaml(c));
    });
  }
  const fixed = fixedTrainArgs(command);
  if (fixed.length > 0) checkTrainArgs(fixed, `${file}: command`);

  if (doc.run_cap !== undefined && !(isInt(doc.run_cap) && num(doc.run_cap) > 0)) fail('run_cap', `${show(doc.run_cap)} is not a positive integer`);
  if (doc.early_terminate !== undefined) checkEarlyTerminate(doc.early_terminate, fail, !!metric);

  const params = doc.parameters;
  if (!isMapping(params) || Object.keys(params).length === 0) fail('parameters', 'missing; give at least one train flag to sweep, e.g. lr: {values: [1.0e-3, 2.0e-3]}');
  let gridSize = 1;
  for (const [name, spec] of Object.entries(params as Mapping)) {
    const where = `parameters.${name}`;
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name)) fail(where, 'parameter names start with a letter or _ and hold letters, digits, _ . -');
    checkParameterName(name, `${file}: ${where}`);
    if (!isMapping(spec)) fail(where, `must be a mapping such as {values: [...]}, {value: x} or {min: a, max: b}; found ${show(spec as YamlValue)}`);
    const p = spec as Mapping;
    if (p.parameters !== undefined) fail(where, 'nested parameters are not train flags; list flags at the top level');
    const distribution = fillDistribution(p, where, fail);
    const shape = DISTRIBUTIONS[distribution];
    if (!shape) fail(`${where}.distribution`, `${show(distribution)} is not a W&B distribution (${Object.keys(DISTRIBUTIONS).join(', ')})`);
    for (const k of Object.keys(p)) if (k !== 'distribution' && !shape.keys.includes(k)) fail(`${where}.${k}`, `not a key of a ${distribution} parameter (${shape.keys.join(', ')})`);
    for (const k of shape.keys) {
      if (p[k] === undefined && !['q', 'mu', 'sigma', 'a', 'b'].includes(k)) fail(where, `a ${distribution} parameter needs ${shape.keys.join(' and ')}`);
      if (k !== 'values' && k !== 'value' && p[k] !== undefined && !isNum(p[k])) fail(`${where}.${k}`, `${show(p[k])} is not a number`);
    }
    if (method === 'grid' && !shape.grid) fail(where, `grid search takes values, value, int_uniform or q_uniform parameters, not ${distribution}${p.probabilities ? ' (no probabilities)' : ''}`);
    const candidates = candidateValues(p, distribution, where, fail);
    for (const v of candidates) checkParameterValue(name, v, fixed, `${file}: ${where}`);
    if (method === 'grid') gridSize *= gridCount(p, distribution);
  }
  const yaml = dumpYaml(doc);
  return { config: doc, yaml, method: method as LoadedSweep['method'], metric, gridSize: method === 'grid' ? gridSize : undefined };
}

/** The CLI's fill (internal_api.py `_validate_config_and_fill_distribution`), and the schema's own defaults for values/value. */
function fillDistribution(p: Mapping, where: string, fail: (k: string, m: string) => never): string {
  if (p.distribution !== undefined) {
    if (typeof p.distribution !== 'string') fail(`${where}.distribution`, `${show(p.distribution)} is not a distribution name`);
    return p.distribution as string;
  }
  if (p.min !== undefined && p.max !== undefined) {
    if (isInt(p.min) && isInt(p.max)) p.distribution = 'int_uniform';
    else if (isFloat(p.min) && isFloat(p.max)) p.distribution = 'uniform';
    else fail(where, `min ${show(p.min)} and max ${show(p.max)} are ambiguous: write both as integers (int_uniform) or both with a decimal point, e.g. 1.0e-4 (uniform); YAML reads 1e-4 as text`);
    return p.distribution as string;
  }
  if (p.values !== undefined) return p.probabilities !== undefined ? 'categorical_w_probabilities' : 'categorical';
  if (p.value !== undefined || Object.hasOwn(p, 'value')) return 'constant';
  return fail(where, 'give values: [...], value: x, or min and max');
}

/** Values to check against the flag: every listed value, the bounds, and a fractional midpoint where the distribution gives fractions. */
function candidateValues(p: Mapping, distribution: string, where: string, fail: (k: string, m: string) => never): YamlValue[] {
  if (distribution === 'categorical' || distribution === 'categorical_w_probabilities') {
    if (!Array.isArray(p.values) || p.values.length === 0) fail(`${where}.values`, 'must be a non-empty list');
    const values = p.values as YamlValue[];
    if (distribution === 'categorical_w_probabilities') {
      const probs = p.probabilities;
      if (!Array.isArray(probs) || probs.length !== values.length || !probs.every((x) => isNum(x) && num(x) >= 0)) fail(`${where}.probabilities`, `must list one probability ≥ 0 per value (${values.length})`);
      const sum = (probs as YamlValue[]).reduce<number>((s, x) => s + num(x), 0);
      if (Math.abs(sum - 1) > 1e-8) fail(`${where}.probabilities`, `sum to ${sum}, not 1`);
    }
    return values;
  }
  if (distribution === 'constant') return [p.value];
  const bounded = DISTRIBUTIONS[distribution].bounded;
  if (bounded) {
    const [lo, hi] = [num(p.min), num(p.max)];
    if (!(lo < hi)) fail(where, `min ${lo} is not less than max ${hi}`);
    if (distribution === 'int_uniform' && !(isInt(p.min) && isInt(p.max))) fail(where, 'int_uniform bounds must be integers');
    if (distribution.endsWith('_values') && lo <= 0) fail(`${where}.min`, `${lo}: ${distribution} needs min > 0`);
    if (p.q !== undefined && !(num(p.q) > 0)) fail(`${where}.q`, 'must be > 0');
    const map = (x: number) => (distribution === 'log_uniform' || distribution === 'q_log_uniform' ? Math.exp(x) : distribution === 'inv_log_uniform' ? Math.exp(-x) : x);
    const ends = [map(lo), map(hi)];
    const out: YamlValue[] = distribution === 'int_uniform' ? ends : ends.map((x) => (Number.isInteger(x) && DISTRIBUTIONS[distribution].continuous ? new YamlFloat(x) : x));
    // An inner point: continuous distributions give fractions, which integer flags refuse.
    if (DISTRIBUTIONS[distribution].continuous) out.push(ends[0] + (ends[1] - ends[0]) * 0.371);
    return out;
  }
  // Unbounded: normal, log_normal, beta and their q_ forms; only the centre can be checked.
  if (p.sigma !== undefined && num(p.sigma) < 0) fail(`${where}.sigma`, 'must be ≥ 0');
  const mu = p.mu === undefined ? 0 : num(p.mu);
  if (distribution.includes('beta')) return [0.5];
  return [distribution.includes('log') ? Math.exp(mu) : mu];
}

function gridCount(p: Mapping, distribution: string): number {
  if (distribution === 'categorical') return (p.values as YamlValue[]).length;
  if (distribution === 'constant') return 1;
  if (distribution === 'int_uniform') return num(p.max) - num(p.min) + 1;
  // q_uniform: numpy.arange(min, max, q)
  return Math.max(0, Math.ceil((num(p.max) - num(p.min)) / (p.q === undefined ? 1 : num(p.q))));
}

function checkEarlyTerminate(e: YamlValue, fail: (k: string, m: string) => never, hasMetric: boolean): void {
  if (!isMapping(e) || e.type !== 'hyperband') fail('early_terminate', 'must be {type: hyperband, min_iter: N} (or max_iter and s)');
  const et = e as Mapping;
  for (const k of Object.keys(et)) if (!['type', 'min_iter', 'max_iter', 's', 'eta', 'strict'].includes(k)) fail(`early_terminate.${k}`, 'not a hyperband key (type, min_iter, max_iter, s, eta, strict)');
  if (et.min_iter === undefined && (et.max_iter === undefined || et.s === undefined)) fail('early_terminate', 'hyperband needs min_iter, or max_iter and s');
  if (et.min_iter !== undefined && !(isInt(et.min_iter) && num(et.min_iter) >= 1)) fail('early_terminate.min_iter', 'must be an integer ≥ 1 (epochs)');
  if (et.max_iter !== undefined && !isInt(et.max_iter)) fail('early_terminate.max_iter', 'must be an integer (epochs)');
  if (et.s !== undefined && !isNum(et.s)) fail('early_terminate.s', 'must be a number');
  if (et.eta !== undefined && !(isNum(et.eta) && num(et.eta) > 1)) fail('early_terminate.eta', 'must be a number > 1');
  if (et.strict !== undefined && typeof et.strict !== 'boolean') fail('early_terminate.strict', 'must be true or false');
  if (!hasMetric) fail('metric', 'hyperband early termination needs a metric to compare runs');
}
