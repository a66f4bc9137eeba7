/**
 * Sweep parameters are `ort-dann train` flags, named as `--help` shows them (`lr`, `lambda-domain`,
 * `batch-size`…). A value is checked by train's own flag parsing and checks, on the very command line
 * the agent will build for it, so a sweep that would fail in every run fails before it is created.
 */
import yargs from 'yargs';
import type { Options } from 'yargs';
import { UserError } from '../errors.ts';
import { resolveArgs, trainFlags } from '../cli/train.ts';
import { pythonStr } from './command.ts';
import { isSweepable } from './run-env.ts';
import { YamlFloat, type YamlValue } from './yaml.ts';

function sweepable(name: string): boolean {
  return isSweepable(trainFlags as Record<string, Options>, name);
}

export function sweepableFlags(): string[] {
  return Object.keys(trainFlags).filter(sweepable);
}

export function checkParameterName(name: string, where: string): void {
  if (sweepable(name)) return;
  if (name in trainFlags) throw new UserError(`${where}: --${name} is set by the sweep agent for each run and cannot be a sweep parameter`);
  const close = Object.keys(trainFlags).find((k) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) === name || k.replace(/-/g, '_') === name);
  const hint = close ? `; did you mean ${close}?` : '';
  throw new UserError(`${where}: "${name}" is not an ort-dann train flag${hint} (parameters are train's flag names: ${sweepableFlags().join(', ')})`);
}

/** Parses train's command line as the train command does (yargs with train's flags, numbers checked), throwing UserErrors. */
function parseTrainArgs(argv: string[]): Record<string, unknown> {
  const parsed = yargs(argv)
    .options(trainFlags as Record<string, Options>)
    .option('debug', { type: 'boolean', default: false })
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .strict()
    .help(false)
    .version(false)
    .fail((msg, err) => {
      throw err ?? new UserError(msg.replace(/\s*\n\s*/g, ' ').trim());
    })
    .parseSync() as Record<string, unknown>;
  if ((parsed._ as unknown[]).length > 0) throw new UserError(`unexpected argument ${String((parsed._ as unknown[])[0])}`);
  for (const [name, flag] of Object.entries(trainFlags)) {
    if ((flag as Options).type === 'number' && Number.isNaN(parsed[name])) {
      const given = argv.map((a) => a.split('=')).find(([f]) => f === `--${name}`)?.[1];
      throw new UserError(`--${name} ${given ?? ''}: not a number`);
    }
  }
  return parsed;
}

/** The train flags a sweep `command` passes to every run (its elements after `train`, macros left out). */
export function fixedTrainArgs(command: string[] | undefined): string[] {
  if (!command) return [];
  const at = command.indexOf('train');
  return at < 0 ? [] : command.slice(at + 1).filter((c) => !/^\$\{[^}]*\}$/.test(c));
}

/** Throws a UserError (prefixed with `where`) when train would refuse these flags. */
export function checkTrainArgs(argv: string[], where: string): void {
  try {
    resolveArgs(parseTrainArgs(argv));
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${where}: ${e.message}`);
    throw e;
  }
}

/** Throws naming the parameter when train would refuse `value` for flag `name` (with the command's fixed flags). */
export function checkParameterValue(name: string, value: YamlValue, fixed: string[], where: string): void {
  const flag = trainFlags[name as keyof typeof trainFlags] as Options;
  if (flag.type === 'boolean') {
    if (typeof value !== 'boolean') throw new UserError(`${where}: ${pythonStr(value)} is not true or false (--${name} is a switch)`);
    return;
  }
  if (value !== null && typeof value === 'object' && !(value instanceof YamlFloat)) throw new UserError(`${where}: --${name} takes a single value, not ${pythonStr(value)}`);
  checkTrainArgs([...fixed, `--${name}=${pythonStr(value)}`], `${where} (${pythonStr(value)})`);
}
