"""Exports small CNN/MLP models with their loss via torch.onnx.export (opset 17) and writes PyTorch
autograd gradients of every parameter as JSON, for the `ort-dann grad` parity test."""
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
out_dir = sys.argv[1]


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.down(x))


class Cnn(nn.Module):
    """A ResNet-shaped net: 7x7/2 stem, BN, ReLU, 3x3/2 max-pool, a strided residual block, avg-pool, heads."""
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.block = Block(8, 16, 2)
        self.avg = nn.AvgPool2d(2)
        self.extra = nn.Conv2d(16, 16, 4, 2, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
        self.domain = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))

    def forward(self, x, y, d):
        f = self.extra(self.avg(self.block(self.pool(F.relu(self.bn(self.stem(x)))))))
        reg = ((self.head(f) - y) ** 2).mean()
        dom = F.binary_cross_entropy_with_logits(self.domain(f).squeeze(1), d)
        return reg + 0.1 * dom


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(6, 16)
        self.l2 = nn.Linear(16, 4)

    def forward(self, x, y):
        h = torch.sigmoid(self.l1(x)) * torch.tanh(self.l1(x))
        return F.cross_entropy(self.l2(h), y)


def run(name, model, inputs, input_names, mode):
    params = dict(model.named_parameters())
    model.train(mode == 'train')
    torch.onnx.export(model, tuple(inputs), f'{out_dir}/{name}.onnx', opset_version=17,
                      input_names=input_names, output_names=['loss'], do_constant_folding=False,
                      training=torch.onnx.TrainingMode.TRAINING if mode == 'train' else torch.onnx.TrainingMode.EVAL,
                      dynamic_axes={input_names[0]: {0: 'N'}})
    model.zero_grad()
    loss = model(*inputs)
    loss.backward()
    json.dump({
        'loss': loss.item(),
        'inputs': {n: {'dims': list(t.shape), 'dtype': str(t.dtype), 'data': t.flatten().tolist()} for n, t in zip(input_names, inputs)},
        'grads': {n: p.grad.flatten().tolist() for n, p in params.items()},
    }, open(f'{out_dir}/{name}.json', 'w'))


cnn = Cnn()
for m in cnn.modules():
    if isinstance(m, nn.BatchNorm2d):
        nn.init.uniform_(m.weight, 0.5, 1.5)
        nn.init.uniform_(m.bias, -0.2, 0.2)
x = torch.randn(4, 3, 32, 32)
run('cnn', cnn, [x, torch.randn(4, 3), torch.tensor([0., 0., 1., 1.])], ['x', 'y', 'd'], 'train')
run('mlp', Mlp(), [torch.randn(5, 6), torch.tensor([0, 3, 1, 2, 3])], ['x', 'y'], 'eval')
