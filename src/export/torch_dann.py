"""The seed's DANN module in eval mode, in PyTorch, for checking and timing the exported model.

Built from the artifacts' manifest config and loaded with strict=True from a state_dict safetensors
(our checkpoint format), so a mismatch in any name or shape fails loudly. A model trained with
per-domain BatchNorm statistics runs every row with the target statistics, as `ort-dann export`
deploys it (its default deploy domain).

  torch_dann.py forward ARTIFACTS CHECKPOINT INPUTS OUT CODEC
      INPUTS holds `images`; OUT gets prediction, features (flattened) and domain_logit, computed in
      float64 (the exact answer) and in float32 (`<name>@torch32`).
  torch_dann.py export ARTIFACTS CHECKPOINT OUT_ONNX CODEC
      torch.onnx.export of the label path (images -> prediction), opset 17, eval mode, dynamic batch:
      the same network as `ort-dann export` without --with-domain.

CODEC is a Python file defining read_st / write_st (a safetensors codec independent of ours).
"""
import inspect
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools' / 'reference'))
import seed_dann  # noqa: E402

mode, art, checkpoint = sys.argv[1], sys.argv[2], sys.argv[3]
exec(open(sys.argv[-1]).read())  # CODEC, always the last argument
config = json.load(open(f'{art}/manifest.json'))['config']
torch.set_num_threads(2)


class LabelPath(nn.Module):
    """images -> prediction only, as a deployment runs it."""
    def __init__(self, dann):
        super().__init__()
        self.dann = dann

    def forward(self, x):
        return self.dann.label_predictor(self.dann.feature_extractor(x))


def load(dtype):
    model = seed_dann.DANN(config)
    state, _, _ = read_st(checkpoint)
    model.load_state_dict(state, strict=True)
    return model.to(dtype).eval()


if mode == 'forward':
    images = read_st(sys.argv[4])[0]['images']
    out = {}
    for dtype, suffix in [(torch.float64, ''), (torch.float32, '@torch32')]:
        with torch.no_grad():
            model = load(dtype)
            features = model.feature_extractor(images.to(dtype))
            prediction, domain_logit = model.label_predictor(features), model.domain_classifier(features)
            features = torch.flatten(features, 1)
        for name, t in [('prediction', prediction), ('domain_logit', domain_logit), ('features', features)]:
            out[name + suffix] = t.float().contiguous()
    write_st(sys.argv[5], out)
elif mode == 'export':
    example = torch.zeros(2, 3, config['imageSize'], config['imageSize'])
    # The TorchScript exporter, the one that folds BatchNorm in eval mode; torch >= 2.9 defaults to dynamo.
    extra = {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(LabelPath(load(torch.float32)), example, sys.argv[4], opset_version=17, training=torch.onnx.TrainingMode.EVAL,
                      do_constant_folding=True, input_names=['images'], output_names=['prediction'],
                      dynamic_axes={'images': {0: 'N'}, 'prediction': {0: 'N'}}, **extra)
else:
    sys.exit(f'unknown mode {mode}; use forward or export')
