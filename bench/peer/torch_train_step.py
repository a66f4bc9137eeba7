"""The PyTorch peer of `npm run bench -- train-step`: the seed's DANN train step, timed.

The module is the seed's (tools/reference/seed_dann.py): torchvision ResNet body without
avgpool/fc, AvgPool2d(2) → Conv2d(512,512,4,2,1) → BN → ReLU, a label head (with Dropout 0.3) and a
domain head behind a gradient reversal layer; loss MSE(source rows) + lambda·BCE-with-logits(all
rows); model.train(); AdamW with fastai's hyper-parameters (betas 0.95/0.99, eps 1e-5, decoupled
wd 0.01, none on BatchNorm and bias parameters). Alpha follows the DANN schedule over the steps run.

Protocol (what bench/train-step.ts reads): stdout lines starting with '@bench ' carry JSON — an
event 'first_step' once the first step has finished, then 'result'. Everything else is diagnostics.
Usage: torch_train_step.py --image-size 128 --batch 16+16 --steps 5 --warmup 2 --threads 2
       [--device cpu|cuda] [--backbone resnet34] [--outputs 3] [--lambda-domain 0.1] [--lr 1e-4]
"""
import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools' / 'reference'))
import seed_dann  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--image-size', type=int, required=True)
ap.add_argument('--batch', required=True, help='source+target, e.g. 16+16')
ap.add_argument('--steps', type=int, default=5)
ap.add_argument('--warmup', type=int, default=2)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--device', default='cpu')
ap.add_argument('--backbone', default='resnet34', choices=['resnet18', 'resnet34'])
ap.add_argument('--outputs', type=int, default=3)
ap.add_argument('--lambda-domain', type=float, default=0.1)
ap.add_argument('--lr', type=float, default=1e-4)
ap.add_argument('--dropout', type=float, default=0.3)
args = ap.parse_args()


def emit(obj):
    print('@bench ' + json.dumps(obj), flush=True)


# Debian's torch defaults to 1 thread on this machine; pin it to the count our side gets.
torch.set_num_threads(args.threads)
torch.manual_seed(0)
device = torch.device(args.device)

try:
    import torchvision

    def resnet_body():
        return getattr(torchvision.models, args.backbone)()
except ImportError:
    # GPU machines may carry CUDA torch without torchvision: the same torchvision ResNet, written out.
    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(y + (x if self.downsample is None else self.downsample(x)))

    def resnet_body():
        blocks = {'resnet18': [2, 2, 2, 2], 'resnet34': [3, 4, 6, 3]}[args.backbone]
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for stage, (n, cout) in enumerate(zip(blocks, [64, 128, 256, 512])):
            stage_blocks = []
            for b in range(n):
                stage_blocks.append(BasicBlock(cin, cout, 2 if b == 0 and stage > 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*stage_blocks))
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Linear(512, 1000))


def feature_dim():
    with torch.no_grad():
        return seed_dann.FeatureExtractor(resnet_body()).eval()(torch.zeros(1, 3, args.image_size, args.image_size)).numel()


config = {'backbone': args.backbone, 'featureDim': feature_dim(), 'outputs': [f'output_{k}' for k in range(args.outputs)], 'dropout': args.dropout}


ns, nt = (int(v) for v in args.batch.split('+'))
n = ns + nt
model = seed_dann.DANN(config, body=resnet_body()).to(device)
model.train()
decay = [p for p in model.parameters() if p.ndim > 1]
no_decay = [p for p in model.parameters() if p.ndim <= 1]  # BatchNorm weights/biases and biases
opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.01}, {'params': no_decay, 'weight_decay': 0.0}],
                        lr=args.lr, betas=(0.95, 0.99), eps=1e-5)

x = torch.randn(n, 3, args.image_size, args.image_size, device=device)
y = torch.randn(ns, args.outputs, device=device)
domain_labels = torch.cat([torch.zeros(ns), torch.ones(nt)]).to(device)


def sync():
    if device.type == 'cuda':
        torch.cuda.synchronize()


def machine_busy_s():
    """Busy CPU seconds of the whole machine since boot (/proc/stat), None off Linux."""
    try:
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100
    except OSError:
        return None


total = args.warmup + args.steps
window = None
train_s, optimizer_s, step_s, step_cpu_s = [], [], [], []
for k in range(total):
    if k == args.warmup:
        window = (machine_busy_s(), time.process_time(), time.perf_counter())
    t0 = time.perf_counter()
    c0 = time.process_time()  # CPU seconds of all this process's threads: little affected by other work's load
    model.grl.alpha = 2 / (1 + math.exp(-10 * k / total)) - 1
    opt.zero_grad(set_to_none=True)
    reg_out, dom_out = model(x)
    loss = F.mse_loss(reg_out[:ns], y) + args.lambda_domain * F.binary_cross_entropy_with_logits(dom_out.squeeze(1), domain_labels)
    loss.backward()
    loss.item()  # the seed logs the loss every step; this also waits for the backward on a GPU
    t1 = time.perf_counter()
    opt.step()
    sync()
    t2 = time.perf_counter()
    c2 = time.process_time()
    if k == 0:
        emit({'event': 'first_step'})
    if k >= args.warmup:
        train_s.append(t1 - t0)
        optimizer_s.append(t2 - t1)
        step_s.append(t2 - t0)
        step_cpu_s.append(c2 - c0)

# Cores other processes used while the steps were timed (same measure as bench/lib/busy.ts).
busy_end = machine_busy_s()
other_cores = None
if window and window[0] is not None and busy_end is not None:
    other_cores = max(0.0, busy_end - window[0] - (time.process_time() - window[1])) / (time.perf_counter() - window[2])
result = {
    'event': 'result',
    'other_cores': other_cores,
    'step_s': step_s, 'train_s': train_s, 'optimizer_s': optimizer_s, 'step_cpu_s': step_cpu_s,
    'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    'threads': torch.get_num_threads(),
    'runtime': f'torch {torch.__version__} {device.type}',
}
if device.type == 'cuda':
    result['gpu_peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
    result['runtime'] += f' ({torch.cuda.get_device_name()})'
emit(result)
