"""SGZ: Semantic-Guided Zero-shot low-light enhancement (Zheng & Gupta, WACV 2022).

At test time SGZ is a Zero-DCE++ curve estimator (same layers, same state-dict keys, scale factor 12); the
semantic segmentation branch only shapes the training loss. Images: float32 RGB ``(B, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from cals_bench.baselines.zero_dce import ZeroDCEPlusPlusNet
from cals_bench.enhancer import Enhancer, register_enhancer
from cals_bench.padding import pad_to_multiple
from cals_bench.published import Published
from cals_bench.weights import WeightSpec, register

# The weight file (``cals-bench weights list``), from the authors' repository at a pinned commit.
WEIGHTS = register(
    WeightSpec.on_github(
        "llie/sgz",
        "llie/sgz/Epoch99.pth",
        "54d87f6f3a2b5ee495abec7e714afcdf60eaa8d15370dd500792cd4f45f442f1",
        52303,
        repo="ShenZheng2000/Semantic-Guided-Low-Light-Image-Enhancement",
        commit="94dedc53c17989e58bd0b9f236f6abfc72db4c92",
        path="weight/Epoch99.pth",
        licence="MIT",
        paper="Zheng & Gupta, Semantic-Guided Zero-Shot Learning for Low-Light Image/Video Enhancement, WACV 2022",
        used_by="sgz",
    )
)


@register_enhancer("sgz")
class SGZ(Enhancer):
    """SGZ (Zheng & Gupta, WACV 2022): a Zero-DCE++-shaped curve estimator trained with a semantic loss.

    Paper: Semantic-Guided Zero-Shot Learning for Low-Light Image/Video Enhancement, WACV 2022 (the
    upstream README's citation: Proceedings of WACV, pp. 581-590).
    Network: :class:`cals_bench.baselines.zero_dce.ZeroDCEPlusPlusNet` (depthwise-separable, ``conv_type='dsc'``,
    10,561 parameters); the segmentation network is used only in training and is not part of the weights.

    Weights: ``llie/sgz`` = ``weight/Epoch99.pth`` of
    ShenZheng2000/Semantic-Guided-Low-Light-Image-Enhancement @ 94dedc5, licence MIT. A plain state dict;
    loads strictly.

    Upstream test-time procedure (``test.py`` + ``utils.py``): ``np.asarray(PIL image) / 255``, ``scale_factor
    = 12``, the image is **cropped** to ``[0:H//12*12, 0:W//12*12]`` (600x400 LOL -> 600x396), the network's
    first output is saved with ``torchvision.utils.save_image`` (rounded).

    Deviation (as for Zero-DCE++): no crop; ``pad_multiple = 12`` (engine reflect-pads to a multiple of 12 and
    crops back; ``enhance`` does the same itself on other sizes), so outputs keep the reference's size. LOL-v1
    eval15: ours 16.045 dB / 0.5702 on the full 600x400 image; on the upstream's 600x396 region ours 16.042 dB
    / 0.5708, the upstream script's own output 16.041 dB / 0.5708. Run on the upstream's crop, our network
    reproduces the upstream PNGs pixel for pixel (tests/test_baselines_sgz.py).
    """

    summary = "SGZ: Zero-DCE++-shaped curve estimator trained with a semantic-guided zero-reference loss"
    paper = WEIGHTS.paper
    licence = WEIGHTS.licence
    published: ClassVar[dict[str, Any]] = {
        "lol-v1": [
            Published(
                kind="upstream-code",
                source="official test.py re-run on CPU, its PNGs scored by the suite (tests/test_baselines_sgz.py)",
                scores={"psnr": 16.0406, "ssim": 0.5708},
                note="upstream crops 600x400 to 600x396 and scores that region; the suite pads and scores the full image",
            ),
        ]
    }
    pad_multiple = 12

    def __init__(self) -> None:
        super().__init__()
        self.net = ZeroDCEPlusPlusNet(scale_factor=12)
        self.net.load_state_dict(self.load_weights(WEIGHTS.name), strict=True)
        self.net.eval()

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.net(pad_to_multiple(x, self.pad_multiple))[..., :h, :w].clamp(0.0, 1.0)
