"""EnlightenGAN's losses (Jiang et al., TIP 2021, Sec. III; the authors' ``models/single_model.py``).

- least-squares GAN losses (``GANLoss(use_lsgan=True)``: the mean squared distance of the scores to 1 for
  "real", to 0 for "fake");
- the global discriminator is *relativistic* (Eq. 1-2): it scores a real image against the mean score of
  the fakes and vice versa;
- the local discriminator scores random patches with the plain LSGAN loss (Eq. 3-4);
- the self-feature-preserving loss (Eq. 5): the squared distance between the instance-normalised VGG16
  ``relu5_1`` features of the output and of the low-light input (on the whole image and on the patches).

Scores and features are turned into losses in float32.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

VGG_RELU5_1 = 25  # index of relu5_1 in torchvision's vgg16().features


def ls_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """LSGAN: ``mean((scores - 1)^2)`` for the "real" target, ``mean(scores^2)`` for "fake"."""
    s = scores.float()
    return (s - 1.0).pow(2).mean() if real else s.pow(2).mean()


def relativistic_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Global D (Eq. 1): real images above the mean fake score, fakes below the mean real score."""
    r, f = real_scores.float(), fake_scores.float()
    return 0.5 * (ls_loss(r - f.mean(), True) + ls_loss(f - r.mean(), False))


def relativistic_g_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Global G (Eq. 2): the targets swapped."""
    r, f = real_scores.float(), fake_scores.float()
    return 0.5 * (ls_loss(r - f.mean(), False) + ls_loss(f - r.mean(), True))


class VGGRelu51(nn.Module):
    """VGG16 (ImageNet) up to ``relu5_1``, frozen: images ``(B, 3, H, W)`` in [0, 1] -> ``(B, 512, H/16, W/16)``.

    The stack and the weights are the suite's LPIPS backbone (``backbone/vgg16-features``: torchvision's
    ``vgg16-397923af.pth``, checksummed), with ImageNet normalisation. The authors used a Caffe-converted
    VGG16 (BGR, mean-subtracted 0-255 input); same architecture and layer, other training of the weights.
    """

    def __init__(self) -> None:
        super().__init__()
        from cals_bench.metrics.lpips import LAYOUTS, LpipsBackbone

        layout = dataclasses.replace(LAYOUTS["vgg"], taps=(VGG_RELU5_1,), channels=(512,))
        self.backbone = LpipsBackbone(layout)
        self.weights_used: dict[str, str] = {}
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_registry(cls) -> VGGRelu51:
        from cals_bench import weights

        with torch.random.fork_rng(devices=[]):  # building it must not move the training's random stream
            net = cls()
        state, resolved = weights.load_torch("backbone/vgg16-features")
        keep = {k: v for k, v in state.items() if int(k.split(".")[1]) < VGG_RELU5_1}
        net.backbone.load_state_dict(keep, strict=True)
        net.weights_used[resolved.spec.name] = resolved.sha256
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from cals_bench.metrics.lpips import scale_input

        return self.backbone(scale_input(x))[0]


def self_feature_preserving_loss(vgg: nn.Module, output: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """``mean((IN(vgg(output)) - IN(vgg(low)))^2)``, IN = instance normalisation (no affine, eps 1e-5);
    the input's features carry no gradient."""
    with torch.no_grad():
        target = F.instance_norm(vgg(low).float())
    return (F.instance_norm(vgg(output).float()) - target).pow(2).mean()
