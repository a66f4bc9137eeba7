/**
 * The YAML that W&B sweeps use, read and written as PyYAML (YAML 1.1) does, because PyYAML is what reads
 * it on the other side: the `wandb` CLI and agent load sweep configs and parameter files with
 * `yaml.safe_load` and write them with `yaml.dump`. So `1e-3` is a string (YAML 1.1 floats need a dot),
 * `yes`/`on` are booleans, `0755` is octal. See docs/wandb-sweeps.md.
 *
 * Supported: block mappings and sequences (also a sequence at its key's indentation, as yaml.dump writes
 * it), flow `[...]` and `{...}` (over several lines too), plain, 'single' and "double" quoted scalars,
 * comments, a leading `---`. Anchors, aliases, tags, block scalars (| >) and multi-line plain scalars
 * are refused with the line number: sweep configs do not need them.
 */

/** A float whose value is a whole number (`1.0`): kept apart from the integer 1 where the type matters. */
export class YamlFloat {
  constructor(readonly value: number) {}
}

export type YamlValue = null | boolean | number | string | YamlFloat | YamlValue[] | { [key: string]: YamlValue };

export class YamlError extends Error {
  constructor(readonly line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = 'YamlError';
  }
}

export interface ParseOptions {
  /** Return whole-number floats as YamlFloat (default: plain numbers). */
  keepFloats?: boolean;
}

/** Parses one YAML document; an empty document is null. */
export function parseYaml(text: string, opts: ParseOptions = {}): YamlValue {
  return new Parser(text, opts.keepFloats ?? false).document();
}

/** Whole-number floats (YamlFloat) become plain numbers, recursively. */
export function plainYaml(v: YamlValue): Exclude<YamlValue, YamlFloat> {
  if (v instanceof YamlFloat) return v.value;
  if (Array.isArray(v)) return v.map(plainYaml);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainYaml(x)]));
  return v;
}

// ---------------------------------------------------------------------------------------------------
// Scalars: PyYAML's implicit resolvers (yaml/resolver.py), in its order.

const BOOL = /^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/;
const FLOAT = /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;
const INT = /^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$/;
const NULL = /^(?:~|null|Null|NULL|)$/;
const TIMESTAMP = /^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)$/;

function sexagesimal(text: string): number {
  const sign = text.startsWith('-') ? -1 : 1;
  let value = 0;
  for (const part of text.replace(/^[-+]/, '').split(':')) value = value * 60 + Number(part);
  return sign * value;
}

/** What a plain (unquoted) scalar means to PyYAML's safe_load. */
export function resolvePlain(text: string, keepFloats = false, line = 0): YamlValue {
  if (BOOL.test(text)) return /^(?:yes|true|on)$/i.test(text);
  if (FLOAT.test(text)) {
    const t = text.replace(/_/g, '');
    let v: number;
    if (/\.(?:nan)$/i.test(t)) v = NaN;
    else if (/\.inf$/i.test(t)) v = t.startsWith('-') ? -Infinity : Infinity;
    else if (t.includes(':')) v = sexagesimal(t);
    else v = Number(t);
    return keepFloats && Number.isInteger(v) ? new YamlFloat(v) : v;
  }
  if (INT.test(text)) {
    const t = text.replace(/_/g, '');
    const sign = t.startsWith('-') ? -1 : 1;
    const body = t.replace(/^[-+]/, '');
    if (body.startsWith('0b')) return sign * parseInt(body.slice(2), 2);
    if (body.startsWith('0x')) return sign * parseInt(body.slice(2), 16);
    if (body.includes(':')) return sexagesimal(t);
    if (body.length > 1 && body.startsWith('0')) return sign * parseInt(body, 8);
    return sign * Number(body);
  }
  if (NULL.test(text)) return null;
  if (TIMESTAMP.test(text)) throw new YamlError(line, `"${text}" is a date to YAML; quote it if it is text`);
  if (text === '<<') throw new YamlError(line, 'merge keys (<<) are not supported');
  return text;
}

// ---------------------------------------------------------------------------------------------------

