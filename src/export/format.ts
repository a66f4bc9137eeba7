/** Text output shared by predict and evaluate: CSV fields, float32 numbers, aligned tables. */

/** A CSV field, quoted (RFC 4180) only when it holds a comma, quote or line break. */
export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvLine(fields: string[]): string {
  return `${fields.map(csvField).join(',')}\n`;
}

/** A float32 value in the fewest characters that read back as the same float32 (9 significant digits suffice). */
export function formatFloat(v: number): string {
  return String(Number(v.toPrecision(9)));
}

/** Rows of cells as a left-aligned first column and right-aligned others, two spaces apart. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd()).join('\n');
}
