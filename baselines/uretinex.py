"""URetinex-Net (Wu et al., CVPR 2022) with its four official checkpoints.

A Retinex decomposition unrolled into ``T`` rounds: closed-form least-squares updates of the
reflectance ``P`` and illumination ``Q`` alternate with learned proximal networks (``model_R`` denoises the
reflectance, ``model_L`` refines the illumination); an adjustment net then brightens the illumination by a
ratio. The networks are rebuilt here so that the upstream checkpoints load strictly.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cals_bench.enhancer import VariantEnhancer, register_enhancer
from cals_bench.errors import CalsBenchError, WeightsError
from cals_bench.published import Published
from cals_bench.weights import WeightSpec, register

_LEAK = 0.2


class _Decom(nn.Module):
    """Initialisation net: 4 convs (3x3, 32 ch, LeakyReLU 0.2), ReLU out; channels 0-2 are R, 3 is L."""

    def __init__(self) -> None:
        super().__init__()
        self.decom = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.LeakyReLU(_LEAK),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.LeakyReLU(_LEAK),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.LeakyReLU(_LEAK),
            nn.Conv2d(32, 4, 3, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.decom(x)
        return out[:, :3], out[:, 3:4]


class _SqueezeExcite(nn.Module):
    """Channel attention: global average pool, Linear(C, C/16) ReLU, Linear(C/16, C) sigmoid, no biases."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class _ReflectanceNet(nn.Module):
    """``model_R`` ("HalfDnCNNSE" with concat_L): features of R (32 ch) and of L (32 ch), SE attention,
    five 3x3 conv+ReLU layers, and a residual noise estimate added back to R."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(1, 32, 3, padding=1)
        self.se_layer = _SqueezeExcite(64)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv5 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv6 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv7 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv8 = nn.Conv2d(64, 3, 3, padding=1)

    def forward(self, r: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        feat = torch.cat([F.relu(self.conv1(r)), F.relu(self.conv2(l))], dim=1)
        x = self.se_layer(feat)
        for conv in (self.conv3, self.conv4, self.conv5, self.conv6, self.conv7):
            x = F.relu(conv(x))
        return r + self.conv8(x)


class _IlluminationNet(nn.Module):
    """``model_L`` ("Illumination_Alone"): four 5x5 conv + LeakyReLU 0.2 (32 ch), a 1x1 conv, ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv3 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv4 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv5 = nn.Conv2d(32, 1, 1)

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        x = l
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.leaky_relu(conv(x), _LEAK)
        return F.relu(self.conv5(x))


