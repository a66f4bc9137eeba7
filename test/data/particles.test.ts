import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRng } from '../../src/rng.ts';
import {
  PARTICLE_LABEL_RANGES,
  SOURCE_OPTICS,
  particleLabels,
  renderParticles,
  sampleParticleScene,
  simulateParticles,
  type Optics,
  type Particle,
  type ParticleScene,
} from '../../src/data/particles.ts';

const noiseless: Optics = { ...SOURCE_OPTICS, noise: { kind: 'gaussian', sd: 0 } };
const scene = (particles: Particle[]): ParticleScene => ({ particles, labels: particleLabels(particles) });
const particle = (x: number, y: number, z = 0): Particle => ({ x, y, z, radius: 0.008, brightness: 0.8 });
const sum = (a: Float32Array) => a.reduce((s, v) => s + v, 0);

test('a sample depends only on (seed, stream, index)', () => {
  const a = simulateParticles(createRng(3).fork('s').at(10), 64);
  const b = simulateParticles(createRng(3).fork('s').at(10), 64);
  assert.deepEqual(a.image, b.image);
  assert.deepEqual(a.labels, b.labels);
  const c = simulateParticles(createRng(4).fork('s').at(10), 64);
  assert.notDeepEqual(a.image, c.image);
});

test('labels do not depend on the rendered size', () => {
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(simulateParticles(createRng(1).at(i), 32).labels, simulateParticles(createRng(1).at(i), 256).labels);
  }
});

test('label semantics on a hand-made scene', () => {
  const ps = [particle(0.1, 0.1, 0.2), particle(0.1, 0.2, 0.4), particle(0.5, 0.5, 0.9)];
  const [n, planar, depth] = particleLabels(ps);
  assert.equal(n, 3);
  // nearest neighbours: 0.1, 0.1 and |(0.5,0.5)-(0.1,0.2)| = 0.5
  assert.ok(Math.abs(planar - (0.1 + 0.1 + 0.5) / 3) < 1e-12);
  assert.ok(Math.abs(depth - 0.5) < 1e-12);
});

test('labels stay in their documented ranges and cover them', () => {
  const root = createRng(11).fork('ranges');
  const seen = { num_particles: [Infinity, -Infinity], planar_dist: [Infinity, -Infinity], depth_dist: [Infinity, -Infinity] } as Record<string, number[]>;
  for (let i = 0; i < 2000; i++) {
    const { labels, particles } = sampleParticleScene(root.at(i));
    assert.ok(Number.isInteger(labels[0]));
    for (const p of particles) assert.ok(p.x >= 0.05 && p.x <= 0.95 && p.y >= 0.05 && p.y <= 0.95 && p.z >= 0 && p.z <= 1);
    (['num_particles', 'planar_dist', 'depth_dist'] as const).forEach((name, k) => {
      const [lo, hi] = PARTICLE_LABEL_RANGES[name];
      assert.ok(labels[k] >= lo && labels[k] <= hi, `${name}=${labels[k]}`);
      seen[name][0] = Math.min(seen[name][0], labels[k]);
      seen[name][1] = Math.max(seen[name][1], labels[k]);
    });
  }
  assert.deepEqual(seen.num_particles, [2, 30]);
  assert.ok(seen.depth_dist[0] < 0.05 && seen.depth_dist[1] > 0.95);
  assert.ok(seen.planar_dist[0] < 0.02 && seen.planar_dist[1] > 0.3);
});

test('images are in [0, 1] and vary with the sample', () => {
  const root = createRng(2);
  const a = simulateParticles(root.at(0), 64).image;
  const b = simulateParticles(root.at(1), 64).image;
  for (const v of a) assert.ok(v >= 0 && v <= 1);
  assert.notDeepEqual(a, b);
});

test('more particles give more light, in a controlled scene and across random samples', () => {
  const rng = createRng(0);
  const few = [particle(0.3, 0.3), particle(0.6, 0.4)];
  const many = [...few, particle(0.2, 0.7), particle(0.5, 0.8), particle(0.8, 0.2), particle(0.7, 0.7)];
  const bg = SOURCE_OPTICS.background * 64 * 64;
  const lightFew = sum(renderParticles(scene(few), 64, noiseless, rng)) - bg;
  const lightMany = sum(renderParticles(scene(many), 64, noiseless, rng)) - bg;
  assert.ok(Math.abs(lightMany / lightFew - 3) < 0.05, `light ratio ${lightMany / lightFew}`);
  // Bright area (pixels well above background) grows with the count over random scenes too.
  const root = createRng(5).fork('count');
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < 300; i++) {
    const { image, labels } = simulateParticles(root.at(i), 64);
    xs.push(labels[0]);
    ys.push(image.filter((v) => v > SOURCE_OPTICS.background + 0.05).length);
  }
  assert.ok(correlation(xs, ys) > 0.5, `corr ${correlation(xs, ys)}`);
});

test('deeper particles are blurrier and dimmer, with their light conserved', () => {
  const rng = createRng(0);
  const size = 64;
  const spread = (z: number) => {
    const img = renderParticles(scene([particle(0.5, 0.5, z)]), size, noiseless, rng);
    let total = 0;
    let m2 = 0;
    let peak = 0;
    for (let j = 0; j < size; j++) {
      for (let i = 0; i < size; i++) {
        const v = img[j * size + i] - SOURCE_OPTICS.background;
        total += v;
        m2 += v * ((i + 0.5 - 32) ** 2 + (j + 0.5 - 32) ** 2);
        peak = Math.max(peak, v);
      }
    }
    return { total, width: Math.sqrt(m2 / total / 2), peak };
  };
  const near = spread(0);
  const mid = spread(0.5);
  const far = spread(1);
  assert.ok(near.width < mid.width && mid.width < far.width, `widths ${near.width} ${mid.width} ${far.width}`);
  assert.ok(near.peak > mid.peak && mid.peak > far.peak);
  assert.ok(Math.abs(far.total / near.total - 1) < 0.01, `light ${near.total} vs ${far.total}`);
  // Across random scenes, depth_dist goes with lower image sharpness (mean squared gradient).
  const root = createRng(6).fork('depth');
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < 300; i++) {
    const { image, labels } = simulateParticles(root.at(i), 64, noiseless);
    let g = 0;
    for (let j = 0; j < 64; j++) for (let k = 0; k < 63; k++) g += (image[j * 64 + k + 1] - image[j * 64 + k]) ** 2;
    xs.push(labels[2]);
    ys.push(g / labels[0]);
  }
  assert.ok(correlation(xs, ys) < -0.5, `corr ${correlation(xs, ys)}`);
});

function correlation(xs: number[], ys: number[]): number {
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < xs.length; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}
