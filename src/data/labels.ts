/**
 * Label CSVs: a header `filename,<output name>,…` and one row per image with finite numbers.
 * Fields may be double-quoted (RFC 4180, "" for a quote); a field cannot span lines. Line numbers in
 * errors are 1-based file lines, header included, so they match what an editor shows.
 */
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { UserError } from '../errors.ts';

export interface LabelRow {
  /** File name relative to the image folder, '/'-separated. */
  name: string;
  line: number;
  values: number[];
}

export interface LabelTable {
  file: string;
  outputNames: string[];
  rows: LabelRow[];
}

function splitCsvLine(text: string, where: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new UserError(`${where}: unterminated quoted field; close the quote`);
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += text[i++];
      }
      if (i < text.length && text[i] !== ',') throw new UserError(`${where}: text after a closing quote; quote the whole field`);
    } else {
      const comma = text.indexOf(',', i);
      field = text.slice(i, comma === -1 ? text.length : comma);
      i = comma === -1 ? text.length : comma;
    }
    fields.push(field.trim());
    if (i >= text.length) return fields;
    i++; // past the comma
  }
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Canonical relative name: '/' separators, no './', refusing absolute paths and '..'. */
export function normalizeImageName(name: string): string | undefined {
  const n = posix.normalize(name.replace(/\\/g, '/'));
  if (n.startsWith('/') || n === '..' || n.startsWith('../') || /^[a-zA-Z]:/.test(n) || n === '.') return undefined;
  return n;
}

/** Parses label CSV text; `file` names the CSV in error messages. */
export function parseLabelsCsv(text: string, file: string): LabelTable {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const headerIndex = lines.findIndex((l) => l.trim() !== '');
  if (headerIndex === -1) throw new UserError(`${file}: empty CSV; write a header "filename,<output names…>" and one row per image`);
  const header = splitCsvLine(lines[headerIndex], `${file}:${headerIndex + 1}`);
  if (header.length < 2 || header[0].toLowerCase() !== 'filename') {
    throw new UserError(`${file}:${headerIndex + 1}: header must be "filename,<output names…>" with at least one output column; got "${lines[headerIndex].trim()}"`);
  }
  const outputNames = header.slice(1);
  const seenNames = new Set<string>();
  for (const name of outputNames) {
    if (name === '') throw new UserError(`${file}:${headerIndex + 1}: empty output name in the header; name every column`);
    if (seenNames.has(name)) throw new UserError(`${file}:${headerIndex + 1}: output name "${name}" appears twice in the header; rename one`);
    seenNames.add(name);
  }
  const rows: LabelRow[] = [];
  const firstLineOf = new Map<string, number>();
  for (let i = headerIndex + 1; i < lines.length; i++) {
    if (lines[i].trim() === '') continue;
    const line = i + 1;
    const where = `${file}:${line}`;
    const fields = splitCsvLine(lines[i], where);
    if (fields.length !== header.length) {
      throw new UserError(`${where}: expected ${header.length} columns (${header.join(',')}), got ${fields.length}; fix the row`);
    }
    const name = normalizeImageName(fields[0]);
    if (!fields[0] || name === undefined) {
      throw new UserError(`${where}: filename "${fields[0]}" must be a path relative to the image folder; fix the row`);
    }
    const first = firstLineOf.get(name);
    if (first !== undefined) throw new UserError(`${where}: duplicate filename "${name}" (first on line ${first}); keep one row per image`);
    firstLineOf.set(name, line);
    const values = fields.slice(1).map((f, k) => {
      if (!DECIMAL.test(f)) {
        const shown = f === '' ? 'empty' : `"${f}"`;
        throw new UserError(`${where}: ${outputNames[k]} is ${shown}, not a finite number; fix the value`);
      }
      const v = Number(f);
      if (!Number.isFinite(v)) throw new UserError(`${where}: ${outputNames[k]} is "${f}", which overflows to infinity; fix the value`);
      // Labels are trained as float32: a larger double would become Infinity there.
      if (!Number.isFinite(Math.fround(v))) throw new UserError(`${where}: ${outputNames[k]} is "${f}", beyond the float32 range (±3.4e38) the model trains in; fix the value`);
      return v;
    });
    rows.push({ name, line, values });
  }
  if (rows.length === 0) throw new UserError(`${file}: no rows after the header; add one row per image`);
  return { file, outputNames, rows };
}

export async function readLabelsCsv(file: string): Promise<LabelTable> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UserError(`${file}: labels CSV not found; check the path`);
  }
  return parseLabelsCsv(text, file);
}