interface Line {
  no: number;
  indent: number;
  text: string;
}

class Parser {
  private readonly lines: Line[] = [];
  private pos = 0;

  constructor(text: string, private readonly keepFloats: boolean) {
    const raw = text.replace(/^\uFEFF/, '').split(/\r?\n/);
    raw.forEach((l, i) => {
      if (/^\t| \t/.test(l.match(/^[ \t]*/)![0]) && l.trim() !== '') throw new YamlError(i + 1, 'tabs cannot indent YAML; use spaces');
      const body = stripComment(l, i + 1).replace(/\s+$/, '');
      if (body.trim() === '') return;
      const indent = body.length - body.trimStart().length;
      this.lines.push({ no: i + 1, indent, text: body.trimStart() });
    });
  }

  document(): YamlValue {
    if (this.lines[0]?.text === '---') this.pos++;
    if (this.lines[0]?.text.startsWith('%')) throw new YamlError(this.lines[0].no, 'YAML directives are not supported');
    const end = this.lines.findIndex((l, i) => i >= this.pos && (l.text === '...' || l.text === '---') && l.indent === 0);
    if (end >= 0) {
      if (this.lines[end].text === '---' || this.lines.slice(end + 1).length > 0) throw new YamlError(this.lines[end].no, 'only one YAML document is allowed');
      this.lines.length = end;
    }
    if (this.pos >= this.lines.length) return null;
    const first = this.lines[this.pos];
    const value = this.block(first.indent);
    if (this.pos < this.lines.length) throw new YamlError(this.lines[this.pos].no, 'unexpected indentation');
    return value;
  }

  private block(indent: number): YamlValue {
    const line = this.lines[this.pos];
    if (isSeqItem(line.text)) return this.sequence(indent);
    if (mappingKey(line.text, line.no) !== undefined) return this.mapping(indent);
    // A lone scalar or flow collection.
    return this.inlineValue(line.text, line.no, indent);
  }

  private sequence(indent: number): YamlValue[] {
    const out: YamlValue[] = [];
    while (this.pos < this.lines.length) {
      const line = this.lines[this.pos];
      if (line.indent < indent) break;
      if (line.indent > indent) throw new YamlError(line.no, 'bad indentation of a sequence item');
      if (!isSeqItem(line.text)) break;
      const rest = line.text.slice(1);
      const content = rest.trimStart();
      if (content === '') {
        this.pos++;
        const next = this.lines[this.pos];
        out.push(next && next.indent > indent ? this.block(next.indent) : null);
        continue;
      }
      // The item's content is a node indented where it starts: `- a: 1` opens a mapping at that column.
      const column = indent + 1 + (rest.length - content.length);
      this.lines[this.pos] = { no: line.no, indent: column, text: content };
      out.push(this.block(column));
    }
    return out;
  }

  private mapping(indent: number): { [key: string]: YamlValue } {
    const out: { [key: string]: YamlValue } = {};
    while (this.pos < this.lines.length) {
      const line = this.lines[this.pos];
      if (line.indent < indent) break;
      if (line.indent > indent) throw new YamlError(line.no, 'bad indentation of a mapping entry');
      const entry = mappingKey(line.text, line.no);
      if (entry === undefined) {
        if (isSeqItem(line.text)) break;
        throw new YamlError(line.no, `expected "key: value", found "${line.text}"`);
      }
      const key = entry.quoted ? entry.key : String(plainKey(resolvePlain(entry.key, false, line.no)));
      if (Object.hasOwn(out, key)) throw new YamlError(line.no, `duplicate key "${key}"`);
      const rest = entry.rest.trim();
      if (rest !== '') {
        out[key] = this.inlineValue(rest, line.no, indent);
        continue;
      }
      this.pos++;
      const next = this.lines[this.pos];
      if (next && next.indent > indent) out[key] = this.block(next.indent);
      else if (next && next.indent === indent && isSeqItem(next.text)) out[key] = this.sequence(indent);
      else out[key] = null;
    }
    return out;
  }

