"""PyTorch reference for the artifacts parity test: the seed's DANN module (torchvision ResNet body,
extra block, heads, GRL, DANNLoss), loaded strictly from our checkpoint, run on the same batch,
dropout masks, alpha and lambda; then one fastai Adam step written out from its definition. With
per-domain BatchNorm statistics (seed_dann.DomainBatchNorm2d) the batch's first n_source rows are the
source domain, and after the step the module is also run in eval mode (`eval_<output>`) on the same
images with the statistics that step left, source rows reading the source ones and target rows the target ones.
The module runs in float64 (the exact answer) and in float32 (`<name>@torch32`: how close float32
arithmetic gets on each tensor; PyTorch's own float32 stem gradient is 2e-3 away in max-norm).
Usage: dann_reference.py ARTIFACTS_DIR INPUTS.safetensors OUT.safetensors"""
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools' / 'reference'))
import seed_dann  # noqa: E402

exec(open(sys.argv[4]).read())  # read_st / write_st (an independent safetensors codec, shared with other tests)

art, inputs_path, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
manifest = json.load(open(f'{art}/manifest.json'))
config = manifest['config']
torch.set_num_threads(2)


class MaskDropout(nn.Module):
    """nn.Dropout(p) with the keep-mask supplied from outside (1 = keep, kept values scaled 1/(1-p)); identity in eval."""
    def __init__(self, p):
        super().__init__()
        self.p = p
        self.mask = None

    def forward(self, x):
        return x * self.mask / (1 - self.p) if self.training else x


state, _, _ = read_st(f'{art}/checkpoint.safetensors')
raw_inputs, _, _ = read_st(inputs_path)
ns = int(raw_inputs['n_source'].item())


def train_step(dtype):
    """One forward/backward of the seed's module in `dtype`: losses, parameter grads, running stats."""
    model = seed_dann.DANN(config, dropout=MaskDropout)
    model.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True)
    model.to(dtype)
    inp = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in raw_inputs.items()}
    # The label mask covers the source rows; target rows' predictions never reach a loss.
    n_all = inp['images'].shape[0]
    model.label_predictor.regressor[3].mask = torch.cat([inp['label_dropout_mask'], torch.ones(n_all - ns, 256, dtype=dtype)])
    model.domain_classifier.classifier[3].mask = inp['domain_dropout_mask']
    model.grl.alpha = float(inp['alpha'].item())
    lam = float(inp['lambda_domain'].item())
    model.train()
    reg_out, dom_out = model(inp['images'], n_source=ns)
    domain_labels = torch.cat([torch.zeros(ns), torch.ones(n_all - ns)]).to(dtype)
    if config['task'] == 'regression':
        regression_loss = nn.MSELoss()(reg_out[:ns], inp['labels'])
    else:
        regression_loss = nn.CrossEntropyLoss()(reg_out[:ns], inp['labels'].long())
    domain_loss = nn.BCEWithLogitsLoss()(dom_out.squeeze(), domain_labels)
    loss = regression_loss + lam * domain_loss
    loss.backward()
    out = {'loss': loss, 'regression_loss': regression_loss, 'domain_loss': domain_loss}
    for name, prm in model.named_parameters():
        out[f'{name}_grad'] = prm.grad
    for name, buf in model.state_dict().items():
        if name.endswith('running_mean') or name.endswith('running_var'):
            out[f'{name}.updated'] = buf
    if model.domain_bns:
        model.eval()
        with torch.no_grad():
            out['eval_prediction'], out['eval_domain_logit'] = model(inp['images'], n_source=ns)
    return {k: v.detach().reshape(v.shape).float() for k, v in out.items()}


# float64 is the exact answer; PyTorch's own float32 run shows how well float32 can do on each tensor.
exact = train_step(torch.float64)
out = dict(exact)
out.update({f'{k}@torch32': v for k, v in train_step(torch.float32).items()})
inp = {k: (v.double() if v.is_floating_point() else v) for k, v in raw_inputs.items()}

# One fastai Adam step (fastai/optimizer.py: weight_decay, average_grad(dampening), average_sqr_grad,
# step_stat, adam_step) from prior state given in the inputs, for every parameter.
lr, mom, sqr_mom, eps, wd = (float(inp[k].item()) for k in ['adam_lr', 'adam_mom', 'adam_sqr_mom', 'adam_eps', 'adam_wd'])
step = float(inp['adam_step'].item())
for spec in manifest['parameters']:
    name = spec['name']
    if f'{name}.exp_avg' not in inp:
        continue
    prm = state[name].double()
    g = exact[f'{name}_grad'].double()  # the float32 gradient the optimizer test feeds
    m = inp[f'{name}.exp_avg'].double()
    v = inp[f'{name}.exp_avg_sq'].double()
    if spec['decay'] and wd != 0:
        prm = prm * (1 - lr * wd)
    m = mom * m + (1 - mom) * g
    v = sqr_mom * v + (1 - sqr_mom) * g * g
    debias1 = 1 - mom ** step
    debias2 = 1 - sqr_mom ** step
    prm = prm - lr / debias1 * m / ((v / debias2).sqrt() + eps)
    out[f'{name}.adam'] = prm.float()
    out[f'{name}.exp_avg.adam'] = m.float()
    out[f'{name}.exp_avg_sq.adam'] = v.float()
write_st(out_path, out)
