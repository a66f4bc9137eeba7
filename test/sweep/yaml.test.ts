/**
 * The sweep YAML reader and writer against PyYAML (what the wandb CLI and agent use on the other side):
 * the same documents load to the same values, with ints and floats kept apart, and what we write loads
 * back in PyYAML to what we meant and matches yaml.dump's text.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { dumpYaml, parseYaml, pythonFloatRepr, YamlError, YamlFloat, type YamlValue } from '../../src/sweep/yaml.ts';

/** Values with their YAML types spelled out, as the Python side prints them. */
function tagged(v: YamlValue): unknown {
  if (v instanceof YamlFloat) return { f: pythonFloatRepr(v.value) };
  if (typeof v === 'number') return Number.isInteger(v) ? { i: String(v) } : { f: pythonFloatRepr(v) };
  if (Array.isArray(v)) return v.map(tagged);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, tagged(x)]));
  return v;
}

const PY_TAGGED = String.raw`
import json, sys, yaml
def tag(v):
    if isinstance(v, bool) or v is None or isinstance(v, str): return v
    if isinstance(v, int): return {'i': str(v)}
    if isinstance(v, float): return {'f': repr(v)}
    if isinstance(v, list): return [tag(x) for x in v]
    if isinstance(v, dict): return {str(k): tag(x) for k, x in v.items()}
    raise TypeError(type(v))
docs = json.load(sys.stdin)
out = []
for d in docs:
    v = yaml.safe_load(d['load']) if 'load' in d else None
    out.append({'loaded': tag(v), 'dumped': yaml.dump(d['dump'], Dumper=yaml.SafeDumper, default_flow_style=False) if 'dump' in d else None})
print(json.dumps(out))
`;

function python(docs: object[]): { loaded: unknown; dumped: string | null }[] {
  const r = spawnSync('/usr/bin/python3', ['-c', PY_TAGGED], { input: JSON.stringify(docs), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 with PyYAML failed (apt-get install python3-yaml): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const CORPUS = [
  `# the seed recipe
program: ort-dann
method: grid
metric:
  name: target_rmse_num_particles   # lower is better
  goal: minimize
parameters:
  lr:
    values: [1.0e-3, 2e-3, 0.005]
  lambda-domain:
    values:
      - 0.1
      - 0.3
  batch-size:
    value: 16
  domain: {values: [yes, false]}
  lr-mult: {min: 10, max: 100}
  seed: {min: 0.0, max: 1.0}
command:
- \${env}
- npx
- ort-dann
- train
- \${args}
early_terminate:
  type: hyperband
  min_iter: 3
run_cap: 12
`,
  `---
a: 'it''s'
b: "tab\\there \\u00e9 \\x41"
c: ~
d:
e: 0755
f: 0x1F
g: 1_000
h: .5
i: -.inf
j: 1:30
k: "a: b # not a comment"
l: it's # a comment
m: [a, 'b c', "d", 1, 2.5, null, {x: 1, y: [z]}]
n: {}
o: []
p:
  - - 1
    - 2
  - name: q
    v: 3
  -
    deep: true
q: 1e5
r: +12
s: http://example.com:8080/x
'quoted key': 7
`,
  `[1, 2,
  3]`,
  `plain`,
];

test('sweep YAML loads as PyYAML loads it', () => {
  const py = python(CORPUS.map((load) => ({ load })));
  CORPUS.forEach((doc, i) => assert.deepEqual(tagged(parseYaml(doc, { keepFloats: true })), py[i].loaded, `document ${i}`));
});

test('what dumpYaml writes, PyYAML loads back unchanged, and it is the text yaml.dump writes', () => {
  const values: YamlValue[] = [
    parseYaml(CORPUS[0], { keepFloats: true }),
    parseYaml(CORPUS[1], { keepFloats: true }),
    { args: { lr: { value: 1e-5 }, big: { value: 1.5e16 }, s: { value: '1e-3' }, t: { value: 'yes' }, u: { value: '' }, w: { value: ' pad' }, x: { value: 'a\nb' }, y: { value: '${args}' } } },
  ];
  const py = python(values.map((v) => ({ load: dumpYaml(v), dump: tagged(v) })));
  values.forEach((v, i) => {
    assert.deepEqual(py[i].loaded, tagged(v), `document ${i} did not load back`);
  });
  // The exact text only for documents without floats (the Python side dumps its tagged form).
  const simple = { method: 'grid', parameters: { b: { values: [1, 2] }, a: { value: 'x y' } }, command: ['${env}', 'npx', '--epochs', '-', '${args}'], empty: {}, none: null, t: true };
  assert.equal(dumpYaml(simple), python([{ dump: simple }])[0].dumped);
});

test('Python float repr', () => {
  const cases: [number, string][] = [[1e-5, '1e-05'], [0.0001, '0.0001'], [2e-3, '0.002'], [1.5e16, '1.5e+16'], [1e16, '1e+16'], [123.25, '123.25'], [-0.5, '-0.5'], [1e22, '1e+22'], [0.1 + 0.2, '0.30000000000000004']];
  for (const [x, want] of cases) assert.equal(pythonFloatRepr(x), want);
});

test('what sweep configs must not contain fails with the line', () => {
  const bad: [string, RegExp][] = [
    ['command: [npx, ort-dann, train, ${args}]', /line 1: "\$\{args\}" inside \[ \]/],
    ['a: 1\na: 2', /line 2: duplicate key "a"/],
    ['a: &x 1', /line 1: anchors/],
    ['a: |\n  text', /line 1: block scalars/],
    ['a: "open', /line 1: unclosed quoted string/],
    ['a:\n\tb: 1', /line 2: tabs/],
    ['a: b: c', /line 1: .*": "/],
    ['a: [1, 2', /line 1: unclosed/],
    ['a: 2026-12-02', /line 1: .*date/],
    ['a: 1\n---\nb: 2', /only one YAML document/],
  ];
  for (const [doc, re] of bad) assert.throws(() => parseYaml(doc), (e: unknown) => e instanceof YamlError && re.test(e.message), doc);
});
