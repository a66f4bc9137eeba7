"""A whole `ort-dann train` run in plain PyTorch, written from fastai's definitions rather than from our
code (docs/da-parity.md lists every rule and where ours deliberately differs from the seed):

- the seed's model (seed_dann.DANN), loaded from an artifacts checkpoint, BatchNorm over the combined
  batch (source rows first), or per domain when the manifest says batchNormStats 'per-domain'
  (seed_dann.DomainBatchNorm2d; every forward is told how many leading rows are source);
  MSE on source rows + lambda * BCE-with-logits over all rows;
- fine_tune_dann: freeze_to(1) + fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99), then
  base_lr /= 2, unfreeze, fit_one_cycle(epochs, slice(base_lr/lr_mult, base_lr), pct_start, div);
  fastai's combine_scheds (float32 phase boundaries) for lr per group AND mom, pct_train accumulated
  per batch as TrainEvalCallback does; slice() over the seed's five groups (grl is empty);
- fastai Adam: decoupled weight decay (none on BatchNorm and bias), dampened averages, per-parameter
  step counts, clear_state at every freeze/unfreeze; train_bn (BatchNorm stays trainable when frozen);
- alpha = 2/(1+exp(-10 p)) - 1 with p the fraction of all planned batches (freeze phase included);
- validation every epoch in eval mode: valid_loss, domain_accuracy, source RMSE and target MAE per output.

Usage: whole_run.py SPEC.json OUT.safetensors  (prints a JSON record on stdout)
SPEC: artifacts, data (safetensors: source_images/labels, target_images, source_val_images/labels,
target_val_images[/labels]), recipe {epochs, freeze_epochs, base_lr, lr_mult, pct_start, div, moms,
wd, sqr_mom, eps, lambda_domain, domain, batch_size, n_iter, val_steps, freeze_to}, dtype, threads,
seed; `order: "given"` reads per-step source/target indices and dropout keep-masks from the data file
(order_source, order_target, mask_label, mask_domain), `order: "shuffle"` draws its own (torch).
"""
import json
import math
import struct
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_dann  # noqa: E402

DTYPES = {'F32': torch.float32, 'F64': torch.float64, 'I64': torch.int64}
GROUP_PREFIXES = ['feature_extractor.resnet_layers.', 'feature_extractor.additional_layers.', 'label_predictor.', 'domain_classifier.', 'grl.']


def read_safetensors(path):
    raw = open(path, 'rb').read()
    n, = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop('__metadata__', None)
    out = {}
    for k, v in header.items():
        s, e = v['data_offsets']
        buf = bytearray(raw[8 + n + s:8 + n + e])
        t = torch.frombuffer(buf, dtype=DTYPES[v['dtype']]) if buf else torch.empty(0, dtype=DTYPES[v['dtype']])
        out[k] = t.reshape(v['shape'])
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().float()
        data = t.flatten().numpy().tobytes()
        header[k] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


# ---- fastai schedules (fastai/callback/schedule.py) ----
def sched_cos(start, end, pos):
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def combined_cos(pct, start, middle, end):
    pcts = torch.cumsum(torch.tensor([0.0, pct, 1 - pct]), 0)  # fastai: tensor([0] + L(pcts)), float32
    scheds = [lambda p: sched_cos(start, middle, p), lambda p: sched_cos(middle, end, p)]

    def inner(pos):
        idx = min(int((pos >= pcts).nonzero().max()), 1)
        actual = (pos - pcts[idx]) / (pcts[idx + 1] - pcts[idx])
        return scheds[idx](actual.item())
    return inner


def even_mults(start, stop, n):
    if n == 1:
        return [stop]
    step = (stop / start) ** (1 / (n - 1))
    return [start * step ** i for i in range(n)]


def slice_lrs(a, b, n):
    return even_mults(a, b, n) if a else [b / 10] * (n - 1) + [b]


class MaskDropout(nn.Module):
    """nn.Dropout(p) whose keep-mask (1 = keep) is set before each batch; kept values scale by 1/(1-p)."""
    def __init__(self, p):
        super().__init__()
        self.p, self.mask = p, None

    def forward(self, x):
        return x * self.mask / (1 - self.p) if self.training else x


