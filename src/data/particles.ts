/**
 * The built-in `particles` source: microscope-like images of point particles with three regression
 * targets, rendered on the CPU fast enough to feed training from worker threads.
 *
 * Geometry is in units of the image width (0..1), so labels do not depend on the rendered size.
 *
 * Labels, in this column order (PARTICLE_OUTPUT_NAMES):
 * - `num_particles`: how many particles the scene holds, an integer in [2, 30]. Every centre lies
 *   inside the frame ([0.05, 0.95]² of the width), so every particle contributes light; overlapping
 *   particles are still counted separately.
 * - `planar_dist`: mean over particles of the in-plane (x, y) distance to the nearest other particle,
 *   in image widths. In [0, 0.9·√2]; in practice about 0.005–0.6 because scenes are clustered.
 * - `depth_dist`: mean over particles of |z|, the distance from the focal plane along the optical
 *   axis, in units of the simulator's depth range (0 = in focus, 1 = the most defocused). In [0, 1].
 *
 * A scene draws its count uniformly, a cluster centre and a log-uniform cluster spread (so
 * planar_dist varies independently of the count), and a mean depth with ±0.15 per-particle jitter (so
 * depth_dist covers [0, 1] evenly). Each particle is a Gaussian blob whose light is spread by a
 * depth-dependent point-spread function: σ_psf(z) = σ0 + k·z. The total light of a particle is
 * conserved when it defocuses, so a deeper particle is wider and dimmer, as in a real microscope.
 */
import type { Rng } from '../rng.ts';

export const PARTICLE_OUTPUT_NAMES = ['num_particles', 'planar_dist', 'depth_dist'];

/** Inclusive label ranges (see the module comment for what each label means). */
export const PARTICLE_LABEL_RANGES: Record<string, [number, number]> = {
  num_particles: [2, 30],
  planar_dist: [0, 0.9 * Math.SQRT2],
  depth_dist: [0, 1],
};

export interface Particle {
  /** Centre, in image widths from the left/top edge. */
  x: number;
  y: number;
  /** Distance from the focal plane, 0 (in focus) to 1. */
  z: number;
  /** The particle's own Gaussian radius (σ), in image widths. */
  radius: number;
  /** Peak intensity of the particle when in focus with the source optics, before noise. */
  brightness: number;
}

/**
 * How a scene becomes pixels. The source simulator uses SOURCE_OPTICS; the demo target domain uses
 * DEMO_TARGET_OPTICS, which changes the PSF, illumination, camera response and noise but not the physics.
 */
export interface Optics {
  /** PSF σ in focus and its growth per unit depth, in image widths: σ_psf(z) = psfSigma0 + psfSigmaPerDepth·z. */
  psfSigma0: number;
  psfSigmaPerDepth: number;
  /** σ multipliers along x and y (an astigmatic lens); [1, 1] is a round spot. */
  astigmatism?: [number, number];
  /** Part of each particle's light scattered into a wide halo of `scale` × the spot σ. */
  halo?: { fraction: number; scale: number };
  /** Background level (autofluorescence), as a fraction of white. */
  background: number;
  /** Relative strength of a linear illumination gradient in a random direction per image. */
  gradient?: number;
  /** Relative loss of illumination at the image corners (quadratic fall-off from the centre). */
  vignetting?: number;
  /** Camera response: value = gain · value^gamma, after noise. */
  gamma?: number;
  gain?: number;
  /** `gaussian`: additive noise of sd (fraction of white); `sensor`: Poisson shot noise with
   *  `photonsAtWhite` photons at value 1 plus Gaussian read noise of `readNoise` photons. */
  noise: { kind: 'gaussian'; sd: number } | { kind: 'sensor'; photonsAtWhite: number; readNoise: number };
}

export const SOURCE_OPTICS: Optics = {
  psfSigma0: 0.003,
  psfSigmaPerDepth: 0.025,
  background: 0.05,
  noise: { kind: 'gaussian', sd: 0.01 },
};

/**
 * The demo's "real microscope": the same particles through other optics and another camera. The
 * geometry that defines the labels survives (spots still widen and dim with depth), but the nuisance
 * axes move far: a bright, uneven background (autofluorescence, an illumination gradient, vignetting),
 * a compressed camera response (gain 0.6, gamma 0.6) and Poisson shot noise, plus a slightly
 * astigmatic PSF with a halo. A source-only model reads intensity in source units and is far off here;
 * this is the kind of gap DANN's feature alignment is for.
 */