class _AdjustNet(nn.Module):
    """``model_A`` ("Adjust_naive"): input ``[L, ratio map]``, four 5x5 convs with LeakyReLU 0.2 between,
    ReLU out: the brightened illumination."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv3 = nn.Conv2d(32, 32, 5, padding=2)
        self.conv4 = nn.Conv2d(32, 1, 5, padding=2)

    def forward(self, l: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        x = self.conv1(torch.cat([l, alpha], dim=1))
        x = self.conv2(F.leaky_relu(x, _LEAK))
        x = self.conv3(F.leaky_relu(x, _LEAK))
        x = self.conv4(F.leaky_relu(x, _LEAK))
        return F.relu(x)


@dataclass(frozen=True)
class UnfoldingSchedule:
    """The unrolling hyper-parameters stored in ``unfolding.pth['opts']`` (upstream reads them from there):
    ``rounds`` (T), and the penalty weights of round t: ``gamma + r_offset * t`` for P and
    ``lamda + l_offset * t`` for Q."""

    rounds: int
    gamma: float
    lamda: float
    r_offset: float
    l_offset: float

    @classmethod
    def from_opts(cls, opts: Any) -> UnfoldingSchedule:
        if not bool(getattr(opts, "concat_L", False)):
            raise WeightsError("uretinex-net: unfolding.pth was trained without concat_L; not supported")
        if getattr(opts, "R_model", None) != "HalfDnCNNSE" or getattr(opts, "L_model", None) != (
            "Illumination_Alone"
        ):
            raise WeightsError("uretinex-net: unfolding.pth names unexpected R/L models")
        return cls(
            rounds=int(opts.round),
            gamma=float(opts.gamma),
            lamda=float(opts.lamda),
            r_offset=float(opts.Roffset),
            l_offset=float(opts.Loffset),
        )


class URetinexNetModel(nn.Module):
    """The unfolding part shared by both variants: low-light RGB in [0, 1] -> (R, L)."""

    def __init__(self, schedule: UnfoldingSchedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.decom_low = _Decom()
        self.model_R = _ReflectanceNet()
        self.model_L = _IlluminationNet()
        self.adjust = _AdjustNet()

    def unfold(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.schedule
        p, q = self.decom_low(img)
        r = self.model_R(p, q)
        l = self.model_L(q)
        for t in range(1, s.rounds):
            w_p = s.gamma + s.r_offset * t
            w_q = s.lamda + s.l_offset * t
            # argmin_P ||I - P Q||^2 + w_p ||P - R||^2 (per pixel and channel)
            p = (img * q + w_p * r) / (w_p + q * q)
            # argmin_Q ||I - P Q||^2 + w_q ||Q - L||^2 (Q shared by the three channels)
            q = ((img * p).sum(dim=1, keepdim=True) + w_q * l) / ((p * p).sum(dim=1, keepdim=True) + w_q)
            r = self.model_R(p, q)
            l = self.model_L(q)
        return r, l

    def relight(self, r: torch.Tensor, l: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        """``adjust(L, ratio) * R``; ``ratio`` is ``(B,)``, broadcast to a constant map per image."""
        alpha = ratio.view(-1, 1, 1, 1).expand_as(l).to(l.dtype)
        return self.adjust(l, alpha) * r


def _load_checkpoint(enh: VariantEnhancer, name: str) -> dict[str, Any]:
    """Load an URetinex checkpoint with weights_only=True.

    ``unfolding.pth`` and ``L_adjust.pth`` also pickle the training run's ``argparse.Namespace`` under
    ``opts``, which ``weights_only=True`` refuses by default ("Unsupported global: argparse.Namespace").
    That class is a plain attribute bag (unpickling it sets attributes, runs no code), so exactly that one
    class is allow-listed for these loads; everything else in the files still goes through the restricted
    unpickler.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = enh.load_weights(name)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise WeightsError(f"{name}: expected a checkpoint dict with a 'state_dict' entry")
    return ckpt


# Weight files (``cals-bench weights list``), from the authors' repository at a pinned commit. Four
# networks: the decompositions of the low and (for gt_guided) the reference image, the unfolding and the
# adjustment.
_UPSTREAM = {
    "repo": "AndersonYong/URetinex-Net",
    "commit": "7ee2196e093b6a9ae5c20242e48f9d61021b6364",
    "licence": "MIT",
    "paper": "Wu et al., URetinex-Net: Retinex-based Deep Unfolding Network for Low-light Image Enhancement, CVPR 2022",
    "used_by": "uretinex-net",
}
WEIGHTS = {
    "init-low": register(
        WeightSpec.on_github(
            "llie/uretinex-init-low",
            "llie/uretinex-net/init_low.pth",
            "00a8d28ecaff67a79e045b3324bfab57d8ef18236a96a94aa9bcecccbb1f7e2d",
            250453,
            path="ckpt/init_low.pth",
            **_UPSTREAM,
        )
    ),
    "init-high": register(
        WeightSpec.on_github(
            "llie/uretinex-init-high",
            "llie/uretinex-net/init_high.pth",
            "7d11c3269a7db61301700c2d425788ea970b9a1418c9d4b376b624ce0eed36ba",
            250437,
            path="ckpt/init_high.pth",
            **_UPSTREAM,
        )
    ),
    "unfolding": register(
        WeightSpec.on_github(
            "llie/uretinex-unfolding",
            "llie/uretinex-net/unfolding.pth",
            "65ec556a3bd673cc4571bdd937ad38e44a56cbb011b81ad933b7d6ebeb6d55b5",
            3207861,
            path="ckpt/unfolding.pth",
            **_UPSTREAM,
        )
    ),
    "l-adjust": register(
        WeightSpec.on_github(
            "llie/uretinex-l-adjust",
            "llie/uretinex-net/L_adjust.pth",
            "6caba8b00e32758323294f3d49fcc0337e1884964cdebb85ae733ebd67442eda",
            1802447,
            path="ckpt/L_adjust.pth",
            **_UPSTREAM,
        )
    ),
}


