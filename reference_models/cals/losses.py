"""CALS's five loss terms, each per sample (``(B,)``) so that the scheduler can weight every sample by its own
context. Images are float RGB ``(B, 3, H, W)`` in [0, 1].

- ``rec``: L1 between output and reference (mean over pixels and channels).
- ``perc``: LPIPS v0.1 (AlexNet) between output and reference, differentiable: the frozen ImageNet AlexNet
  of :mod:`cals_bench.metrics.lpips` with its v0.1 linear heads (the same network and weights as the
  ``lpips`` metric, so the value equals the metric's for the same pair).
- ``struct``: ``(1 - SSIM) + edge_weight * edge``, with SSIM the benchmark's convention (11x11 Gaussian
  window, sigma 1.5, valid positions, mean over channels and positions) and ``edge`` the mean absolute
  difference of the Sobel gradient magnitudes of the BT.601 luma (the structure the medical context must
  keep: rib and lung edges).
- ``id``: ``1 - cos(e(out), e(ref))`` of unit MobileFaceNet embeddings (:mod:`cals_bench.face.mobilefacenet`)
  of face crops aligned on the *reference's* five landmarks (YuNet, the metric's detector): the 2x3
  similarity to the ArcFace template is fitted once on the reference and applied to both images, as the
  ``id_sim`` metric does; the warp is a differentiable bilinear ``grid_sample`` with a black border. Only
  samples where a face is found on the reference get the term (``mask``).
- ``fair``: ``sum_g SW1(P_g^ref, P_g^out)`` over the groups present in the batch, with ``SW1`` the sliced
  Wasserstein-1 distance between the reference and output feature sets of the group's samples (the
  ``alexnet-pooled`` features the audit's GPI compares: channel-normalised AlexNet activations averaged over
  space, 1152-d), over ``projections`` random unit directions drawn afresh each training step from a
  generator seeded by the step count the model keeps in its state (so a resumed run draws exactly the
  directions an uninterrupted one does). For two sets of the same size n, the 1-D
  W1 is the mean absolute difference of the sorted projections; ``torch.sort`` is differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cals_bench.face.align import alignment_matrix
from cals_bench.face.mobilefacenet import COLUMN_OFFSET, INPUT_HEIGHT, INPUT_WIDTH, MobileFaceNet
from cals_bench.metrics.lpips import LAYOUTS, LpipsBackbone, scale_input
from cals_bench.train.losses import ssim_per_sample

BT601 = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------------------------------------------------
# pixel and structure terms


def l1_per_sample(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per sample, ``(B,)``."""
    return (out - ref).abs().flatten(1).mean(1)


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of an RGB batch, ``(B, 1, H, W)``."""
    w = torch.tensor(BT601, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def sobel_magnitude(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Sobel gradient magnitude of the luma, ``(B, 1, H - 2, W - 2)`` (valid positions)."""
    gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    k = torch.stack([gx, gx.t()]).unsqueeze(1) / 8.0
    g = F.conv2d(luma(x), k)
    return torch.sqrt(g.pow(2).sum(1, keepdim=True) + eps)