export const DEMO_TARGET_OPTICS: Optics = {
  psfSigma0: 0.004,
  psfSigmaPerDepth: 0.03,
  astigmatism: [1.15, 0.9],
  halo: { fraction: 0.15, scale: 3 },
  background: 0.3,
  gradient: 0.3,
  vignetting: 0.3,
  gamma: 0.6,
  gain: 0.6,
  noise: { kind: 'sensor', photonsAtWhite: 300, readNoise: 3 },
};

export interface ParticleScene {
  particles: Particle[];
  /** [num_particles, planar_dist, depth_dist]. */
  labels: [number, number, number];
}

/** The three labels of a particle set, as defined in the module comment. */
export function particleLabels(particles: Particle[]): [number, number, number] {
  const n = particles.length;
  let planar = 0;
  let depth = 0;
  for (let i = 0; i < n; i++) {
    let best = Infinity;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const d = Math.hypot(particles[i].x - particles[j].x, particles[i].y - particles[j].y);
      if (d < best) best = d;
    }
    planar += n > 1 ? best : 0;
    depth += particles[i].z;
  }
  return [n, planar / n, depth / n];
}

const MIN_PARTICLES = 2;
const MAX_PARTICLES = 30;
const EDGE = 0.05;

/** Draws a random scene; sample i of a run uses the stream `…fork(stream).at(i).fork('scene')`. */
export function sampleParticleScene(rng: Rng): ParticleScene {
  const n = rng.int(MIN_PARTICLES, MAX_PARTICLES);
  const spread = Math.exp(rng.uniform(Math.log(0.03), Math.log(0.35)));
  const cx = rng.uniform(0.3, 0.7);
  const cy = rng.uniform(0.3, 0.7);
  const meanDepth = rng.next();
  const particles: Particle[] = [];
  const inside = (v: number) => v >= EDGE && v <= 1 - EDGE;
  for (let i = 0; i < n; i++) {
    let x = cx;
    let y = cy;
    // Rejection keeps the cluster's shape; after 20 misses (very wide clusters) fall back to uniform.
    let tries = 0;
    do {
      x = cx + spread * rng.normal();
      y = cy + spread * rng.normal();
    } while (!(inside(x) && inside(y)) && ++tries < 20);
    if (!(inside(x) && inside(y))) {
      x = rng.uniform(EDGE, 1 - EDGE);
      y = rng.uniform(EDGE, 1 - EDGE);
    }
    const z = Math.min(1, Math.max(0, meanDepth + rng.uniform(-0.15, 0.15)));
    particles.push({ x, y, z, radius: rng.uniform(0.006, 0.01), brightness: rng.uniform(0.6, 1) });
  }
  return { particles, labels: particleLabels(particles) };
}

/** erf, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). */
function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const ax = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * ax);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-ax * ax);
  return sign * y;
}

// Scratch rows for the separable spot profile; one set per thread is enough since rendering is synchronous.
let rowX = new Float64Array(0);
let rowY = new Float64Array(0);

/**
 * Adds a Gaussian spot of total light `flux` (value·px²) centred at (cx, cy) px. Each pixel gets the
 * integral of the Gaussian over its area (erf differences), so light is conserved even when σ < 1 px.
 */
function addSpot(out: Float32Array, size: number, cx: number, cy: number, sx: number, sy: number, flux: number): void {
  const x0 = Math.max(0, Math.floor(cx - 4 * sx));
  const x1 = Math.min(size - 1, Math.ceil(cx + 4 * sx));
  const y0 = Math.max(0, Math.floor(cy - 4 * sy));
  const y1 = Math.min(size - 1, Math.ceil(cy + 4 * sy));
  if (x1 < x0 || y1 < y0) return;
  if (rowX.length < size) {
    rowX = new Float64Array(size);
    rowY = new Float64Array(size);
  }
  const kx = 1 / (Math.SQRT2 * sx);
  const ky = 1 / (Math.SQRT2 * sy);
  let prev = erf((x0 - cx) * kx);
  for (let i = x0; i <= x1; i++) {
    const next = erf((i + 1 - cx) * kx);
    rowX[i] = 0.5 * (next - prev);
    prev = next;
  }
  prev = erf((y0 - cy) * ky);
  for (let j = y0; j <= y1; j++) {
    const next = erf((j + 1 - cy) * ky);
    rowY[j] = 0.5 * (next - prev) * flux;
    prev = next;
  }
  for (let j = y0; j <= y1; j++) {
    const wy = rowY[j];
    const base = j * size;
    for (let i = x0; i <= x1; i++) out[base + i] += wy * rowX[i];
  }
}

const RESPONSE_MAX = 1.5;
const RESPONSE_STEPS_PER_UNIT = 4096;
const responseTables = new Map<string, Float64Array>();
/**
 * gain·v^gamma tabulated on [0, 1.5] for linear interpolation: Math.pow per pixel would dominate the
 * render. The interpolation error is below 4e-4, under one 8-bit step (1/255), the output's resolution.
 */
