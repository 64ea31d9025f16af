"""MobileFaceNet (Chen et al., 2018) trained with the ArcFace margin loss on CASIA-WebFace, in torch.

The network is differentiable, so it can serve as a *training* loss (CALS's identity term); the benchmark
keeps scoring identity with SFace (``id_sim``, :mod:`cals_bench.face.recognize`), so a model is never scored
by the network it was trained against.

Weights: ``face/mobilefacenet-arcface-casia`` (Xiaoccer/MobileFaceNet_Pytorch, ``model/best/068.ckpt``:
``{'epoch', 'net_state_dict'}``, 333 tensors, 0.99 M parameters). The module names below are the
checkpoint's, so its state dict loads with ``strict=True``:

- ``conv1``: 3x3 stride-2 convolution, 3 -> 64, batch norm, PReLU;
- ``dw_conv1``: 3x3 depthwise convolution, batch norm, PReLU;
- ``blocks``: 15 inverted-residual bottlenecks (expansion t, output c, repeats n, first stride s):
  (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1); each is a 1x1 expansion
  (BN, PReLU), a 3x3 depthwise convolution (BN, PReLU) and a linear 1x1 projection (BN), with the input
  added when stride is 1 and the width is unchanged;
- ``conv2``: 1x1, 128 -> 512, BN, PReLU; ``linear7``: a 7x6 depthwise "global" convolution (BN, no
  activation) that collapses the 7x6 map; ``linear1``: 1x1, 512 -> 128, BN: the 128-d embedding.

Input convention (the repository's LFW evaluation loader): RGB faces of 112 rows x 96 columns aligned as
SphereFace aligns them, values ``(x - 127.5) / 128`` for x in 0..255. SphereFace's five-point template for
112x96 is the ArcFace 112x112 template shifted left by 8 pixels, so the central 96 columns of a crop
aligned by :mod:`cals_bench.face.align` are exactly a SphereFace crop: the recogniser backend here takes
the suite's 112x112 aligned faces and uses columns 8..103.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cals_bench.errors import WeightsError
from cals_bench.face.recognize import RECOGNIZERS, FaceRecognizer
from cals_bench.weights import WeightSpec, register

# The face recognition network of CALS's identity loss L_id (``cals-bench weights list``).
MOBILEFACENET_WEIGHTS = register(
    WeightSpec.on_github(
        "face/mobilefacenet-arcface-casia",
        "face/mobilefacenet_arcface_casia_068.ckpt",
        "e839247cdbdfc023fb7cadeaf53a4549d50c8fc24ad154c02e35920ea8910d99",
        4130855,
        repo="Xiaoccer/MobileFaceNet_Pytorch",
        commit="26bd8d262017e472a3c7f56d62929e2138a70aeb",
        path="model/best/068.ckpt",
        licence="none stated upstream (research code)",
        paper="Chen et al., MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on Mobile "
        "Devices, CCBR 2018; trained with ArcFace (Deng et al., CVPR 2019) on CASIA-WebFace",
        used_by="CALS identity loss L_id (training only; id_sim scores with SFace)",
        notes="{'epoch', 'net_state_dict'}; 112x96 SphereFace-aligned RGB, (x-127.5)/128; 128-d embedding",
    )
)
WEIGHTS_NAME = MOBILEFACENET_WEIGHTS.name
INPUT_HEIGHT, INPUT_WIDTH = 112, 96
COLUMN_OFFSET = 8  # (112 - 96) / 2: SphereFace template = ArcFace template - 8 px in x
# (expansion, output channels, repeats, first stride)
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class ConvUnit(nn.Module):
    """Convolution (no bias), batch norm, then PReLU unless ``linear``. Keys: conv, bn, prelu."""

    def __init__(
        self, c_in: int, c_out: int, kernel, stride: int, padding: int, *, depthwise=False, linear=False
    ):
        super().__init__()
        groups = c_in if depthwise else 1
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.prelu = None if linear else nn.PReLU(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class Bottleneck(nn.Module):
    """Inverted residual: ``conv`` = [1x1 expand, BN, PReLU, 3x3 depthwise, BN, PReLU, 1x1 project, BN]."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.residual = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, mid, 1, 1, 0, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, c_out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """``forward``: normalised faces ``(B, 3, 112, 96)`` -> raw 128-d embeddings ``(B, 128)``.

    :meth:`embed_unit` takes faces in [0, 1] and returns unit-length embeddings.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvUnit(3, 64, 3, 2, 1)
        self.dw_conv1 = ConvUnit(64, 64, 3, 1, 1, depthwise=True)
        layers, c_in = [], 64
        for t, c, n, s in BOTTLENECKS:
            for i in range(n):
                layers.append(Bottleneck(c_in, c, s if i == 0 else 1, t))
                c_in = c
        self.blocks = nn.Sequential(*layers)
        self.conv2 = ConvUnit(128, 512, 1, 1, 0)
        self.linear7 = ConvUnit(512, 512, (7, 6), 1, 0, depthwise=True, linear=True)
        self.linear1 = ConvUnit(512, 128, 1, 1, 0, linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw_conv1(self.conv1(x))
        x = self.linear1(self.linear7(self.conv2(self.blocks(x))))
        return x.flatten(1)

    @staticmethod
    def normalise(faces01: torch.Tensor) -> torch.Tensor:
        """Faces in [0, 1] -> the network's input ``(255 x - 127.5) / 128``."""
        return (faces01 * 255.0 - 127.5) / 128.0

    def embed_unit(self, faces01: torch.Tensor) -> torch.Tensor:
        e = self(self.normalise(faces01))
        return e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @classmethod
    def from_registry(cls) -> tuple[MobileFaceNet, dict[str, str]]:
        """The checksummed ArcFace/CASIA weights, loaded strictly; eval mode, frozen."""
        from cals_bench import weights

        state, resolved = weights.load_torch(WEIGHTS_NAME)
        if not isinstance(state, dict) or "net_state_dict" not in state:
            raise WeightsError(f"{resolved.path}: not a MobileFaceNet checkpoint (no net_state_dict)")
        net = cls()
        try:
            net.load_state_dict(state["net_state_dict"], strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{resolved.path}: does not fit MobileFaceNet: {exc}") from exc
        net.eval().requires_grad_(False)
        return net, {WEIGHTS_NAME: resolved.sha256}


class MobileFaceNetRecognizer(FaceRecognizer):
    """Backend ``mobilefacenet`` (128-d): the training network as a recogniser, for checks and diagnostics.

    Never the identity metric of a CALS protocol (those use ``sface``): it is the network CALS trains
    against. Takes the suite's 112x112 aligned crops and uses their central 96 columns (see the module
    docstring).
    """

    name = "mobilefacenet"
    dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.net: MobileFaceNet | None = None

    @property
    def preprocessing(self) -> str:
        return "mobilefacenet RGB NCHW 112x96 = columns 8..103 of the arcface-112 crop, (x-127.5)/128"

    def _load(self) -> None:
        from cals_bench import weights

        self.net, self.weights_used = MobileFaceNet.from_registry()
        self.weights_identity = {WEIGHTS_NAME: weights.resolve(WEIGHTS_NAME).identity}

    def _embed(self, faces: np.ndarray) -> np.ndarray:
        assert self.net is not None
        x = torch.from_numpy(np.ascontiguousarray(faces[:, :, COLUMN_OFFSET : COLUMN_OFFSET + INPUT_WIDTH]))
        x = x.permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            return self.net(MobileFaceNet.normalise(x)).numpy()


RECOGNIZERS.setdefault("mobilefacenet", MobileFaceNetRecognizer)
