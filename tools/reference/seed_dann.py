"""The seed's DANN in PyTorch: GradientReversalLayer, FeatureExtractor (ResNet body without avgpool/fc,
then AvgPool2d(2) -> Conv2d(512,512,4,2,1) -> BatchNorm2d -> ReLU), LabelPredictor, DomainClassifier.
The one reference module that the parity tests, the export checks and the bench's PyTorch peer build;
state_dict keys are the seed's (feature_extractor.resnet_layers.0.weight, ...).

`config` is the artifacts manifest's model config (backbone, featureDim, outputs, dropout).
"""
import torch
import torch.nn as nn


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
    `body` is the ResNet to cut (torchvision's of config['backbone'] by default)."""
    def __init__(self, config, dropout=nn.Dropout, body=None):
        super().__init__()
        features, p = config['featureDim'], config['dropout']
        self.feature_extractor = FeatureExtractor(body if body is not None else torchvision_body(config['backbone']), CHANNELS[config['backbone']])
        self.label_predictor = LabelPredictor(features, len(config['outputs']), dropout(p))
        self.domain_classifier = DomainClassifier(features, dropout(p))
        self.grl = GradientReversalLayer()

    def forward(self, x):
        features = self.feature_extractor(x)
        return self.label_predictor(features), self.domain_classifier(self.grl(features))