def edge_per_sample(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of Sobel magnitudes per sample, ``(B,)``."""
    return (sobel_magnitude(out) - sobel_magnitude(ref)).abs().flatten(1).mean(1)


def struct_per_sample(out: torch.Tensor, ref: torch.Tensor, edge_weight: float = 1.0) -> torch.Tensor:
    """The structure term per sample: ``1 - SSIM`` plus ``edge_weight`` times the edge term."""
    return (1.0 - ssim_per_sample(out, ref)) + edge_weight * edge_per_sample(out, ref)


# ---------------------------------------------------------------------------------------------------------
# perceptual features (LPIPS AlexNet) and L_fair


class AlexFeatures(nn.Module):
    """The LPIPS AlexNet backbone and v0.1 heads, frozen, with a differentiable (not in-place) path.

    ``pretrained=False`` leaves random weights (tests that need no weights files only).
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        layout = LAYOUTS["alex"]
        self.backbone = LpipsBackbone(layout)
        for k, c in enumerate(layout.channels):
            self.register_buffer(f"head{k}", torch.full((c,), 1.0 / c))
        self.weights_used: dict[str, str] = {}
        if pretrained:
            from cals_bench.metrics.lpips import LpipsModel

            ref = LpipsModel.from_registry("alex")
            self.backbone.load_state_dict(ref.backbone.state_dict())
            for k in range(len(layout.channels)):
                getattr(self, f"head{k}").copy_(getattr(ref, f"head{k}"))
            self.weights_used = dict(ref.weights_used)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> AlexFeatures:  # frozen: always eval
        return super().train(False)

    @property
    def heads(self) -> list[torch.Tensor]:
        return [getattr(self, f"head{k}") for k in range(5)]

    def normalized(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Five channel-normalised activations ``f / (||f||_2 + 1e-10)`` of images in [0, 1]."""
        return [f / (f.norm(dim=1, keepdim=True) + 1e-10) for f in self.backbone(scale_input(x))]

    def lpips(self, f0: list[torch.Tensor], f1: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS ``(B,)`` from normalised features (the v0.1 head weights per channel, spatial mean)."""
        total = 0.0
        for a, b, w in zip(f0, f1, self.heads):
            total = total + ((a - b) ** 2).mean(dim=(2, 3)) @ w
        return total

    @staticmethod
    def pooled(f: list[torch.Tensor]) -> torch.Tensor:
        """``alexnet-pooled``: each normalised layer averaged over space, concatenated (``(B, 1152)``)."""
        return torch.cat([t.mean(dim=(2, 3)) for t in f], dim=1)


def sliced_w1(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Sliced Wasserstein-1 between the point sets ``a`` and ``b`` (``(n, D)`` each, same n), averaged over
    the unit ``directions`` ``(K, D)``: ``mean_k mean_j |sort(a theta_k)_j - sort(b theta_k)_j|``."""
    if a.shape != b.shape:
        raise ValueError(f"sliced_w1 needs two sets of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    pa = torch.sort(a @ directions.t(), dim=0).values
    pb = torch.sort(b @ directions.t(), dim=0).values
    return (pa - pb).abs().mean()


def random_directions(k: int, dim: int, seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``k`` unit directions in ``R^dim`` drawn (on the CPU) from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    d = torch.randn(k, dim, dtype=torch.float64, generator=g)
    return (d / d.norm(dim=1, keepdim=True)).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class Group:
    """The batch positions of one attribute value (a demographic group) in a training batch."""

    attribute: str
    value: str
    members: tuple[int, ...]


def batch_groups(
    attributes: list[dict[str, str]], names: list[str] | tuple[str, ...], min_size: int
) -> list[Group]:
    """The groups ``(attribute, value)`` present in a batch with at least ``min_size`` members (empty or
    missing values form no group), in a stable order."""
    out = []
    for name in names:
        members: dict[str, list[int]] = {}
        for i, attrs in enumerate(attributes):
            v = str(attrs.get(name, "") or "").strip()
            if v:
                members.setdefault(v, []).append(i)
        for v in sorted(members):
            if len(members[v]) >= min_size:
                out.append(Group(name, v, tuple(members[v])))
    return out


def fairness_terms(
    ref_feats: torch.Tensor, out_feats: torch.Tensor, groups: list[Group], directions: torch.Tensor
) -> list[torch.Tensor]:
    """``SW1(P_g^ref, P_g^out)`` for each group (the reference side carries no gradient)."""
    ref_feats = ref_feats.detach()
    return [sliced_w1(ref_feats[list(g.members)], out_feats[list(g.members)], directions) for g in groups]


# ---------------------------------------------------------------------------------------------------------
# L_id: aligned face crops through MobileFaceNet


def sphereface_matrix(arcface_matrix: np.ndarray) -> np.ndarray:
    """The 2x3 map to the 112x96 SphereFace crop: the ArcFace 112x112 map shifted left by 8 pixels."""
    m = np.array(arcface_matrix, dtype=np.float64, copy=True)
    m[0, 2] -= COLUMN_OFFSET
    return m


def warp_grid(matrices: np.ndarray, height: int, width: int, out_h: int, out_w: int) -> torch.Tensor:
    """``grid_sample`` grids (``align_corners=True``) that warp images of ``height x width`` by the 2x3
    pixel maps ``matrices`` (image -> crop) into ``out_h x out_w`` crops, as ``cv2.warpAffine`` does."""
    grids = []
    v, u = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    pts = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    for m in matrices:
        full = np.vstack([m, [0.0, 0.0, 1.0]])
        src = np.linalg.inv(full)[:2] @ pts  # crop pixel -> image pixel
        gx = 2.0 * src[0] / max(width - 1, 1) - 1.0
        gy = 2.0 * src[1] / max(height - 1, 1) - 1.0
        grids.append(np.stack([gx, gy], axis=-1).reshape(out_h, out_w, 2))
    return torch.from_numpy(np.stack(grids)).float()


def aligned_faces(images: torch.Tensor, matrices: np.ndarray) -> torch.Tensor:
    """Differentiable 112x96 face crops of ``images`` (``(n, 3, H, W)``) by SphereFace-template matrices."""
    grid = warp_grid(matrices, images.shape[-2], images.shape[-1], INPUT_HEIGHT, INPUT_WIDTH)
    return F.grid_sample(
        images,
        grid.to(images.device, images.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )


class IdentityLoss(nn.Module):
    """``1 - cos`` of MobileFaceNet embeddings on crops aligned on the reference's landmarks.

    ``forward(out, ref, candidates)`` returns ``(loss (B,), mask (B,) bool)``; ``candidates`` (bool, B)
    marks the samples to search for a face (e.g. the face context); the detector runs on the 8-bit
    reference. ``pretrained=False``: random MobileFaceNet weights (tests that need no weight files).
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        if pretrained:
            self.net, self.weights_used = MobileFaceNet.from_registry()
        else:
            self.net, self.weights_used = MobileFaceNet().eval(), {}
        self.net.requires_grad_(False)
        self._detector = None
        self.faces_found = 0

    def train(self, mode: bool = True) -> IdentityLoss:  # frozen batch norms: always eval
        return super().train(False)

    @property
    def detector(self):
        if self._detector is None:
            from cals_bench.face.detect import YuNetDetector

            self._detector = YuNetDetector().load()
        return self._detector

    def reference_matrices(self, ref: torch.Tensor, candidates: torch.Tensor) -> dict[int, np.ndarray]:
        """``{sample index: ArcFace 2x3 matrix}`` for the candidates whose reference shows a face."""
        from cals_bench.face.pipeline import to_uint8_hwc

        found = {}
        for i in torch.nonzero(candidates).flatten().tolist():
            face = self.detector.detect(to_uint8_hwc(ref[i])).chosen
            if face is not None:
                found[i] = alignment_matrix(face.landmarks)
        return found

    def embed(self, images: torch.Tensor, arcface_matrices: list[np.ndarray]) -> torch.Tensor:
        crops = aligned_faces(images, np.stack([sphereface_matrix(m) for m in arcface_matrices]))
        return self.net.embed_unit(crops)

    def forward(
        self, out: torch.Tensor, ref: torch.Tensor, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = out.shape[0]
        loss = out.new_zeros(b)
        mask = torch.zeros(b, dtype=torch.bool, device=out.device)
        found = self.reference_matrices(ref, candidates)
        if not found:
            return loss, mask
        idx = sorted(found)
        mats = [found[i] for i in idx]
        with torch.no_grad():
            e_ref = self.embed(ref[idx], mats)
        e_out = self.embed(out[idx], mats)
        cos = (e_out * e_ref).sum(1)
        index = torch.tensor(idx, device=out.device)
        loss = loss.index_put((index,), 1.0 - cos)
        mask[index] = True
        self.faces_found += len(idx)
        return loss, mask
