/**
 * Runs the catalogue (cases.ts) against a fixture and renders docs/errors.md from what the CLI said.
 * Used by catalogue.test.ts (which asserts every case and that the doc is current) and by
 * write-errors-doc.ts (which rewrites the doc).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AREAS, CASES, type Case } from './cases.ts';
import { buildFixture, closedPort, diffFingerprints, PRELOAD_FS_FAULT, REPO, runCli, STACK_FRAME, statFingerprint, type CliResult, type Fixture } from './harness.ts';

export interface CatalogueFixture extends Fixture {
  prevRun: string;
  /** A URL on 127.0.0.1 where nothing listens. */
  unreachable: string;
}

export async function catalogueFixture(): Promise<CatalogueFixture> {
  const f = await buildFixture({ prefix: 'ort-dann-catalogue-', prevRun: true, wandb: true });
  return Object.assign(f, { prevRun: f.prevRun!, unreachable: `http://127.0.0.1:${await closedPort()}` });
}

/** Placeholder → real path or URL for one case; the longest real values are substituted first when normalising. */
function placeholders(f: CatalogueFixture, c: Case): [string, string][] {
  const wandb = f.wandb!.url;
  return [
    ['<case>', join(f.root, 'cases', c.id)],
    ['<run>', join(f.root, 'runs', c.id)],
    ['<prev-run>', f.prevRun],
    ['<artifacts>', f.artifacts],
    ['<demo>', f.demo.out],
    ['<wandb>', wandb],
    ['<wandb-host>', new URL(wandb).host],
    ['<unreachable>', f.unreachable],
    ['<unreachable-host>', new URL(f.unreachable).host],
    ['<repo>', REPO.replace(/\/$/, '')],
    ['<tmp>', f.root],
  ];
}

function expand(text: string, table: [string, string][]): string {
  return table.reduce((s, [token, real]) => s.split(token).join(real), text);
}

/**
 * Details that differ from run to run for the same input: libvips keeps one error buffer per process, so
 * with images decoding in parallel the detail of a corrupt file is sometimes another thread's wording.
 */
const VOLATILE: [RegExp, string][] = [
  [/cannot decode image \([^)]*\)/g, 'cannot decode image (<decoder message>)'],
  // A run lock names its holder.
  [/process \d+/g, 'process <pid>'],
  [/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>'],
  // Timings.
  [/ in [\d.]+ s \([\d.]+ images\/s\)/g, ' in <t> s (<rate> images/s)'],
];

/** Real paths back to placeholders, so messages read the same on every machine and run. */
export function normalize(text: string, table: [string, string][]): string {
  const paths = [...table].sort((a, b) => b[1].length - a[1].length).reduce((s, [token, real]) => s.split(real).join(token), text);
  return VOLATILE.reduce((s, [pattern, replacement]) => s.replace(pattern, replacement), paths);
}

/** The working command each case starts from, as [flag, value] pairs ('<images>' is predict's positional). */
const BASE: Record<Case['command'], [string, string | undefined][]> = {
  train: [
    ['--artifacts', '<artifacts>'], ['--source', '<demo>/source-val'], ['--source-val', '<demo>/source-val'],
    ['--target', '<demo>/target-train'], ['--target-val', '<demo>/target-val'], ['--target-labels', '<demo>/target-val-labels.csv'],
    ['--batch-size', '2'], ['--source-size', '2'], ['--val-size', '2'], ['--epochs', '1'], ['--freeze-epochs', '0'],
    ['--threads', '2'], ['--wandb', 'disabled'], ['--run-dir', '<run>'],
  ],
  predict: [['--model', '<prev-run>/model.onnx'], ['--threads', '2'], ['<images>', '<demo>/target-val/images']],
  'build-artifacts': [['--config', '<repo>/models/resnet18-dann.json'], ['--image-size', '128'], ['--out', '<run>/artifacts']],
  export: [['--checkpoint', '<prev-run>'], ['--out', '<run>/model.onnx']],
  evaluate: [
    ['--model', '<prev-run>/model.onnx'], ['--images', '<demo>/target-val'], ['--labels', '<demo>/target-val-labels.csv'],
    ['--threads', '2'], ['--out-dir', '<run>/evaluation'],
  ],
  'demo-data': [['--out', '<run>/demo'], ['--size', '32'], ['--train', '2'], ['--val', '2'], ['--source-val', '2']],
};