  /** A value on one line (a flow collection may continue on the following, more indented lines). */
  private inlineValue(text: string, no: number, indent: number): YamlValue {
    this.pos++;
    const c = text[0];
    if (c === '&' || c === '*' || c === '!') throw new YamlError(no, 'anchors, aliases and tags are not supported');
    if (c === '|' || c === '>') throw new YamlError(no, 'block scalars (| and >) are not supported; use a quoted string');
    if (c === '[' || c === '{') {
      let source = text;
      for (;;) {
        const flow = new FlowParser(source, no, this.keepFloats);
        const result = flow.parse();
        if (result !== undefined) return result;
        const next = this.lines[this.pos];
        if (!next || next.indent <= indent) throw new YamlError(no, `unclosed ${c === '[' ? "'['" : "'{'"}`);
        source += ` ${next.text}`;
        this.pos++;
      }
    }
    const next = this.lines[this.pos];
    if (next && next.indent > indent && !isSeqItem(next.text) && mappingKey(next.text, next.no) === undefined) {
      throw new YamlError(next.no, 'multi-line plain scalars are not supported; put the value on one line or quote it');
    }
    return scalar(text, no, this.keepFloats, false);
  }
}

function plainKey(v: YamlValue): string | number | boolean | null {
  if (v instanceof YamlFloat) return v.value;
  return v as string | number | boolean | null;
}

function isSeqItem(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

/** `key: rest` with a plain or quoted key; undefined when the line is not a mapping entry. */
function mappingKey(text: string, no: number): { key: string; quoted: boolean; rest: string } | undefined {
  if (text[0] === '"' || text[0] === "'") {
    const { value, end } = quoted(text, 0, no);
    const after = text.slice(end);
    const m = /^\s*:(?:\s|$)/.exec(after);
    return m ? { key: value, quoted: true, rest: after.slice(m[0].length) } : undefined;
  }
  if (text[0] === '[' || text[0] === '{' || isSeqItem(text)) return undefined;
  const m = /:(?:\s|$)/.exec(text);
  if (!m) return undefined;
  return { key: text.slice(0, m.index).trimEnd(), quoted: false, rest: text.slice(m.index + 1) };
}

/** A block-context scalar: quoted, or plain (which may not hold ": "). */
function scalar(text: string, no: number, keepFloats: boolean, flow: boolean): YamlValue {
  if (text[0] === '"' || text[0] === "'") {
    const { value, end } = quoted(text, 0, no);
    if (text.slice(end).trim() !== '') throw new YamlError(no, `unexpected text after the quoted string: "${text.slice(end).trim()}"`);
    return value;
  }
  if (!flow && /:\s/.test(text)) throw new YamlError(no, `"${text}": a value cannot hold ": " unless quoted`);
  return resolvePlain(text, keepFloats, no);
}

/** A quoted scalar starting at `start`: its value and the index after its closing quote. */
function quoted(text: string, start: number, no: number): { value: string; end: number } {
  const q = text[start];
  let out = '';
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (q === "'") {
      if (c === "'") {
        if (text[i + 1] === "'") {
          out += "'";
          i += 2;
          continue;
        }
        return { value: out, end: i + 1 };
      }
      out += c;
      i++;
      continue;
    }
    if (c === '"') return { value: out, end: i + 1 };
    if (c !== '\\') {
      out += c;
      i++;
      continue;
    }
    const e = text[i + 1];
    const simple: Record<string, string> = { '0': '\0', a: '\x07', b: '\b', t: '\t', '\t': '\t', n: '\n', v: '\v', f: '\f', r: '\r', e: '\x1b', ' ': ' ', '"': '"', '/': '/', '\\': '\\', N: '\x85', _: '\xa0', L: '\u2028', P: '\u2029' };
    if (e !== undefined && e in simple) {
      out += simple[e];
      i += 2;
      continue;
    }
    const width = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    const hex = text.slice(i + 2, i + 2 + width);
    if (width === 0 || !new RegExp(`^[0-9a-fA-F]{${width}}$`).test(hex)) throw new YamlError(no, `unknown escape \\${e ?? ''} in a double-quoted string`);
    out += String.fromCodePoint(parseInt(hex, 16));
    i += 2 + width;
  }
  throw new YamlError(no, 'unclosed quoted string (quoted strings must end on the same line)');
}

