/**
 * The child command of a sweep run, built as the wandb agent builds it (wandb/sdk/launch/sweeps/utils.py,
 * wandb_agent.py): the sweep's `command` list with macros expanded as whole elements, values written as
 * Python's str() writes them. See docs/wandb-sweeps.md.
 */
import { pythonFloatRepr, YamlFloat } from './yaml.ts';

/** A value as Python's str() writes it (`1e-05`, `True`, `None`); whole-number floats that came through JSON print as ints. */
export function pythonStr(v: unknown): string {
  return typeof v === 'string' ? v : pythonRepr(v);
}

function pythonRepr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (v instanceof YamlFloat) return pythonFloatRepr(v.value);
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : pythonFloatRepr(v);
  if (typeof v === 'string') return v.includes("'") && !v.includes('"') ? `"${v}"` : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (Array.isArray(v)) return `[${v.map(pythonRepr).join(', ')}]`;
  return `{${Object.entries(v as object).map(([k, x]) => `${pythonRepr(k)}: ${pythonRepr(x)}`).join(', ')}}`;
}

/** A `run` command's parameters: `{name: {value}}`. */
export type RunArgs = Record<string, { value: unknown }>;

/** The macro values for one run, as create_sweep_command_args forms them. */
export function macroValues(args: RunArgs, program: string | undefined, argsJsonFile: string): Record<string, string[]> {
  const entries = Object.entries(args).map(([k, v]) => [k, v.value] as const);
  return {
    args: entries.map(([k, v]) => `--${k}=${pythonStr(v)}`),
    args_no_equals: entries.flatMap(([k, v]) => [`--${k}`, pythonStr(v)]),
    args_no_hyphens: entries.map(([k, v]) => `${k}=${pythonStr(v)}`),
    // Booleans become bare switches: true → --k, false → left out.
    args_no_boolean_flags: entries.flatMap(([k, v]) => (typeof v === 'boolean' ? (v ? [`--${k}`] : []) : [`--${k}=${pythonStr(v)}`])),
    args_json: [pythonJsonDumps(Object.fromEntries(entries))],
    args_json_file: [argsJsonFile],
    args_append_hydra: entries.map(([k, v]) => `+${k}=${pythonStr(v)}`),
    args_override_hydra: entries.map(([k, v]) => `++${k}=${pythonStr(v)}`),
    env: ['/usr/bin/env'],
    interpreter: ['python'],
    program: program === undefined ? [] : [program],
  };
}

/** json.dumps with Python's default separators (", " and ": "). */
export function pythonJsonDumps(v: unknown): string {
  // Floats as Python's repr writes them (1e-05, not 0.00001), NaN/Infinity as json.dumps allows them.
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : Number.isNaN(v) ? 'NaN' : !Number.isFinite(v) ? (v > 0 ? 'Infinity' : '-Infinity') : pythonFloatRepr(v);
  if (v instanceof YamlFloat) return pythonFloatRepr(v.value);
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(pythonJsonDumps).join(', ')}]`;
  return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pythonJsonDumps(x)}`).join(', ')}}`;
}

/**
 * The child's argv: `${envvar:NAME}` replaced anywhere in an element (by the variable, or by NAME when
 * unset, as wandb does), then elements that are exactly `${macro}` replaced by the macro's list; an
 * unknown macro disappears.
 */
export function expandCommand(command: string[], macros: Record<string, string[]>, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const raw of command) {
    const element = raw.replace(/\$\{envvar:([A-Z0-9_]*)\}/g, (_, name: string) => env[name] ?? name);
    const m = /^\$\{(.*)\}$/.exec(element);
    if (m) out.push(...(macros[m[1]] ?? []));
    else out.push(element);
  }
  return out;
}