export function caseArgv(c: Case): string[] {
  const base = BASE[c.command].filter(([flag]) => !c.drop?.includes(flag)).flatMap(([flag, value]) => (flag === '<images>' ? [value!] : value === undefined ? [flag] : [flag, value]));
  return [c.command, ...base, ...c.args];
}

export interface CaseResult extends CliResult {
  case: Case;
  /** stderr with placeholders for paths. */
  message: string;
  /** Files of the fixture (artifacts, previous run, data, the case's inputs) that changed: '' when none. */
  changed: string;
  ms: number;
}

/** Creates the case's inputs; all setups run before any case, since a setup touches shared files (hard links change their ctime). */
export async function setupCase(f: CatalogueFixture, c: Case): Promise<void> {
  const input = join(f.root, 'cases', c.id);
  mkdirSync(input, { recursive: true });
  await c.setup?.({ input, artifacts: f.artifacts, demo: f.demo.out, prevRun: f.prevRun, run: join(f.root, 'runs', c.id) });
}

export async function runCase(f: CatalogueFixture, c: Case): Promise<CaseResult> {
  const table = placeholders(f, c);
  const input = join(f.root, 'cases', c.id);
  const guarded = [f.artifacts, f.prevRun, f.demo.out, input];
  const before = statFingerprint(guarded);
  const started = performance.now();
  const env = Object.fromEntries(Object.entries(c.env ?? {}).map(([k, v]) => [k, expand(v, table)]));
  if (c.fsFault) env.ORT_DANN_TEST_FS_FAULT = expand(c.fsFault, table);
  const r = await runCli(f, caseArgv(c).map((a) => expand(a, table)), { env, nodeArgs: c.fsFault ? ['--import', PRELOAD_FS_FAULT] : [] });
  const ms = performance.now() - started;
  return { ...r, case: c, message: normalize(r.stderr, table).trimEnd(), changed: diffFingerprints(before, statFingerprint(guarded), f.root), ms };
}

/**
 * Runs the cases `concurrency` at a time (subprocess start-up dominates, so two overlap well even on two
 * cores). A change to the shared fixture is then blamed on a case or its neighbour; either is a failure.
 */
export async function runCases(f: CatalogueFixture, cases: Case[] = CASES, concurrency = 2): Promise<Map<string, CaseResult>> {
  for (const c of cases) await setupCase(f, c);
  // The slow ones (whole runs, W&B back-off) first, so the quick ones fill the gaps beside them.
  const cost = (c: Case) => (c.outcome === 'works' ? 2 : c.area === 'W&B' ? 1 : 0);
  const queue = [...cases].sort((a, b) => cost(b) - cost(a));
  const results = new Map<string, CaseResult>();
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < queue.length) {
      const c = queue[next++];
      results.set(c.id, await runCase(f, c));
    }
  }));
  return results;
}