/** Removes a comment: `#` at the start or after whitespace, outside quotes. */
function stripComment(line: string, no: number): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (quote === '"' && c === '\\') i++;
      else if (c === quote) {
        if (quote === "'" && line[i + 1] === "'") i++;
        else quote = undefined;
      }
      continue;
    }
    if (c === '#' && (i === 0 || /\s/.test(line[i - 1]))) return line.slice(0, i);
    // A quote opens a quoted scalar only where a scalar starts.
    if ((c === '"' || c === "'") && (i === 0 || /[\s[{,:-]/.test(line[i - 1]))) quote = c;
  }
  if (quote) throw new YamlError(no, 'unclosed quoted string (quoted strings must end on the same line)');
  return line;
}

/** `[...]` and `{...}`; parse() is undefined when the text ends before the collection closes. */
class FlowParser {
  private i = 0;

  constructor(private readonly s: string, private readonly no: number, private readonly keepFloats: boolean) {}

  parse(): YamlValue | undefined {
    try {
      const v = this.value();
      this.space();
      if (this.i < this.s.length) throw new YamlError(this.no, `unexpected text after the closing bracket: "${this.s.slice(this.i)}"`);
      return v;
    } catch (e) {
      if (e === INCOMPLETE) return undefined;
      throw e;
    }
  }

  private space(): void {
    while (this.i < this.s.length && /\s/.test(this.s[this.i])) this.i++;
  }

  private peek(): string {
    this.space();
    if (this.i >= this.s.length) throw INCOMPLETE;
    return this.s[this.i];
  }

  private value(): YamlValue {
    const c = this.peek();
    if (c === '[') return this.seq();
    if (c === '{') return this.map();
    if (c === '"' || c === "'") {
      const { value, end } = quoted(this.s, this.i, this.no);
      this.i = end;
      return value;
    }
    if (c === '&' || c === '*' || c === '!') throw new YamlError(this.no, 'anchors, aliases and tags are not supported');
    return resolvePlain(this.plain(), this.keepFloats, this.no);
  }

  /** A plain scalar in flow context ends at , [ ] { } or ": ". */
  private plain(): string {
    const start = this.i;
    while (this.i < this.s.length) {
      const c = this.s[this.i];
      if (c === ',' || c === ']' || c === '}' || c === '[') break;
      if (c === '{') {
        throw new YamlError(this.no, `"${this.s.slice(start, this.s.indexOf('}', this.i) + 1 || undefined)}" inside [ ] or { }: braces end a plain value there; write the list as a block (one "- item" per line) or quote the item`);
      }
      if (c === ':' && (this.i + 1 >= this.s.length || /[\s,\]}]/.test(this.s[this.i + 1]))) break;
      if (c === '#' && /\s/.test(this.s[this.i - 1] ?? '')) break;
      this.i++;
    }
    return this.s.slice(start, this.i).trim();
  }

  private seq(): YamlValue[] {
    this.i++;
    const out: YamlValue[] = [];
    for (;;) {
      if (this.peek() === ']') {
        this.i++;
        return out;
      }
      out.push(this.value());
      const c = this.peek();
      if (c === ',') this.i++;
      else if (c !== ']') throw new YamlError(this.no, `expected ',' or ']' in a flow sequence, found '${c}'`);
    }
  }

  private map(): { [key: string]: YamlValue } {
    this.i++;
    const out: { [key: string]: YamlValue } = {};
    for (;;) {
      if (this.peek() === '}') {
        this.i++;
        return out;
      }
      const k = this.value();
      if (k !== null && typeof k === 'object' && !(k instanceof YamlFloat)) throw new YamlError(this.no, 'a mapping key must be a scalar');
      const key = String(plainKey(k));
      if (Object.hasOwn(out, key)) throw new YamlError(this.no, `duplicate key "${key}"`);
      let c = this.peek();
      if (c === ':') {
        this.i++;
        c = this.peek();
        out[key] = c === ',' || c === '}' ? null : this.value();
      } else out[key] = null;
      c = this.peek();
      if (c === ',') this.i++;
      else if (c !== '}') throw new YamlError(this.no, `expected ',' or '}' in a flow mapping, found '${c}'`);
    }
  }
}

