"""LPIPS v0.1 (Zhang et al., CVPR 2018) with the AlexNet (default) or VGG16 backbone, without torchvision.

The computation is the ``lpips`` package's ``LPIPS(net=..., version="0.1")`` forward pass:
1. images in [0, 1] are mapped to [-1, 1] (``2x - 1``; the package expects [-1, 1] inputs) and through
   the scaling layer ``(x - shift) / scale`` with shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450);
2. the ImageNet backbone (torchvision's ``alexnet().features`` / ``vgg16().features`` layout, rebuilt here
   from plain ``nn`` layers and loaded from ``backbone/*-features``) yields five ReLU activations;
3. each activation is normalised to unit length along channels, ``f / (||f||_2 + 1e-10)``;
4. the squared difference of the normalised features is weighted per channel by the v0.1 linear heads
   (``lpips/v0.1-*``, 1x1 convolutions without bias), averaged over space, and summed over the five layers.
Lower is more similar. Known answers (README of richzhang/PerceptualSimilarity, alex): 0.722 and 0.137.

The reference side of step 3 is what :class:`~cals_bench.cache.FeatureCache` stores (one ``(h, w, C)``
array per layer), so a reference seen before costs no backbone pass.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from cals_bench.cache import CacheKey
from cals_bench.errors import CalsBenchError, SampleError, WeightsError
from cals_bench.metrics.base import ColumnFormat, Metric, SampleContext, register_metric
from cals_bench.weights import WeightSpec, register

LpipsNet = Literal["alex", "vgg"]

# Scaling layer of LPIPS v0.1 (the ImageNet mean/std expressed for inputs in [-1, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
# Bump when the cached feature values would change (layer list, normalisation, input mapping, memory
# layout). 2: channels-last convolutions on the CPU (features within 3e-6 of version 1's); 3: stored
# (h, w, C), so that a cached map is a zero-copy channels-last tensor like the outputs' features.
FEATURES_VERSION = 3

# --- Weight files (``cals-bench weights list``) ---------------------------------------------------------------
# The v0.1 linear heads, as the LPIPS repository ships them.
HEAD_ALEX = register(
    WeightSpec.on_github(
        "lpips/v0.1-alex",
        "lpips/lpips-v0.1-alex.pth",
        "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        6009,
        repo="richzhang/PerceptualSimilarity",
        commit="082bb24f84c091ea94de2867d34c4544f68e0963",
        path="lpips/weights/v0.1/alex.pth",
        licence="BSD-2-Clause",
        paper="Zhang et al., The Unreasonable Effectiveness of Deep Features as a Perceptual Metric, CVPR 2018",
        used_by="metric lpips (alex)",
    )
)
HEAD_VGG = register(
    WeightSpec.on_github(
        "lpips/v0.1-vgg",
        "lpips/lpips-v0.1-vgg.pth",
        "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
        7289,
        repo="richzhang/PerceptualSimilarity",
        commit="082bb24f84c091ea94de2867d34c4544f68e0963",
        path="lpips/weights/v0.1/vgg.pth",
        licence="BSD-2-Clause",
        paper="Zhang et al., CVPR 2018",
        used_by="metric lpips (vgg)",
    )
)
HEAD_SQUEEZE = register(
    WeightSpec.on_github(
        "lpips/v0.1-squeeze",
        "lpips/lpips-v0.1-squeeze.pth",
        "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
        10811,
        repo="richzhang/PerceptualSimilarity",
        commit="082bb24f84c091ea94de2867d34c4544f68e0963",
        path="lpips/weights/v0.1/squeeze.pth",
        licence="BSD-2-Clause",
        paper="Zhang et al., CVPR 2018",
        used_by="(not used: no SqueezeNet backbone shipped)",
    )
)

# The ImageNet backbones, keyed like torchvision's ``features.N``. The stored files hold only the
# ``features.*`` tensors of torchvision's checkpoints. Upstream is the torchvision file itself (its name
# carries the first 8 hex digits of its sha256, which torchvision checks); a user who already has it in the
# torch hub cache gets it converted without a download. torch.save output is not byte-deterministic, so a
# converted copy is verified by ``content_sha256`` (tensor content hash). Besides LPIPS, the fairness
# features read the AlexNet file and EnlightenGAN's perceptual loss the VGG16 one (both by name).
ALEXNET_FEATURES = register(
    WeightSpec(
        name="backbone/alexnet-features",
        relpath="lpips/alexnet-features-imagenet.pth",
        sha256="711ecb07da5116d159f1a3c4186f4fb7a0f411c542a131bcd3f2a874bb38bb71",
        size=9883173,
        licence="BSD-3-Clause (torchvision)",
        origin="torchvision alexnet-owt-7be5be79.pth, features.* only",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        paper="Krizhevsky et al., ImageNet Classification with Deep CNNs, NeurIPS 2012",
        used_by="metric lpips (alex); fairness features",
        hub_filename="alexnet-owt-7be5be79.pth",
        source_sha256_prefix="7be5be79",
        convert="torchvision-features",
        content_sha256="699078bd8c5f2e95c9ac2988f0fa29ff58c56c072deac7f3c8d1b6fafbcbf918",
    )
)
VGG16_FEATURES = register(
    WeightSpec(
        name="backbone/vgg16-features",
        relpath="lpips/vgg16-features-imagenet.pth",
        sha256="bda7160d2ba16c797a1c51a323c8e8044094d4479e8b40b3c330c396e7e0f100",
        size=58867733,
        licence="BSD-3-Clause (torchvision)",
        origin="torchvision vgg16-397923af.pth, features.* only",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        paper="Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015",
        used_by="metric lpips (vgg)",
        hub_filename="vgg16-397923af.pth",
        source_sha256_prefix="397923af",
        convert="torchvision-features",
        content_sha256="cc4dd33b8f38b43e54791a318cd2795ac1c6e9574b98a025024e5588ccb9f7e3",
    )
)


@dataclass(frozen=True)
class BackboneLayout:
    """A torchvision-style ``features`` stack: ops in torchvision's index order and the tapped indices.

    Ops: ``("conv", c_in, c_out, kernel, stride, padding)``, ``("relu",)``, ``("pool", kernel, stride)``.
    """

    backbone_weights: str
    head_weights: str
    ops: tuple[tuple[Any, ...], ...]
    taps: tuple[int, ...]
    channels: tuple[int, ...]


def _vgg16_ops() -> tuple[tuple[Any, ...], ...]:
    ops: list[tuple[Any, ...]] = []
    c_in = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if v == "M":
            ops.append(("pool", 2, 2))
        else:
            ops += [("conv", c_in, v, 3, 1, 1), ("relu",)]
            c_in = v
    return tuple(ops)


LAYOUTS: dict[str, BackboneLayout] = {
    "alex": BackboneLayout(
        backbone_weights=ALEXNET_FEATURES.name,
        head_weights=HEAD_ALEX.name,
        ops=(
            ("conv", 3, 64, 11, 4, 2),
            ("relu",),
            ("pool", 3, 2),
            ("conv", 64, 192, 5, 1, 2),
            ("relu",),
            ("pool", 3, 2),
            ("conv", 192, 384, 3, 1, 1),
            ("relu",),
            ("conv", 384, 256, 3, 1, 1),
            ("relu",),
            ("conv", 256, 256, 3, 1, 1),
            ("relu",),
        ),
        taps=(1, 4, 7, 9, 11),
        channels=(64, 192, 384, 256, 256),
    ),
    "vgg": BackboneLayout(
        backbone_weights=VGG16_FEATURES.name,
        head_weights=HEAD_VGG.name,
        ops=_vgg16_ops(),
        taps=(3, 8, 15, 22, 29),
        channels=(64, 128, 256, 512, 512),
    ),
}


class LpipsBackbone(nn.Module):
    """The ImageNet convolutional stack, as ``self.features`` (state-dict keys ``features.N.weight``).

    ``forward`` takes scaled inputs ``(B, 3, H, W)`` and returns the five tapped ReLU activations.
    ``images_seen`` counts the images passed through (tests use it to check the reference cache).
    """

    def __init__(self, layout: BackboneLayout) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for op in layout.ops[: max(layout.taps) + 1]:
            if op[0] == "conv":
                _, c_in, c_out, k, s, p = op
                layers.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=p))
            elif op[0] == "relu":
                layers.append(nn.ReLU(inplace=True))
            else:
                layers.append(nn.MaxPool2d(op[1], stride=op[2]))
        self.features = nn.Sequential(*layers)
        self.taps = layout.taps
        self.images_seen = 0

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.images_seen += int(x.shape[0])
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def scale_input(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> [-1, 1] -> LPIPS scaling layer. ``(B, 3, H, W)`` float.

    ``(x * 2 - 1 - shift) / scale``, the same operations in the same order, in place on one new tensor.
    """
    shift = torch.tensor(SHIFT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    scale = torch.tensor(SCALE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.mul(2.0).sub_(1.0).sub_(shift).div_(scale)


def normalize_channels(f: torch.Tensor, eps: float = EPS, *, inplace: bool = False) -> torch.Tensor:
    """Unit length along channels, ``f / (sqrt(sum_c f^2) + eps)`` (the lpips package's normalize_tensor).

    ``inplace=True`` overwrites ``f`` (no new full-size tensor: on the CPU, allocating and faulting in
    fresh pages costs as much as the arithmetic).
    """
    norm = torch.linalg.vector_norm(f, dim=1, keepdim=True).add_(eps)
    return f.div_(norm) if inplace else f / norm


def lpips_from_features(
    feats0: list[torch.Tensor], feats1: list[torch.Tensor], heads: list[torch.Tensor]
) -> torch.Tensor:
    """LPIPS ``(B,)`` from per-layer channel-normalised features and the heads' channel weights ``(C,)``.

    ``mean_hw(sum_c w_c d_c)`` is computed as ``sum_c w_c mean_hw(d_c)``: the same number, fewer operations.
    """
    total = None
    for f0, f1, w in zip(feats0, feats1, heads):
        d = f0 - f1
        per_channel = d.mul_(d).mean(dim=(2, 3))
        term = per_channel @ w
        total = term if total is None else total + term
    assert total is not None
    return total


class LpipsModel(nn.Module):
    """Backbone plus v0.1 heads. ``forward(x0, x1)`` with images in [0, 1] returns LPIPS ``(B,)``."""

    def __init__(self, net: LpipsNet = "alex") -> None:
        super().__init__()
        if net not in LAYOUTS:
            raise CalsBenchError(f"lpips net must be one of {sorted(LAYOUTS)}, not {net!r}")
        self.net = net
        self.layout = LAYOUTS[net]
        self.backbone = LpipsBackbone(self.layout)
        for k, c in enumerate(self.layout.channels):
            self.register_buffer(f"head{k}", torch.zeros(c))
        self.weights_used: dict[str, str] = {}
        self.weights_identity: dict[str, str] = {}
        self.eval()
        self.requires_grad_(False)

    @property
    def heads(self) -> list[torch.Tensor]:
        return [getattr(self, f"head{k}") for k in range(len(self.layout.channels))]

    @classmethod
    def from_registry(cls, net: LpipsNet = "alex") -> LpipsModel:
        """Load the checksummed backbone and heads through :mod:`cals_bench.weights`."""
        from cals_bench import weights

        model = cls(net)
        backbone, rb = weights.load_torch(model.layout.backbone_weights)
        heads, rh = weights.load_torch(model.layout.head_weights)
        try:
            model.backbone.load_state_dict(backbone, strict=True)
            for k, c in enumerate(model.layout.channels):
                w = heads[f"lin{k}.model.1.weight"]
                if tuple(w.shape) != (1, c, 1, 1):
                    raise ValueError(f"lin{k} has shape {tuple(w.shape)}, expected (1, {c}, 1, 1)")
                getattr(model, f"head{k}").copy_(w.reshape(c))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise WeightsError(f"LPIPS-{net} weights do not fit the network: {exc}") from exc
        for r in (rb, rh):
            model.weights_used[r.spec.name] = r.sha256
            model.weights_identity[r.spec.name] = r.identity
        return model

    def normalized_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised activations: images ``(B, 3, H, W)`` in [0, 1] -> five ``(B, C_k, h, w)``.

        On the CPU the convolutions run channels-last (oneDNN's fast layout: a third less time; LPIPS
        within 1e-7 of the contiguous layout). The features are then channels-last strided tensors.
        """
        x = scale_input(x)
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return [normalize_channels(f, inplace=True) for f in self.backbone(x)]

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        f = self.normalized_features(torch.cat([x0, x1]))
        b = x0.shape[0]
        return lpips_from_features([t[:b] for t in f], [t[b:] for t in f], self.heads)


_FUNCTIONAL_MODELS: dict[str, LpipsModel] = {}


def learned_perceptual_image_patch_similarity(
    img0: torch.Tensor, img1: torch.Tensor, net: LpipsNet = "alex"
) -> torch.Tensor:
    """LPIPS v0.1 between two batches of float RGB ``(B, 3, H, W)`` images in [0, 1]; returns ``(B,)``.

    The weights come from the registry (checksummed; offline from ``CALS_BENCH_WEIGHTS``).
    """
    if img0.shape != img1.shape or img0.ndim != 4 or img0.shape[1] != 3:
        raise SampleError(
            f"lpips needs two (B, 3, H, W) batches of one shape, got {tuple(img0.shape)} and "
            f"{tuple(img1.shape)}"
        )
    if net not in _FUNCTIONAL_MODELS:
        _FUNCTIONAL_MODELS[net] = LpipsModel.from_registry(net)
    model = _FUNCTIONAL_MODELS[net].to(img0.device)
    with torch.inference_mode():
        return model(img0.float(), img1.float())


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    """A CPU tensor viewing a (read-only) cached array without copying; it is only ever read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable array": we never write to it
        return torch.from_numpy(a)


def _chw(hwc: tuple[int, ...]) -> tuple[int, ...]:
    """The (C, h, w) shape of a cached (h, w, C) map."""
    return (hwc[2], hwc[0], hwc[1]) if len(hwc) == 3 else tuple(hwc)


def preprocessing_tag(net: str) -> str:
    """Everything that determines the cached reference features besides the image and the weights."""
    return (
        f"lpips-v0.1 net={net} input=[0,1]->[-1,1] shift={SHIFT} scale={SCALE} "
        f"normalize=unit-channel eps={EPS} dtype=float32 features-v{FEATURES_VERSION}"
    )


@register_metric
class LearnedPerceptualImagePatchSimilarity(Metric):
    """LPIPS v0.1 per image pair (lower is better). Option ``net``: ``"alex"`` (default) or ``"vgg"``.

    With a :class:`~cals_bench.cache.FeatureCache` attached, the references' normalised backbone
    features are stored and reused (keyed by ``reference_key``, backbone weights and preprocessing):
    a pair whose reference was seen before costs one backbone pass.
    """

    name = "lpips"
    summary = "LPIPS v0.1 (AlexNet default, or VGG16), inputs mapped to [-1, 1], full resolution"
    columns: ClassVar[dict[str, bool | None]] = {"lpips": False}
    column_formats: ClassVar[dict[str, ColumnFormat]] = {"lpips": ColumnFormat("LPIPS", decimals=4)}

    def __init__(self, *, net: LpipsNet = "alex", **unknown: Any) -> None:
        super().__init__(**unknown)  # refuses unknown options with a CalsBenchError
        if net not in LAYOUTS:
            raise CalsBenchError(f"metric 'lpips' option net must be one of {sorted(LAYOUTS)}, not {net!r}")
        self.net = net
        self.options = {"net": net}
        self.cache: Any = None
        self.device = torch.device("cpu")
        self.model: LpipsModel | None = None
        self.last_reasons: list[str | None] = []
        # Set by a consumer of the same backbone (features.share_backbones): the last batch's images and
        # normalised features are kept until the next batch, so that consumer needs no backbone pass.
        self.keep_features = False
        self._memo: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    # -- contract ---------------------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        try:
            self.load_model()
        except WeightsError as exc:
            return False, f"lpips ({self.net}): {exc}"
        return True, ""

    def to(self, device: torch.device | str) -> LearnedPerceptualImagePatchSimilarity:
        self.device = torch.device(device)
        if self.model is not None:
            self.model.to(self.device)
        return self

    def attach_cache(self, cache: Any) -> None:
        self.cache = cache

    def score_batch(
        self, output: torch.Tensor, reference: torch.Tensor, contexts: list[SampleContext]
    ) -> list[dict[str, float]]:
        if output.shape != reference.shape:
            raise SampleError(
                f"lpips: output {tuple(output.shape)} and reference {tuple(reference.shape)} differ"
            )
        model = self.load_model()
        with torch.inference_mode():
            out_f, ref_f = self.pair_features(output, reference, contexts)
            d = lpips_from_features(out_f, ref_f, model.heads)
        self._memo = (
            {"output": (output, out_f), "reference": (reference, ref_f)} if self.keep_features else {}
        )
        self.last_reasons = [None] * len(contexts)
        return [{"lpips": float(v)} for v in d.cpu()]

    def last_features(self, images: torch.Tensor, role: str) -> list[torch.Tensor] | None:
        """The normalised features this metric computed in its last ``score_batch`` for ``images`` (the
        outputs, ``role="output"``, or the references), or None when ``images`` are not exactly those
        (compared element-wise, so a stale or foreign batch is never taken for them)."""
        memo = self._memo.get(role)
        if memo is None:
            return None
        seen, feats = memo
        if seen.shape != images.shape or seen.device != images.device or not torch.equal(seen, images):
            return None
        return feats

    # -- features and the reference cache -----------------------------------------------------------
    def load_model(self) -> LpipsModel:
        """Load (once) the checksummed backbone and heads; raises WeightsError when they are missing."""
        if self.model is None:
            self.model = LpipsModel.from_registry(self.net).to(self.device)
            self.weights_used = dict(self.model.weights_used)
        return self.model

    def cache_key(self, ctx: SampleContext) -> CacheKey | None:
        """The cache key of a sample's reference features (None when the sample has no reference_key)."""
        if not ctx.reference_key:
            return None
        model = self.load_model()
        ident = {model.layout.backbone_weights: model.weights_identity[model.layout.backbone_weights]}
        return CacheKey.make(
            f"lpips-features/{self.net}", ctx.reference_key, ident, preprocessing_tag(self.net)
        )

    def pair_features(
        self, output: torch.Tensor, reference: torch.Tensor, contexts: list[SampleContext]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Normalised features of the outputs (always computed) and of the references (from the cache
        where present; computed in the same backbone pass and stored otherwise)."""
        model = self.load_model()
        b = output.shape[0]
        keys = [self.cache_key(c) if self.cache is not None else None for c in contexts]
        cached = [self.cache.get(k) if k is not None else None for k in keys]
        missing = [i for i in range(b) if cached[i] is None]
        x = output if not missing else torch.cat([output, reference[missing]])
        feats = model.normalized_features(x.to(self.device, torch.float32))
        out_f = [f[:b] for f in feats]
        computed = {i: [f[b + j] for f in feats] for j, i in enumerate(missing)}
        expected = [tuple(f.shape[1:]) for f in out_f]
        stale = [
            i
            for i in range(b)
            if cached[i] is not None
            and [_chw(cached[i][f"layer{k}"].shape) for k in range(len(expected))] != expected
        ]
        if stale:  # a reference_key that does not match the image given: never trust such an entry
            warnings.warn(
                f"lpips: cached reference features of {len(stale)} sample(s) have the wrong shape; "
                "recomputing (check that reference_key identifies the reference image)",
                stacklevel=2,
            )
            again = model.normalized_features(reference[stale].to(self.device, torch.float32))
            for j, i in enumerate(stale):
                computed[i] = [f[j] for f in again]
                cached[i] = None
        for i, per_layer in computed.items():
            if keys[i] is not None:
                self.cache.put(
                    keys[i], {f"layer{k}": t.cpu().permute(1, 2, 0).numpy() for k, t in enumerate(per_layer)}
                )
        ref_f = []
        for k in range(len(out_f)):
            rows = [
                computed[i][k] if i in computed else _as_tensor(cached[i][f"layer{k}"]).permute(2, 0, 1)
                for i in range(b)
            ]
            ref_f.append(
                rows[0].unsqueeze(0).to(self.device) if b == 1 else torch.stack(rows).to(self.device)
            )
        return out_f, ref_f