/** What is wrong with a case's result ([] when it behaved as the catalogue says). */
export function problems(r: CaseResult, f: CatalogueFixture): string[] {
  const c = r.case;
  const out: string[] = [];
  const lines = r.message.split('\n').filter((l) => l.length > 0);
  if (c.outcome === 'error') {
    if (r.code !== 1) out.push(`exit status ${r.code ?? r.signal}, expected 1`);
    if (lines.length !== 1) out.push(`${lines.length} lines on stderr, expected one`);
    if (/internal error/.test(r.message)) out.push('reported as an internal error');
  } else {
    if (r.code !== 0) out.push(`exit status ${r.code ?? r.signal}, expected 0 (it should work)`);
    if (c.expect.source !== '^$' && lines.length === 0) out.push('no warning on stderr');
    if (c.command === 'train' && !existsSync(join(f.root, 'runs', c.id, 'model.onnx'))) out.push('no model.onnx: it did not train to the end');
  }
  for (const line of c.outcome === 'error' ? lines.slice(0, 1) : lines) if (!c.expect.test(line)) out.push(`stderr line does not match ${c.expect}: ${line}`);
  if (STACK_FRAME.test(r.stderr)) out.push('a JavaScript stack trace leaked');
  const key = c.env?.WANDB_API_KEY;
  if (key && (r.stderr.includes(key) || r.stdout.includes(key))) out.push('the W&B API key was printed');
  if (r.changed) out.push(`existing files changed: ${r.changed}`);
  return out;
}

export const DOC_PATH = join(REPO, 'docs', 'errors.md');

function shownCommand(c: Case): string {
  const without = c.drop?.filter((d) => d !== '<images>') ?? [];
  const args = c.args.map((a) => (/[\s;$`'"|&]/.test(a) ? `'${a}'` : a)).join(' ');
  // The key itself stays out of the doc: only that one was set.
  const env = Object.entries(c.env ?? {}).map(([k, v]) => `${k}=${k === 'WANDB_API_KEY' ? '<a well-formed key>' : v} `).join('');
  const fault = c.fsFault ? ` (with ${c.fsFault.slice(c.fsFault.indexOf(':') + 1)} failing writes with ${c.fsFault.slice(0, c.fsFault.indexOf(':'))})` : '';
  return `${env}ort-dann ${c.command} …${args ? ` ${args}` : ''}${without.length ? ` (without ${without.join(', ')})` : ''}${fault}`;
}

/** docs/errors.md: every case with the exact message, grouped by area. */
export function renderDoc(results: Map<string, CaseResult>, cases: Case[] = CASES): string {
  const out = [
    '# Error catalogue',
    '',
    '<!-- Generated by `node --import tsx test/reliability/write-errors-doc.ts`; do not edit by hand.',
    '     test/reliability/catalogue.test.ts fails when this file differs from what the CLI prints. -->',
    '',
    'What ort-dann prints for each mistake in the reliability catalogue (`test/reliability/cases.ts`).',
    'Each case runs the real CLI on one bad input, starting from a working command (`…`): a one-step',
    '`train` on tiny data, `predict` with a trained model, or `build-artifacts` of a 128 px ResNet18.',
    'Errors are one line on stderr, exit status 1, with no stack trace (add `--debug` for one); existing',
    'checkpoints, artifacts and data are left exactly as they were.',
    '',
    'Paths are shown as placeholders: `<case>` the case\'s input folder, `<run>` a new run directory,',
    '`<prev-run>` an earlier finished run, `<artifacts>` 128 px artifacts, `<demo>` the demo data,',
    '`<wandb>` a W&B server, `<unreachable>` an address where nothing listens (`-host`: its host:port).',
    '',
  ];
  for (const area of AREAS) {
    const inArea = cases.filter((c) => c.area === area);
    if (inArea.length === 0) continue;
    out.push(`## ${area}`, '');
    for (const c of inArea) {
      const r = results.get(c.id);
      if (!r) throw new Error(`no result for case ${c.id}`);
      const outcome = c.outcome === 'works' ? `works (exit ${r.code})` : `exit ${r.code}`;
      out.push(`### ${c.title}`, '', `\`${c.id}\` · \`${shownCommand(c)}\` → ${outcome}`, '');
      const lines = r.message.split('\n').filter((l) => l.length > 0);
      if (lines.length === 0) out.push('(no message)', '');
      else out.push('```text', ...lines, '```', '');
    }
  }
  return `${out.join('\n').trimEnd()}\n`;
}