@register_enhancer("uretinex-net")
class URetinexNet(VariantEnhancer):
    """URetinex-Net, Wu et al., "URetinex-Net: Retinex-based Deep Unfolding Network for Low-light Image
    Enhancement", CVPR 2022.

    Weights: AndersonYong/URetinex-Net @ 7ee2196e093b6a9ae5c20242e48f9d61021b6364 : ckpt/init_low.pth,
    init_high.pth, unfolding.pth, L_adjust.pth (MIT). Each is a training checkpoint; the networks are under
    ``state_dict`` (``model_R`` in the init files; ``model_R``/``model_L`` in unfolding; ``model_A`` in
    L_adjust) and load strictly. ``unfolding.pth['opts']`` holds the unrolling schedule, read as upstream
    does (T = 3 rounds, gamma 0.1, lamda 0.5, offsets 0.05). See :func:`_load_checkpoint` for why
    ``argparse.Namespace`` is allow-listed.

    Variants (the upstream repository has two test scripts):
    - ``blind`` (default; ``test.py``): the illumination is brightened by a fixed ``ratio`` (upstream
      ``--ratio`` default 5, "recommended 3-5"); pass ``ratio=`` to change it. 340,105 parameters.
    - ``gt_guided`` (``evaluate.py``, the setting of the paper's LOL table): the ratio is computed from the
      ground truth, ``1 / (mean(L_low / (L_high + 1e-4)) + 1e-4)``, where ``L_high`` is the illumination of
      the *reference image* from the ``init_high`` decomposition net and ``L_low`` the unfolded
      illumination. It reads the reference at test time (``uses_ground_truth = True``;
      :meth:`enhance_with_reference`), so its scores are not comparable with blind methods and every table
      flags it. The mean is taken per image (upstream runs batch size 1). 360,653 parameters.
    Both read ``ToTensor`` input (RGB in [0, 1]) at full size, no crop/pad/resize; every layer is a
    stride-1 convolution (``pad_multiple = 1``). Upstream saves with ``np.clip(x*255, 0, 255)
    .astype(uint8)`` (truncation); ours clamps to [0, 1] and the engine rounds.

    LOL-v1 eval15 with the suite's conventions: ``gt_guided`` 21.328 dB / SSIM 0.8335 (paper: 21.33 dB);
    ``blind`` (ratio 5) 19.860 dB / 0.8255. The official evaluate.py / test.py rebuilt on CPU write PNGs
    scoring 21.328 / 0.8341 and 19.842 / 0.8259: every value equal to ours or one level lower (truncation).
    """

    summary = "URetinex-Net (CVPR 2022): unrolled Retinex; blind fixed ratio 5 or gt_guided (reads GT)"
    paper = WEIGHTS["unfolding"].paper
    licence = WEIGHTS["unfolding"].licence
    published: ClassVar[dict[str, Any]] = {
        "lol-v1": [
            Published(
                kind="paper",
                source="Wu et al., URetinex-Net, CVPR 2022, LOL table (evaluate.py, GT-guided ratio)",
                scores={"psnr": 21.33},
                args={"variant": "gt_guided"},
            ),
            Published(
                kind="upstream-code",
                source="official evaluate.py re-run on CPU, its PNGs scored by the suite (tests/test_baselines_uretinex.py)",
                scores={"psnr": 21.328, "ssim": 0.8341},
                args={"variant": "gt_guided"},
                note="upstream truncates to 8 bit where the suite rounds",
            ),
            Published(
                kind="upstream-code",
                source="official test.py --ratio 5 re-run on CPU, its PNGs scored by the suite (tests/test_baselines_uretinex.py)",
                scores={"psnr": 19.842, "ssim": 0.8259},
                args={"variant": "blind", "ratio": 5.0},
                note="upstream truncates to 8 bit where the suite rounds",
            ),
        ]
    }
    variants = ("blind", "gt_guided")
    ground_truth_variants = ("gt_guided",)
    default_variant = "blind"
    pad_multiple = 1
    DEFAULT_RATIO = 5.0

    def __new__(cls, *args: Any, variant: str | None = None, **kwargs: Any) -> URetinexNet:
        # The GT-guided variant is its own class so that ``uses_ground_truth`` is True on the class too.
        if cls is URetinexNet and variant == "gt_guided":
            cls = URetinexNetGTGuided
        return super().__new__(cls)

    def __init__(self, *, variant: str | None = None, ratio: float | None = None) -> None:
        super().__init__(variant=variant)
        if self.variant == "gt_guided" and ratio is not None:
            raise CalsBenchError("uretinex-net@gt_guided computes its ratio from the reference; drop ratio=")
        self.ratio = self.DEFAULT_RATIO if ratio is None else float(ratio)
        if not self.ratio > 0:
            raise CalsBenchError(f"uretinex-net: ratio must be > 0, got {ratio}")
        if self.variant == "blind":
            self.args["ratio"] = self.ratio

        unfolding = _load_checkpoint(self, WEIGHTS["unfolding"].name)
        self.net = URetinexNetModel(UnfoldingSchedule.from_opts(unfolding["opts"]))
        self.net.decom_low.load_state_dict(
            _load_checkpoint(self, WEIGHTS["init-low"].name)["state_dict"]["model_R"], strict=True
        )
        self.net.model_R.load_state_dict(unfolding["state_dict"]["model_R"], strict=True)
        self.net.model_L.load_state_dict(unfolding["state_dict"]["model_L"], strict=True)
        self.net.adjust.load_state_dict(
            _load_checkpoint(self, WEIGHTS["l-adjust"].name)["state_dict"]["model_A"], strict=True
        )
        self.net.eval()

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        """float32 RGB ``(B, 3, H, W)`` in [0, 1] -> same shape, clamped to [0, 1] (fixed ratio)."""
        r, l = self.net.unfold(x)
        ratio = torch.full((x.shape[0],), self.ratio, device=x.device, dtype=x.dtype)
        return self.net.relight(r, l, ratio).clamp(0.0, 1.0)


