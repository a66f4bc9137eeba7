"""Small models of the families users bring to `ort-dann grad`, exported by torch.onnx.export in
training mode with their loss, and PyTorch autograd's answer for every parameter gradient: in
float64 (the exact answer) and in float32 (how close float32 arithmetic gets, which sets the
tolerance). Usage: torch_families.py OUT_DIR CODEC.py NAME...
Writes OUT_DIR/NAME.onnx and OUT_DIR/NAME.safetensors (input:<x>, grad64:<p>, grad32:<p>, loss64, loss32)."""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

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


class Mse(nn.Module):
    """A torchvision classifier with `num_classes` outputs, trained against y with MSE."""
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y):
        return ((self.model(x) - y) ** 2).mean()


def grouped():
    """Grouped (2 and 4 groups) and depthwise convolutions, with a channel multiplier and a stride."""
    body = nn.Sequential(conv_bn(3, 8), conv_bn(8, 8, stride=2, groups=2), conv_bn(8, 16, groups=8), conv_bn(16, 8, k=1, groups=4),
                         conv_bn(8, 8, k=5, groups=8, stride=2), nn.AdaptiveAvgPool2d(1))
    return Regress(body, 8), (3, 3, 12, 12)


class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.ModuleList([nn.Conv2d(3 if i == 0 else 6, 6, 3, 1, 1) for i in range(6)])
        self.head = nn.Linear(6, 3)

    def forward(self, x, y):
        x = F.hardswish(self.c[0](x))
        x = F.silu(self.c[1](x))
        x = F.gelu(self.c[2](x))
        x = F.gelu(self.c[3](x), approximate='tanh')
        x = x * F.hardsigmoid(self.c[4](x))
        x = torch.softmax(self.c[5](x), dim=1) * x
        return ((self.head(x.mean((2, 3))) - y) ** 2).mean()


def activations():
    """Hard-swish, SiLU, GELU (Erf and tanh forms), hard-sigmoid gating, Softmax over channels."""
    return Activations(), (3, 3, 6, 6)


class Tokens(nn.Module):
    """LayerNorm, Linear on 3-D tokens (MatMul), GELU, a residual, and a mean over tokens."""
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 8)
        self.norm2 = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x, y):
        x = x + self.fc2(F.gelu(self.fc1(self.norm1(x))))
        return ((self.head(self.norm2(x).mean(1)) - y) ** 2).mean()


def layernorm():
    return Tokens(), (3, 5, 8)


class Inception(nn.Module):
    """Inception-style branches joined by Concat, average pools with and without padding counted."""
    def __init__(self):
        super().__init__()
        self.b1 = conv_bn(4, 3, k=1)
        self.b3 = nn.Sequential(conv_bn(4, 2, k=1), conv_bn(2, 3, k=3))
        self.b5 = nn.Sequential(conv_bn(4, 2, k=1), conv_bn(2, 2, k=5))
        self.pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), conv_bn(4, 2, k=1))
        self.mpool = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(4, 2, k=1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x), self.mpool(x)], 1)


def concat():
    body = nn.Sequential(conv_bn(3, 4), Inception(), nn.MaxPool2d(3, 2, ceil_mode=True), conv_bn(12, 4, k=1), Inception(), nn.AdaptiveAvgPool2d(1))
    return Regress(body, 12), (2, 3, 10, 10)


def pooling():
    """Ceil-mode max and average pooling (padding counted and not), adaptive pooling that exports as AveragePool and GlobalMaxPool."""
    body = nn.Sequential(conv_bn(3, 4), nn.MaxPool2d(3, 2, ceil_mode=True), nn.AvgPool2d(3, 2, 1, ceil_mode=True), conv_bn(4, 4),
                         nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False), conv_bn(4, 4, k=1), nn.AdaptiveAvgPool2d(2), conv_bn(4, 4, k=1),
                         nn.AdaptiveMaxPool2d(1))
    return Regress(body, 4), (3, 3, 24, 24)


def vgg():
    body = nn.Sequential(conv_bn(3, 4), nn.MaxPool2d(2), conv_bn(4, 8), conv_bn(8, 8), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 16), nn.ReLU(), nn.Dropout(0.0))
    return Regress(body, 16), (2, 3, 16, 16)


def mobilenet_v2():
    return Mse(torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=3, dropout=0.0)), (8, 3, 32, 32)


def mobilenet_v3():
    return Mse(torchvision.models.mobilenet_v3_small(width_mult=0.25, num_classes=3, dropout=0.0)), (4, 3, 32, 32)


def efficientnet():
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig
    setting = [MBConvConfig(1, 3, 1, 8, 8, 1), MBConvConfig(4, 3, 2, 8, 16, 2), MBConvConfig(4, 5, 2, 16, 16, 1)]
    return Mse(EfficientNet(setting, dropout=0.0, stochastic_depth_prob=0.0, num_classes=3, last_channel=32)), (2, 3, 16, 16)


def regnet():
    from torchvision.models.regnet import BlockParams, RegNet
    params = BlockParams.from_init_params(depth=2, w_0=8, w_a=8.0, w_m=2.0, group_width=4, se_ratio=0.25)
    return Mse(RegNet(params, num_classes=3, stem_width=8)), (2, 3, 16, 16)


def convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    setting = [CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)]
    return Mse(ConvNeXt(setting, stochastic_depth_prob=0.0, layer_scale=0.5, num_classes=3)), (2, 3, 16, 16)


def shufflenet():
    return Mse(torchvision.models.ShuffleNetV2([1, 1, 1], [8, 8, 16, 32, 32], num_classes=3)), (2, 3, 32, 32)


def vit():
    from torchvision.models.vision_transformer import VisionTransformer
    return Mse(VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3)), (2, 3, 16, 16)


FAMILIES = {
    'bn_channels': bn_channels, 'bn_repeat': bn_repeat, 'bn_mlp': bn_mlp, 'grouped': grouped, 'activations': activations,
    'layernorm': layernorm, 'concat': concat, 'pooling': pooling, 'vgg': vgg, 'mobilenet_v2': mobilenet_v2, 'mobilenet_v3': mobilenet_v3,
    'efficientnet': efficientnet, 'regnet': regnet, 'convnext': convnext, 'shufflenet': shufflenet, 'vit': vit,
}
# Opset 16 has no LayerNormalization: torch exports its decomposed form. Opset 14 is torch 1.13's
# default, below the scatter-add the MaxPool gradient needs.
OPSET = {'layernorm_decomposed': 16, 'concat_opset14': 14}
FAMILIES['layernorm_decomposed'] = layernorm
FAMILIES['concat_opset14'] = concat


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
    torch.onnx.export(model, tuple(inputs), f'{out_dir}/{name}.onnx', opset_version=OPSET.get(name, 17), input_names=['x', 'y'],
                      output_names=['loss'], do_constant_folding=False, training=torch.onnx.TrainingMode.TRAINING)
    model.load_state_dict(state)  # the export's trace ran a training forward: restore the running statistics
    loss32, g32 = loss_and_grads(model, inputs, torch.float32)
    loss64, g64 = loss_and_grads(model, inputs, torch.float64)
    tensors = {'input:x': x, 'input:y': y, 'loss64': torch.tensor([loss64], dtype=torch.float64), 'loss32': torch.tensor([loss32], dtype=torch.float64)}
    for n in g64:
        tensors[f'grad64:{n}'] = g64[n]
        tensors[f'grad32:{n}'] = g32[n]
    write_st(f'{out_dir}/{name}.safetensors', tensors)
