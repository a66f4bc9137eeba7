"""The seed's DANN in PyTorch: GradientReversalLayer, FeatureExtractor (ResNet body without avgpool/fc,
then AvgPool2d(2) -> Conv2d(512,512,4,2,1) -> BatchNorm2d -> ReLU), LabelPredictor, DomainClassifier.
The one reference module that the parity tests, the export checks and the bench's PyTorch peer build;
state_dict keys are the seed's (feature_extractor.resnet_layers.0.weight, ...).

`config` is the artifacts manifest's model config (backbone, featureDim, outputs, dropout,
batchNormStats). With `batchNormStats: 'per-domain'` every BatchNorm2d becomes DomainBatchNorm2d (below)
and forward takes `n_source`; otherwise (absent or 'combined') the module is the seed's, unchanged.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class GradientReversalFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.alpha * grad_output, None


class GradientReversalLayer(nn.Module):
    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return GradientReversalFunction.apply(x, self.alpha)


def torchvision_body(backbone):
    import torchvision
    return getattr(torchvision.models, backbone)()


# Channels of the body's last feature map: the extra block keeps them.
CHANNELS = {'resnet18': 512, 'resnet34': 512, 'mobilenet_v3_small': 576, 'vgg11_bn': 512}


class DomainBatchNorm2d(nn.BatchNorm2d):
    """Per-domain BatchNorm statistics (AdaBN / domain-specific BN, Chang et al. CVPR 2019), written from
    that definition: weight and bias shared by both domains; source running statistics under PyTorch's
    names and target ones in `target_running_mean` / `target_running_var` (registered after
    num_batches_tracked, so the state_dict order is ours).

    Train: rows [0, n_source) are normalised with their own batch statistics and update the source
    running statistics, rows [n_source, N) likewise with the target ones (PyTorch's momentum update,
    unbiased variance); a batch without target rows copies the updated source statistics into the
    target ones, so a source-only run keeps them equal. Eval with n_source: source rows read the source
    statistics, target rows the target ones. Eval without n_source: every row reads `deploy`'s.
    """
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.register_buffer('target_running_mean', torch.zeros(num_features))
        self.register_buffer('target_running_var', torch.ones(num_features))
        self.n_source = None
        self.deploy = 'target'

    def stats(self, domain):
        return (self.running_mean, self.running_var) if domain == 'source' else (self.target_running_mean, self.target_running_var)

    def normalise(self, x, domain):
        mean, var = self.stats(domain)
        return F.batch_norm(x, mean, var, self.weight, self.bias, self.training, self.momentum, self.eps)

    def forward(self, x):
        ns = self.n_source
        if ns is None:
            if self.training:
                raise RuntimeError('per-domain BatchNorm in training needs n_source')
            return self.normalise(x, self.deploy)
        if self.training:
            self.num_batches_tracked.add_(1)
        parts = [self.normalise(x[:ns], 'source')] if ns > 0 else []
        if x.shape[0] > ns:
            parts.append(self.normalise(x[ns:], 'target'))
        elif self.training:
            with torch.no_grad():
                self.target_running_mean.copy_(self.running_mean)
                self.target_running_var.copy_(self.running_var)
        return torch.cat(parts) if len(parts) > 1 else parts[0]


def per_domain_batchnorm(module):
    """Replaces every nn.BatchNorm2d under `module` by a DomainBatchNorm2d holding its parameters and
    statistics, the target statistics starting as the source ones (as our artifacts start them)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            bn = DomainBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            with torch.no_grad():
                for key in ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'):
                    getattr(bn, key).copy_(getattr(child, key))
                bn.target_running_mean.copy_(child.running_mean)
                bn.target_running_var.copy_(child.running_var)
            module._modules[name] = bn
        else:
            per_domain_batchnorm(child)


class FeatureExtractor(nn.Module):
    def __init__(self, body, channels=512):
        super().__init__()
        self.resnet_layers = nn.Sequential(*list(body.children())[:-2])
        c = channels
        self.additional_layers = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c, c, 4, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, x):
        return self.additional_layers(self.resnet_layers(x))


class LabelPredictor(nn.Module):
    def __init__(self, features, outputs, dropout):
        super().__init__()
        self.regressor = nn.Sequential(nn.Flatten(), nn.Linear(features, 256), nn.ReLU(), dropout, nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, outputs))

    def forward(self, x):
        return self.regressor(x)


class DomainClassifier(nn.Module):
    def __init__(self, features, dropout):
        super().__init__()
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(features, 256), nn.ReLU(), dropout, nn.Linear(256, 1))

    def forward(self, x):
        return self.classifier(x)


class DANN(nn.Module):
    """`dropout(p)` makes each head's dropout module (nn.Dropout by default; tests pass one with a fixed mask);
    `body` is the ResNet to cut (torchvision's of config['backbone'] by default). Per-domain BatchNorm:
    `deploy` names the statistics eval reads when forward gets no n_source (the exported model's)."""
    def __init__(self, config, dropout=nn.Dropout, body=None, deploy='target'):
        super().__init__()
        features, p = config['featureDim'], config['dropout']
        self.feature_extractor = FeatureExtractor(body if body is not None else torchvision_body(config['backbone']), CHANNELS[config['backbone']])
        self.label_predictor = LabelPredictor(features, len(config['outputs']), dropout(p))
        self.domain_classifier = DomainClassifier(features, dropout(p))
        self.grl = GradientReversalLayer()
        self.domain_bns = []
        if config.get('batchNormStats', 'combined') == 'per-domain':
            per_domain_batchnorm(self.feature_extractor)
            self.domain_bns = [m for m in self.modules() if isinstance(m, DomainBatchNorm2d)]
            for m in self.domain_bns:
                m.deploy = deploy

    def forward(self, x, n_source=None):
        """n_source: the leading source rows of x (per-domain BatchNorm; ignored by the seed's)."""
        for m in self.domain_bns:
            m.n_source = n_source
        features = self.feature_extractor(x)
        return self.label_predictor(features), self.domain_classifier(self.grl(features))