function responseTable(gamma: number, gain: number): Float64Array {
  const key = `${gamma},${gain}`;
  let lut = responseTables.get(key);
  if (!lut) {
    const steps = RESPONSE_MAX * RESPONSE_STEPS_PER_UNIT;
    lut = new Float64Array(steps + 2);
    for (let k = 0; k < lut.length; k++) lut[k] = gain * Math.pow(k / RESPONSE_STEPS_PER_UNIT, gamma);
    responseTables.set(key, lut);
  }
  return lut;
}

/**
 * Renders a scene as a gray `size`×`size` image in [0, 1] into `out` (row-major). `rng` drives only
 * per-image optics randomness (gradient direction) and noise, so one scene can be imaged by two optics.
 */
export function renderParticles(scene: ParticleScene, size: number, optics: Optics, rng: Rng, out: Float32Array = new Float32Array(size * size)): Float32Array {
  const n = size * size;
  const uneven = Boolean(optics.gradient || optics.vignetting);
  // With even illumination the background can be laid down first, saving a pass over the image.
  out.fill(uneven ? 0 : optics.background);
  const [ax, ay] = optics.astigmatism ?? [1, 1];
  for (const p of scene.particles) {
    // Brightness is defined for the source optics in focus, so the same particle carries the same light in both domains.
    const sigmaFocus = Math.hypot(p.radius, SOURCE_OPTICS.psfSigma0) * size;
    const flux = p.brightness * 2 * Math.PI * sigmaFocus * sigmaFocus;
    const sigma = Math.hypot(p.radius, optics.psfSigma0 + optics.psfSigmaPerDepth * p.z) * size;
    const cx = p.x * size;
    const cy = p.y * size;
    if (optics.halo) {
      const h = optics.halo;
      addSpot(out, size, cx, cy, sigma * ax, sigma * ay, flux * (1 - h.fraction));
      addSpot(out, size, cx, cy, sigma * h.scale, sigma * h.scale, flux * h.fraction);
    } else {
      addSpot(out, size, cx, cy, sigma * ax, sigma * ay, flux);
    }
  }
  if (uneven) {
    const angle = rng.uniform(0, 2 * Math.PI);
    const gx = (optics.gradient ?? 0) * Math.cos(angle);
    const gy = (optics.gradient ?? 0) * Math.sin(angle);
    const v = optics.vignetting ?? 0;
    const bg = optics.background;
    for (let j = 0; j < size; j++) {
      const dy = (j + 0.5) / size - 0.5;
      for (let i = 0; i < size; i++) {
        const dx = (i + 0.5) / size - 0.5;
        // 0.5 = squared distance from the centre to a corner, so the corners lose exactly `v`.
        const illumination = (1 - v * (dx * dx + dy * dy) / 0.5) * (1 + gx * dx + gy * dy);
        out[j * size + i] = (out[j * size + i] + bg) * illumination;
      }
    }
  }
  const noise = optics.noise;
  if (noise.kind === 'gaussian') {
    rng.addNormalNoise(out, noise.sd);
  } else {
    const scale = noise.photonsAtWhite;
    for (let i = 0; i < n; i++) {
      out[i] = (rng.poisson(Math.max(0, out[i]) * scale) + noise.readNoise * rng.normal()) / scale;
    }
  }
  const gamma = optics.gamma ?? 1;
  const gain = optics.gain ?? 1;
  if (gamma !== 1 || gain !== 1) {
    const lut = responseTable(gamma, gain);
    for (let i = 0; i < n; i++) {
      const v = out[i];
      if (v <= 0) {
        out[i] = 0;
      } else if (v < RESPONSE_MAX) {
        const x = v * RESPONSE_STEPS_PER_UNIT;
        const k = x | 0;
        out[i] = lut[k] + (lut[k + 1] - lut[k]) * (x - k);
      } else {
        out[i] = gain * Math.pow(v, gamma);
      }
    }
  }
  for (let i = 0; i < n; i++) {
    const v = out[i];
    out[i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
  return out;
}

/**
 * One built-in sample from its own stream: the scene from `rng.fork('scene')`, noise from
 * `rng.fork('render')`. Returns the gray image and [num_particles, planar_dist, depth_dist].
 */
export function simulateParticles(rng: Rng, size: number, optics: Optics = SOURCE_OPTICS, out?: Float32Array): { image: Float32Array; labels: [number, number, number] } {
  const scene = sampleParticleScene(rng.fork('scene'));
  return { image: renderParticles(scene, size, optics, rng.fork('render'), out), labels: scene.labels };
}
