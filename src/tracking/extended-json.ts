/**
 * W&B's "extended JSON": plain JSON plus the bare tokens `NaN`, `Infinity` and `-Infinity`, as Python's
 * json module writes them. `JSON.stringify` would turn a diverging loss into `null`, which W&B then shows as
 * a missing point instead of the NaN that explains why the run broke.
 */

/** Serialises like JSON.stringify (undefined/functions skipped in objects, null in arrays) but keeps non-finite numbers. */
export function toWandbJson(value: unknown): string {
  const out: string[] = [];
  write(value, out, new Set());
  return out.join('');
}

function write(value: unknown, out: string[], seen: Set<object>): void {
  if (value === null || value === undefined || typeof value === 'function' || typeof value === 'symbol') {
    out.push('null');
    return;
  }
  switch (typeof value) {
    case 'number':
      out.push(numberToken(value));
      return;
    case 'bigint':
      out.push(value.toString());
      return;
    case 'string':
      out.push(JSON.stringify(value));
      return;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
  }
  const obj = value as object;
  if (seen.has(obj)) throw new TypeError('cannot serialise a circular structure for W&B');
  if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
    write((obj as { toJSON(): unknown }).toJSON(), out, seen);
    return;
  }
  seen.add(obj);
  if (Array.isArray(obj) || ArrayBuffer.isView(obj)) {
    const items = Array.isArray(obj) ? obj : Array.from(obj as unknown as ArrayLike<number>);
    out.push('[');
    items.forEach((item, i) => {
      if (i > 0) out.push(',');
      write(item, out, seen);
    });
    out.push(']');
  } else {
    out.push('{');
    let first = true;
    for (const [k, v] of Object.entries(obj)) {
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      if (!first) out.push(',');
      first = false;
      out.push(JSON.stringify(k), ':');
      write(v, out, seen);
    }
    out.push('}');
  }
  seen.delete(obj);
}

function numberToken(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return 'Infinity';
  if (n === -Infinity) return '-Infinity';
  return JSON.stringify(n);
}

/** Parses extended JSON (the inverse of toWandbJson). Throws SyntaxError on anything else. */
export function parseWandbJson(text: string): unknown {
  const p = { text, i: 0 };
  const value = parseValue(p);
  skipSpace(p);
  if (p.i !== text.length) fail(p, 'unexpected trailing characters');
  return value;
}

interface Cursor {
  text: string;
  i: number;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

function parseValue(p: Cursor): unknown {
  skipSpace(p);
  const c = p.text[p.i];
  if (c === '{') {
    p.i++;
    const obj: Record<string, unknown> = {};
    skipSpace(p);
    if (p.text[p.i] === '}') {
      p.i++;
      return obj;
    }
    for (;;) {
      skipSpace(p);
      if (p.text[p.i] !== '"') fail(p, 'expected a string key');
      const key = parseString(p);
      skipSpace(p);
      if (p.text[p.i++] !== ':') fail(p, "expected ':'");
      obj[key] = parseValue(p);
      skipSpace(p);
      const sep = p.text[p.i++];
      if (sep === '}') return obj;
      if (sep !== ',') fail(p, "expected ',' or '}'");
    }
  }
  if (c === '[') {
    p.i++;
    const arr: unknown[] = [];
    skipSpace(p);
    if (p.text[p.i] === ']') {
      p.i++;
      return arr;
    }
    for (;;) {
      arr.push(parseValue(p));
      skipSpace(p);
      const sep = p.text[p.i++];
      if (sep === ']') return arr;
      if (sep !== ',') fail(p, "expected ',' or ']'");
    }
  }
  if (c === '"') return parseString(p);
  for (const [token, value] of LITERALS) {
    if (p.text.startsWith(token, p.i)) {
      p.i += token.length;
      return value;
    }
  }
  NUMBER.lastIndex = p.i;
  const m = NUMBER.exec(p.text);
  if (!m) fail(p, 'unexpected character');
  p.i += m[0].length;
  return Number(m[0]);
}

const LITERALS: [string, unknown][] = [
  ['true', true], ['false', false], ['null', null], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity],
];

function parseString(p: Cursor): string {
  STRING.lastIndex = p.i;
  const m = STRING.exec(p.text);
  if (!m) fail(p, 'malformed string');
  p.i += m[0].length;
  return JSON.parse(m[0]) as string;
}

function skipSpace(p: Cursor): void {
  while (p.i < p.text.length && ' \t\n\r'.includes(p.text[p.i])) p.i++;
}

function fail(p: Cursor, what: string): never {
  throw new SyntaxError(`extended JSON: ${what} at position ${p.i}`);
}
