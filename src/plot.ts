/**
 * A small RGBA raster with a built-in 5×7 pixel font, encoded to PNG with pngjs: enough for the plots
 * ort-dann writes (lr_find, evaluation scatter plots) without font files or a native canvas. Text is
 * drawn in lower case; characters without a glyph show as '?'.
 */
import pngjs from 'pngjs';

export type Rgb = readonly [number, number, number];

// One string per glyph row, '#' = ink. Rows 0–6 stand on the baseline; 7–8 hold descenders.
const GLYPHS: Record<string, string> = {
  '0': '.###. #...# #..## #.#.# ##..# #...# .###.',
  '1': '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
  '2': '.###. #...# ....# ...#. ..#.. .#... #####',
  '3': '####. ....# ....# .###. ....# ....# ####.',
  '4': '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
  '5': '##### #.... ####. ....# ....# #...# .###.',
  '6': '..##. .#... #.... ####. #...# #...# .###.',
  '7': '##### ....# ...#. ..#.. .#... .#... .#...',
  '8': '.###. #...# #...# .###. #...# #...# .###.',
  '9': '.###. #...# #...# .#### ....# ...#. .##..',
  a: '..... ..... .###. ....# .#### #...# .####',
  b: '#.... #.... ####. #...# #...# #...# ####.',
  c: '..... ..... .###. #.... #.... #...# .###.',
  d: '....# ....# .#### #...# #...# #...# .####',
  e: '..... ..... .###. #...# ##### #.... .###.',
  f: '..##. .#... ###.. .#... .#... .#... .#...',
  g: '..... ..... .#### #...# #...# #...# .#### ....# .###.',
  h: '#.... #.... ####. #...# #...# #...# #...#',
  i: '..#.. ..... .##.. ..#.. ..#.. ..#.. .###.',
  j: '...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..',
  k: '#.... #.... #..#. #.#.. ##... #.#.. #..#.',
  l: '.##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  m: '..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#',
  n: '..... ..... ####. #...# #...# #...# #...#',
  o: '..... ..... .###. #...# #...# #...# .###.',
  p: '..... ..... ####. #...# #...# #...# ####. #.... #....',
  q: '..... ..... .#### #...# #...# #...# .#### ....# ....#',
  r: '..... ..... #.##. ##..# #.... #.... #....',
  s: '..... ..... .#### #.... .###. ....# ####.',
  t: '.#... .#... ###.. .#... .#... .#..# ..##.',
  u: '..... ..... #...# #...# #...# #..## .##.#',
  v: '..... ..... #...# #...# #...# .#.#. ..#..',
  w: '..... ..... #...# #...# #.#.# #.#.# .#.#.',
  x: '..... ..... #...# .#.#. ..#.. .#.#. #...#',
  y: '..... ..... #...# #...# #...# #...# .#### ....# .###.',
  z: '..... ..... ##### ...#. ..#.. .#... #####',
  '.': '..... ..... ..... ..... ..... .##.. .##..',
  ',': '..... ..... ..... ..... .##.. .##.. ..#.. .#...',
  '-': '..... ..... ..... .###. ..... ..... .....',
  '+': '..... ..#.. ..#.. ##### ..#.. ..#.. .....',
  ':': '..... .##.. .##.. ..... .##.. .##.. .....',
  '_': '..... ..... ..... ..... ..... ..... #####',
  '(': '...#. ..#.. .#... .#... .#... ..#.. ...#.',
  ')': '.#... ..#.. ...#. ...#. ...#. ..#.. .#...',
  '=': '..... ..... ##### ..... ##### ..... .....',
  '/': '....# ....# ...#. ..#.. .#... #.... #....',
  '%': '##..# ##..# ...#. ..#.. .#... #..## #..##',
  ' ': '',
  '?': '.###. #...# ....# ...#. ..#.. ..... ..#..',
};
const FONT = new Map(Object.entries(GLYPHS).map(([ch, rows]) => [ch, rows ? rows.split(' ') : []]));

/** Glyph cell width in font pixels (5 wide plus 1 of spacing). */
const ADVANCE = 6;

export class Canvas {
  readonly rgba: Buffer;

  constructor(readonly width: number, readonly height: number) {
    this.rgba = Buffer.alloc(width * height * 4, 255);
  }

  /** Blends `c` over the pixel with opacity `alpha`. */
  dot(x: number, y: number, c: Rgb, alpha = 1): void {
    const px = Math.round(x);
    const py = Math.round(y);
    if (px < 0 || py < 0 || px >= this.width || py >= this.height) return;
    const o = (py * this.width + px) * 4;
    for (let k = 0; k < 3; k++) this.rgba[o + k] = Math.round(this.rgba[o + k] * (1 - alpha) + c[k] * alpha);
  }

  fill(x: number, y: number, w: number, h: number, c: Rgb): void {
    for (let j = 0; j < h; j++) for (let i = 0; i < w; i++) this.dot(x + i, y + j, c);
  }

  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, width = 1): void {
    const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    const half = (width - 1) / 2;
    for (let s = 0; s <= steps; s++) {
      const t = s / steps;
      this.fill(x0 + (x1 - x0) * t - half, y0 + (y1 - y0) * t - half, width, width, c);
    }
  }

  /** A filled circle blended with `alpha`, so overlapping points read as density. */
  circle(cx: number, cy: number, r: number, c: Rgb, alpha: number): void {
    for (let y = Math.ceil(-r); y <= r; y++) for (let x = Math.ceil(-r); x <= r; x++) if (x * x + y * y <= r * r) this.dot(cx + x, cy + y, c, alpha);
  }

  /** Text with its top-left corner at (x, y), each font pixel drawn as scale×scale. */
  text(x: number, y: number, s: string, c: Rgb, scale = 2): void {
    [...s.toLowerCase()].forEach((ch, k) => {
      (FONT.get(ch) ?? FONT.get('?')!).forEach((row, r) => {
        for (let col = 0; col < 5; col++) if (row[col] === '#') this.fill(x + (k * ADVANCE + col) * scale, y + r * scale, scale, scale, c);
      });
    });
  }

  png(): Buffer {
    const png = new pngjs.PNG({ width: this.width, height: this.height });
    this.rgba.copy(png.data);
    return pngjs.PNG.sync.write(png);
  }
}

export function textWidth(s: string, scale = 2): number {
  return ([...s].length * ADVANCE - 1) * scale;
}

/** Tick positions at a 1, 2 or 5 × 10^k step giving about `count` intervals over [lo, hi]. */
export function ticks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * 0.999)!;
  const out: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) out.push(Number((k * step).toPrecision(12)));
  return out;
}

