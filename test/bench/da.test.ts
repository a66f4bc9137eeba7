import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type DaRow, printSensitivity, type Recipe, recipeVariants } from '../../bench/da.ts';
import { UserError } from '../../src/errors.ts';

const recipe: Recipe = {
  epochs: 6, freeze_epochs: 0, base_lr: 2e-3, lr_mult: 1, pct_start: 0.3, div: 5, moms: [0.95, 0.85, 0.95],
  lambda_domain: 0.1, batch_size: 16, n_iter: 12, val_steps: 4, freeze_to: 1,
};

test('recipe variants: each knob ×2 and ×½, momentum through 1 − β1, lambda judged against the recipe\'s source-only runs', () => {
  const v = recipeVariants(recipe, ['lr', 'lambda', 'moms']);
  assert.deepEqual(v.map((x) => [x.name, x.baseline]), [
    ['default', 'default'], ['lr ×2', 'lr ×2'], ['lr ×½', 'lr ×½'], ['lambda ×2', 'default'], ['lambda ×½', 'default'], ['moms ×2', 'moms ×2'], ['moms ×½', 'moms ×½'],
  ]);
  const byName = new Map(v.map((x) => [x.name, x.recipe]));
  assert.equal(byName.get('lr ×2')!.base_lr, 4e-3);
  assert.equal(byName.get('lr ×½')!.base_lr, 1e-3);
  assert.equal(byName.get('lambda ×2')!.lambda_domain, 0.2);
  assert.equal(byName.get('lambda ×½')!.lambda_domain, 0.05);
  byName.get('moms ×2')!.moms.forEach((m, i) => assert.ok(Math.abs(m - [0.9, 0.7, 0.9][i]) < 1e-12));
  byName.get('moms ×½')!.moms.forEach((m, i) => assert.ok(Math.abs(m - [0.975, 0.925, 0.975][i]) < 1e-12));
  // Everything else is the recipe's.
  for (const r of byName.values()) assert.deepEqual({ ...r, base_lr: 0, lambda_domain: 0, moms: [] }, { ...recipe, base_lr: 0, lambda_domain: 0, moms: [] });
  assert.deepEqual(recipeVariants(recipe, []).map((x) => x.name), ['default']);
  assert.throws(() => recipeVariants(recipe, ['wd']), (e: Error) => e instanceof UserError && /^--vary wd: choose from lr, lambda, moms$/.test(e.message));
  assert.throws(() => recipeVariants({ ...recipe, moms: [0.4, 0.3, 0.4] }, ['moms']), (e: Error) => e instanceof UserError && /--vary moms: .* below 0/.test(e.message));
});

test('sensitivity table: DANN wins counted per seed against the baseline variant\'s source-only run', () => {
  const row = (variant: string, mode: DaRow['mode'], seed: number, mae: number, acc: number[] = []): DaRow =>
    ({ shift: 'sprites', variant, seed, impl: 'ours', mode, target_mae: mae, source_rmse_rel: 0.5, domain_accuracy: acc, seconds: 1 });
  const rows = [
    row('default', 'source-only', 0, 3), row('default', 'source-only', 1, 0.4),
    row('default', 'dann', 0, 0.5, [0.5, 0.6, 0.4]), row('default', 'dann', 1, 0.45, [0.5, 0.5, 0.5]),
    // lambda ×2 has no source-only runs of its own: it is judged against default's (3 and 0.4).
    row('lambda ×2', 'dann', 0, 0.6, [0.1, 0.9, 0.5]), row('lambda ×2', 'dann', 1, 0.3, [0.5, 0.5, 0.5]),
  ];
  const lines: string[] = [];
  const log = console.log;
  console.log = (s: string) => lines.push(s);
  try {
    printSensitivity(rows, new Map([['default', 'default'], ['lambda ×2', 'default']]), new Map([['sprites', 0.707]]));
  } finally {
    console.log = log;
  }
  const body = lines.filter((l) => /^\| (default|lambda)/.test(l));
  assert.deepEqual(body, [
    '| default | sprites | ours | 1.700 ± 1.838 | 0.475 ± 0.035 | 0.500 | 1/2 | 0.10 / 0.20 |',
    '| lambda ×2 | sprites | ours | 1.700 ± 1.838 | 0.450 ± 0.212 | 0.600 | 2/2 | 0.40 / 0.80 |',
  ]);
});