class URetinexNetGTGuided(URetinexNet):
    """URetinex-Net as its ``evaluate.py``: the brightening ratio comes from the ground truth (see
    :class:`URetinexNet`). Built by ``URetinexNet(variant="gt_guided")`` / ``uretinex-net@gt_guided``."""

    uses_ground_truth = True

    def __init__(self, *, variant: str | None = None, ratio: float | None = None) -> None:
        super().__init__(variant=variant, ratio=ratio)
        self.decom_high = _Decom()
        self.decom_high.load_state_dict(
            _load_checkpoint(self, WEIGHTS["init-high"].name)["state_dict"]["model_R"], strict=True
        )
        self.decom_high.eval()

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        raise CalsBenchError(
            "uretinex-net@gt_guided reads the reference image at test time: call "
            "enhance_with_reference(x, reference), or use the blind variant"
        )

    def ground_truth_ratio(self, low_illumination: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Per-image ratio ``1 / (mean(L_low / (L_high + 1e-4)) + 1e-4)`` as upstream ``get_ratio``."""
        _, high_l = self.decom_high(reference)
        mean_ratio = (low_illumination / (high_l + 1e-4)).flatten(1).mean(dim=1)
        return 1.0 / (mean_ratio + 1e-4)

    def enhance_with_reference(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """``x`` and ``reference``: float32 RGB ``(B, 3, H, W)`` in [0, 1] -> enhanced, clamped to [0, 1]."""
        if reference.shape != x.shape:
            raise CalsBenchError(f"reference shape {tuple(reference.shape)} != input shape {tuple(x.shape)}")
        r, l = self.net.unfold(x)
        return self.net.relight(r, l, self.ground_truth_ratio(l, reference)).clamp(0.0, 1.0)