def main():
    spec = json.load(open(sys.argv[1]))
    out_path = sys.argv[2]
    dtype = torch.float64 if spec.get('dtype') == 'float64' else torch.float32
    torch.set_num_threads(int(spec.get('threads', 2)))
    torch.manual_seed(int(spec.get('seed', 0)))
    r = spec['recipe']
    art = spec['artifacts']
    manifest = json.load(open(f'{art}/manifest.json'))
    config = manifest['config']
    given = spec.get('order', 'given') == 'given'
    model = seed_dann.DANN(config, dropout=MaskDropout if given else nn.Dropout)
    state = read_safetensors(spec.get('checkpoint') or f"{art}/{manifest['checkpoint']}")
    model.load_state_dict(state, strict=True)
    model.to(dtype)
    data = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in read_safetensors(spec['data']).items()}
    domain = bool(r['domain'])
    lam = float(r['lambda_domain'])
    bs, n_iter, val_steps = int(r['batch_size']), int(r['n_iter']), int(r['val_steps'])
    p_drop = float(config['dropout'])

    # fastai Learner.create_opt: the splitter's groups; no wd on norm params and biases; train_bn.
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    norm = {f'{m}.{leaf}' for m, mod in model.named_modules() if isinstance(mod, nn.BatchNorm2d) for leaf in ('weight', 'bias')}
    group_of = {n: next(i for i, p in enumerate(GROUP_PREFIXES) if n.startswith(p)) for n in names}
    do_wd = {n: not (n in norm or n.endswith('.bias')) for n in names}
    n_groups = len(GROUP_PREFIXES)
    opt_state = {}

    def freeze_to(n):
        for name in names:
            params[name].requires_grad_(group_of[name] >= n or name in norm)
        opt_state.clear()  # Learner.freeze_to -> opt.clear_state()

    def adam_step(hypers):
        with torch.no_grad():
            for name in names:
                p = params[name]
                if p.grad is None:
                    continue
                h = hypers[group_of[name]]
                lr, mom, sqr_mom, eps, wd = h['lr'], h['mom'], h['sqr_mom'], h['eps'], h['wd']
                if do_wd[name] and wd != 0:
                    p.mul_(1 - lr * wd)
                st = opt_state.setdefault(name, {'grad_avg': torch.zeros_like(p), 'sqr_avg': torch.zeros_like(p), 'step': 0})
                st['grad_avg'].mul_(mom).add_(p.grad, alpha=1 - mom)
                st['sqr_avg'].mul_(sqr_mom).addcmul_(p.grad, p.grad, value=1 - sqr_mom)
                st['step'] += 1
                debias1 = (1 - mom) * (1 - mom ** st['step']) / (1 - mom)
                debias2 = (1 - sqr_mom) * (1 - sqr_mom ** st['step']) / (1 - sqr_mom)
                p.addcdiv_(st['grad_avg'], (st['sqr_avg'] / debias2).sqrt() + eps, value=-lr / debias1)

    moms = r.get('moms', [0.95, 0.85, 0.95])
    hyper_const = {'wd': float(r.get('wd', 0.01)), 'sqr_mom': float(r.get('sqr_mom', 0.99)), 'eps': float(r.get('eps', 1e-5))}
    base_lr = float(r['base_lr'])
    phases = []
    if r['freeze_epochs'] > 0:
        lr_max = slice_lrs(None, base_lr, n_groups)
        phases.append(('frozen', int(r['freeze_epochs']), int(r.get('freeze_to', 1)), lr_max, 0.99, 25.0))
    base_lr /= 2
    phases.append(('unfrozen', int(r['epochs']), 0, slice_lrs(base_lr / float(r['lr_mult']), base_lr, n_groups), float(r.get('pct_start', 0.3)), float(r.get('div', 5.0))))
    total_steps = sum(ep for _, ep, *_ in phases) * n_iter

    mse = nn.MSELoss()
    bce = nn.BCEWithLogitsLoss()
    record = {'steps': [], 'epochs': []}
    gen = torch.Generator().manual_seed(int(spec.get('seed', 0)))
    n_source, n_target = data['source_images'].shape[0], data['target_images'].shape[0]

    def shuffled_stream(n):
        while True:
            yield from torch.randperm(n, generator=gen).tolist()

    def losses(reg_out, dom_out, labels, ns):
        n_all = dom_out.shape[0]
        reg = mse(reg_out[:ns], labels)
        dom_labels = torch.cat([torch.zeros(ns), torch.ones(n_all - ns)]).to(dtype)
        dom = bce(dom_out.squeeze(1), dom_labels)
        return reg, dom

    def validate():
        model.eval()
        loss_sum, correct, total = 0.0, 0, 0
        abs_err = torch.zeros(len(config['outputs']), dtype=torch.float64)
        sq_err = torch.zeros(len(config['outputs']), dtype=torch.float64)
        target_rows = 0
        with torch.no_grad():
            for b in range(val_steps):
                rows = slice(b * bs, (b + 1) * bs)
                xs, ys, xt = data['source_val_images'][rows], data['source_val_labels'][rows], data['target_val_images'][rows]
                reg_out, dom_out = model(torch.cat([xs, xt]), n_source=xs.shape[0])
                reg, dom = losses(reg_out, dom_out, ys, xs.shape[0])
                loss_sum += float(reg + lam * dom) * xs.shape[0]
                sq_err += ((reg_out[:xs.shape[0]] - ys) ** 2).sum(0).double()
                pred_domain = (dom_out.squeeze(1) > 0).long()
                correct += int((pred_domain == torch.cat([torch.zeros(xs.shape[0]), torch.ones(xt.shape[0])]).long()).sum())
                total += xs.shape[0] + xt.shape[0]
                if 'target_val_labels' in data:
                    abs_err += (reg_out[xs.shape[0]:] - data['target_val_labels'][rows]).abs().sum(0).double()
                    target_rows += xt.shape[0]
        m = {'valid_loss': loss_sum / (val_steps * bs), 'domain_accuracy': correct / total}
        for k, name in enumerate(config['outputs']):
            m[f'rmse_{name}'] = math.sqrt(float(sq_err[k]) / (val_steps * bs))
        if target_rows:
            for k, name in enumerate(config['outputs']):
                m[f'target_mae_{name}'] = float(abs_err[k]) / target_rows
        model.train()
        return m

    step = 0
    for name, n_epoch, freeze, lr_max, pct_start, div in phases:
        freeze_to(freeze)
        lr_scheds = [combined_cos(pct_start, lm / div, lm, lm / 1e5) for lm in lr_max]
        mom_sched = combined_cos(pct_start, *moms)
        pct_train = 0.0
        for epoch in range(n_epoch):
            pct_train = epoch / n_epoch  # TrainEvalCallback.before_train
            model.train()
            src_order = shuffled_stream(n_source)
            tgt_order = shuffled_stream(n_target)
            for _ in range(n_iter):
                hypers = [{'lr': f(pct_train), 'mom': mom_sched(pct_train), **hyper_const} for f in lr_scheds]
                progress = step / total_steps
                alpha = 2 / (1 + math.exp(-10 * progress)) - 1 if domain else 0.0
                model.grl.alpha = alpha
                if given:
                    si = data['order_source'][step].tolist()
                    ti = data['order_target'][step].tolist() if domain else []
                else:
                    si = [next(src_order) for _ in range(bs)]
                    ti = [next(tgt_order) for _ in range(bs)] if domain else []
                xs, ys = data['source_images'][si], data['source_labels'][si]
                x = torch.cat([xs, data['target_images'][ti]]) if domain else xs
                if given:
                    model.label_predictor.regressor[3].mask = torch.cat([data['mask_label'][step], torch.ones(len(ti), data['mask_label'].shape[2], dtype=dtype)])
                    model.domain_classifier.classifier[3].mask = data['mask_domain'][step][:x.shape[0]]
                reg_out, dom_out = model(x, n_source=len(si))
                reg, dom = losses(reg_out, dom_out, ys, len(si))
                loss = reg + (lam if domain else 0.0) * dom
                loss.backward()
                adam_step(hypers)
                for prm in model.parameters():
                    prm.grad = None if prm.grad is None else prm.grad.zero_()
                record['steps'].append({'loss': float(loss), 'regression_loss': float(reg), 'domain_loss': float(dom), 'alpha': alpha,
                                        'lrs': [h['lr'] for h in hypers], 'mom': hypers[0]['mom']})
                pct_train += 1.0 / (n_iter * n_epoch)  # TrainEvalCallback.after_batch
                step += 1
            record['epochs'].append(validate())
    state_out = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    write_safetensors(out_path, state_out)
    json.dump(record, sys.stdout)


if __name__ == '__main__':
    main()
