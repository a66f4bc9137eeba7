/**
 * optimizer_model.onnx: fastai's Adam step (decoupled weight decay, damped moving averages, debiasing
 * with the current mom, eps after the square root) over one contiguous segment of the flat parameter
 * buffer whose tensors share hyper-parameters and step count. The runtime calls it per segment.
 */
import { Builder } from '../onnx/builder.ts';
import { Graph } from '../onnx/graph.ts';

export function buildAdamGraph(): Graph {
  const g = new Graph();
  g.name = 'fastai_adam';
  const vec = ['S'];
  g.inputs.push(
    { name: 'param', dtype: 'float', shape: vec },
    { name: 'grad', dtype: 'float', shape: vec },
    { name: 'exp_avg', dtype: 'float', shape: vec },
    { name: 'exp_avg_sq', dtype: 'float', shape: vec },
    ...['lr', 'mom', 'sqr_mom', 'eps', 'wd', 'step'].map((name) => ({ name, dtype: 'float' as const, shape: [] })),
  );
  const b = new Builder(g, 'adam');
  const one = b.scalar(1);
  const sub1 = (x: string) => b.op('Sub', [one, x]);
  const decayed = b.op('Mul', ['param', sub1(b.op('Mul', ['lr', 'wd']))]);
  const m = b.op('Add', [b.op('Mul', ['exp_avg', 'mom']), b.op('Mul', ['grad', sub1('mom')])], {}, 'exp_avg.out');
  const v = b.op('Add', [b.op('Mul', ['exp_avg_sq', 'sqr_mom']), b.op('Mul', [b.op('Mul', ['grad', 'grad']), sub1('sqr_mom')])], {}, 'exp_avg_sq.out');
  const debias1 = sub1(b.op('Pow', ['mom', 'step']));
  const debias2 = sub1(b.op('Pow', ['sqr_mom', 'step']));
  const denom = b.op('Add', [b.op('Sqrt', [b.op('Div', [v, debias2])]), 'eps']);
  const update = b.op('Mul', [b.op('Div', [m, denom]), b.op('Div', ['lr', debias1])]);
  b.op('Sub', [decayed, update], {}, 'param.out');
  g.outputs.push(
    { name: 'param.out', dtype: 'float', shape: vec },
    { name: 'exp_avg.out', dtype: 'float', shape: vec },
    { name: 'exp_avg_sq.out', dtype: 'float', shape: vec },
  );
  return g;
}
