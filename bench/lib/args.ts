/**
 * The one argument parser of bench/: each bench declares its options (type, default, bounds, help)
 * and gets them typed back. A bad or unknown option is one UserError naming the flag and what it takes.
 * Option keys are camelCase; on the command line they are --kebab-case.
 */
import { UserError } from '../../src/errors.ts';

type Opt =
  | { type: 'int'; default: number; min?: number; help: string }
  | { type: 'number'; default: number; min?: number; help: string }
  | { type: 'string'; default: string; choices?: readonly string[]; help: string }
  | { type: 'flag'; help: string }
  /** Repeatable: every occurrence, in order (e.g. several --image-size). */
  | { type: 'repeated'; help: string }
  /** Comma-separated integers, e.g. --threads 1,2 (repeating the flag appends). */
  | { type: 'ints'; default: readonly number[]; min?: number; help: string };

export type ArgSpec = Record<string, Opt>;

type Value<O extends Opt> = O extends { type: 'int' | 'number' } ? number
  : O extends { type: 'string'; choices: readonly (infer C)[] } ? C
  : O extends { type: 'string' } ? string
  : O extends { type: 'flag' } ? boolean
  : O extends { type: 'repeated' } ? string[]
  : number[];

export type Args<S extends ArgSpec> = { -readonly [K in keyof S]: Value<S[K]> };

const flagName = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** Usage lines for a spec, for the bench's help. */
export function usage(spec: ArgSpec): string {
  return Object.entries(spec).map(([key, o]) => {
    const dflt = 'default' in o ? ` (default ${Array.isArray(o.default) ? o.default.join(',') : o.default})` : '';
    const arg = o.type === 'flag' ? '' : o.type === 'string' && o.choices ? ` ${o.choices.join('|')}` : ' V';
    return `  ${(flagName(key) + arg).padEnd(30)} ${o.help}${dflt}`;
  }).join('\n');
}

export function parseArgs<S extends ArgSpec>(command: string, argv: readonly string[], spec: S): Args<S> {
  const byFlag = new Map(Object.keys(spec).map((key) => [flagName(key), key]));
  const raw = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const key = byFlag.get(argv[i]);
    if (key === undefined) throw new UserError(`${command}: unknown option ${argv[i]}; it takes:\n${usage(spec)}`);
    const values = raw.get(key) ?? [];
    if (spec[key].type === 'flag') values.push('');
    else {
      const v = argv[++i];
      if (v === undefined || byFlag.has(v)) throw new UserError(`${command}: ${argv[i - 1]} needs a value (${spec[key].help})`);
      values.push(v);
    }
    raw.set(key, values);
  }
  const out: Record<string, unknown> = {};
  for (const [key, o] of Object.entries(spec)) {
    const given = raw.get(key);
    const last = given?.at(-1);
    const bad = (what: string, v: string | undefined = last) => new UserError(`${command}: ${flagName(key)} needs ${what}, got ${v}`);
    switch (o.type) {
      case 'flag': out[key] = given !== undefined; break;
      case 'repeated': out[key] = given ?? []; break;
      case 'string':
        if (last !== undefined && o.choices && !o.choices.includes(last)) throw bad(`one of ${o.choices.join(', ')}`);
        out[key] = last ?? o.default;
        break;
      case 'int':
      case 'number': {
        const v = last === undefined ? o.default : Number(last);
        if (!Number.isFinite(v) || (o.type === 'int' && !Number.isInteger(v)) || (o.min !== undefined && v < o.min)) {
          throw bad(`${o.type === 'int' ? 'an integer' : 'a number'}${o.min === undefined ? '' : ` ≥ ${o.min}`}`);
        }
        out[key] = v;
        break;
      }
      case 'ints': {
        if (given === undefined) { out[key] = [...o.default]; break; }
        const vs = given.flatMap((g) => g.split(',')).map((t) => (t.trim() === '' ? NaN : Number(t)));
        if (vs.some((v) => !Number.isInteger(v) || (o.min !== undefined && v < o.min))) throw bad(`integers${o.min === undefined ? '' : ` ≥ ${o.min}`} separated by commas (e.g. 1,2)`, given.join(' '));
        out[key] = vs;
        break;
      }
    }
  }
  return out as Args<S>;
}

/** A --batch value `S+T`: source and target rows of the DANN batch, at least one of each. */
export function parseBatch(batch: string): { nSource: number; nTarget: number } {
  const m = /^(\d+)\+(\d+)$/.exec(batch);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new UserError(`--batch ${batch}: write source+target rows, e.g. 16+16`);
  return { nSource: Number(m[1]), nTarget: Number(m[2]) };
}
