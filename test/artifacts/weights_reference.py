"""Writes a torchvision ResNet state dict as torch.save's .pth and as .safetensors, then (second call)
runs the seed's DANN with that backbone in eval mode on given images, for the weights-import test.
  weights_reference.py save BACKBONE OUT_DIR CODEC
  weights_reference.py eval ARTIFACTS CHECKPOINT PTH IMAGES OUT CODEC
The eval model takes its backbone from the .pth through torchvision itself (not through our key
mapping) and only the extra block and heads from our checkpoint, so a mis-mapped tensor shows."""
import json
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools' / 'reference'))
import seed_dann  # noqa: E402

exec(open(sys.argv[-1]).read())  # read_st / write_st
torch.manual_seed(0)
if sys.argv[1] == 'save':
    body = getattr(torchvision.models, sys.argv[2])()
    # Non-trivial BatchNorm statistics, so a wrongly mapped buffer shows in the outputs.
    for m in body.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    state = body.state_dict()
    torch.save(state, f'{sys.argv[3]}/resnet.pth')
    write_st(f'{sys.argv[3]}/resnet.safetensors', {k: v.contiguous() for k, v in state.items()})
else:
    art, checkpoint, pth, images_path, out = sys.argv[2:7]
    config = json.load(open(f'{art}/manifest.json'))['config']
    body = getattr(torchvision.models, config['backbone'])()
    body.load_state_dict(torch.load(pth), strict=True)
    model = seed_dann.DANN(config, body=body)
    state, _, _ = read_st(checkpoint)
    rest = {k: v for k, v in state.items() if not k.startswith('feature_extractor.resnet_layers.')}
    missing, unexpected = model.load_state_dict(rest, strict=False)
    assert not unexpected and all(k.startswith('feature_extractor.resnet_layers.') for k in missing), (missing, unexpected)
    model.eval()
    with torch.no_grad():
        prediction, domain = model(read_st(images_path)[0]['images'])
    write_st(out, {'prediction': prediction.contiguous(), 'domain_logit': domain.contiguous()})