const INCOMPLETE = Symbol('incomplete');

// ---------------------------------------------------------------------------------------------------
// Writing: block style as PyYAML's yaml.dump(default_flow_style=False) writes it.

/** Python's repr() of a float: shortest round-trip digits, exponent below 1e-4 and from 1e16. */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mant, expText] = Math.abs(x).toExponential().split('e');
  const digits = mant.replace('.', '');
  const exp = Number(expText);
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
    const int = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
    return `${sign}${int}.${digits.slice(exp + 1) || '0'}`;
  }
  const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

/** A float as PyYAML writes it: repr, lower case, `.inf`/`.nan`, and a `.0` before a bare exponent. */
function yamlFloat(x: number): string {
  if (Number.isNaN(x)) return '.nan';
  if (!Number.isFinite(x)) return x > 0 ? '.inf' : '-.inf';
  const r = pythonFloatRepr(x);
  return !r.includes('.') && r.includes('e') ? r.replace('e', '.0e') : r;
}

function yamlScalar(v: null | boolean | number | string | YamlFloat): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v instanceof YamlFloat) return yamlFloat(v.value);
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : yamlFloat(v);
  return yamlString(v);
}

function yamlString(s: string): string {
  const plainSafe = s !== '' && s.trim() === s && !/^[,[\]{}#&*!|>'"%@`]|^[-?:](\s|$)/.test(s) && !/:\s|\s#|:$|[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]/.test(s);
  let resolvesToString = false;
  try {
    resolvesToString = plainSafe && typeof resolvePlain(s) === 'string';
  } catch {
    resolvesToString = false;
  }
  if (resolvesToString) return s;
  if (!/[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]/.test(s)) return `'${s.replace(/'/g, "''")}'`;
  return JSON.stringify(s);
}

export interface DumpOptions {
  /** Sort mapping keys, as yaml.dump does by default (sort_keys=True). */
  sortKeys?: boolean;
}

/** Block-style YAML of `value`, ending with a newline. */
export function dumpYaml(value: YamlValue, opts: DumpOptions = {}): string {
  const out: string[] = [];
  const isScalar = (v: YamlValue) => v === null || typeof v !== 'object' || v instanceof YamlFloat;
  const emptyFlow = (v: YamlValue) => (Array.isArray(v) ? v.length === 0 && '[]' : v && typeof v === 'object' && !(v instanceof YamlFloat) && Object.keys(v).length === 0 && '{}');
  const write = (v: YamlValue, indent: string) => {
    if (Array.isArray(v)) {
      for (const item of v) {
        if (isScalar(item) || emptyFlow(item)) out.push(`${indent}- ${emptyFlow(item) || yamlScalar(item as never)}`);
        else {
          const start = out.length;
          write(item, `${indent}  `);
          out[start] = `${indent}- ${out[start].slice(indent.length + 2)}`;
        }
      }
      return;
    }
    const obj = v as { [key: string]: YamlValue };
    const keys = Object.keys(obj);
    if (opts.sortKeys ?? true) keys.sort();
    for (const k of keys) {
      const item = obj[k];
      const key = yamlString(k);
      if (isScalar(item) || emptyFlow(item)) out.push(`${indent}${key}: ${emptyFlow(item) || yamlScalar(item as never)}`);
      else {
        out.push(`${indent}${key}:`);
        // yaml.dump writes a list under a key at the key's own indentation.
        write(item, Array.isArray(item) ? indent : `${indent}  `);
      }
    }
  };
  if (isScalar(value) || emptyFlow(value)) return `${emptyFlow(value) || yamlScalar(value as never)}\n`;
  write(value, '');
  return `${out.join('\n')}\n`;
}
