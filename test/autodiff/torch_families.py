"""Small models of the families users bring to `ort-dann grad`, exported by torch.onnx.export in
training mode with their loss, and PyTorch autograd's answer for every parameter gradient: in
float64 (the exact answer) and in float32 (how close float32 arithmetic gets, which sets the
tolerance). Usage: torch_families.py OUT_DIR CODEC.py NAME...
Writes OUT_DIR/NAME.onnx and OUT_DIR/NAME.safetensors (input:<x>, grad64:<p>, grad32:<p>, loss64)."""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

exec(open(sys.argv[2]).read())  # write_st (the tests' independent safetensors codec)
out_dir = sys.argv[1]
torch.set_num_threads(1)


def conv_bn(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


class Regress(nn.Module):
    """body → flatten → linear → MSE against y: every family ends in the same loss."""
    def __init__(self, body, features, outputs=3):
        super().__init__()
        self.body = body
        self.head = nn.Linear(features, outputs)

    def forward(self, x, y):
        return ((self.head(torch.flatten(self.body(x), 1)) - y) ** 2).mean()


def bn_channels():
    """BatchNorm layers of every width from 1 to 8 channels, one after another."""
    layers, c = [], 3
    for w in range(1, 9):
        layers.append(conv_bn(c, w))
        c = w
    return Regress(nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1)), 8), (2, 3, 8, 8)


def bn_repeat():
    """Identical layers (same width, PyTorch's default BN init, so byte-identical BN parameters)
    repeated: the case where an optimizer may merge equal constants."""
    body = nn.Sequential(conv_bn(3, 8), conv_bn(8, 8), conv_bn(8, 8), nn.MaxPool2d(2), conv_bn(8, 8), conv_bn(8, 8),
                         nn.AdaptiveAvgPool2d(1))
    return Regress(body, 8), (3, 3, 8, 8)


class BnMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))

    def forward(self, x, y):
        return ((self.net(x) - y) ** 2).mean()


def bn_mlp():
    return BnMlp(), (6, 5)


FAMILIES = {'bn_channels': bn_channels, 'bn_repeat': bn_repeat, 'bn_mlp': bn_mlp}


def loss_and_grads(model, inputs, dtype):
    m = model.to(dtype)
    m.zero_grad()
    loss = m(*[t.to(dtype) if t.is_floating_point() else t for t in inputs])
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in m.named_parameters()}


for name in sys.argv[3:]:
    torch.manual_seed(0)
    model, x_shape = FAMILIES[name]()
    model.train()
    x = torch.randn(*x_shape)
    y = torch.randn(x_shape[0], 3)
    inputs = [x, y]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.onnx.export(model, tuple(inputs), f'{out_dir}/{name}.onnx', opset_version=17, input_names=['x', 'y'],
                      output_names=['loss'], do_constant_folding=False, training=torch.onnx.TrainingMode.TRAINING)
    model.load_state_dict(state)  # the export's trace ran a training forward: restore the running statistics
    _, g32 = loss_and_grads(model, inputs, torch.float32)
    loss64, g64 = loss_and_grads(model, inputs, torch.float64)
    tensors = {'input:x': x, 'input:y': y, 'loss64': torch.tensor([loss64], dtype=torch.float64)}
    for n in g64:
        tensors[f'grad64:{n}'] = g64[n]
        tensors[f'grad32:{n}'] = g32[n]
    write_st(f'{out_dir}/{name}.safetensors', tensors)
