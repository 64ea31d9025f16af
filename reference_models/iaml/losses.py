"""IAML's training losses. Images are float RGB ``(B, 3, H, W)`` in [0, 1]; feature maps ``(B, C, h, w)``.

- :func:`mse_loss`: mean squared error over all pixels and channels.
- :func:`ssim_loss`: ``1 - SSIM``, differentiable, with the benchmark's SSIM convention (11x11 Gaussian
  window, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, population moments, positions where the window
  fits, mean over channels and positions), so the quantity trained is the one scored.
- Mirror losses between student decoder levels and the stop-gradient teacher levels, each averaged over
  levels: :func:`cosine_mirror_loss` (1 - cosine similarity of the flattened maps),
  :func:`standardised_l2_mirror_loss` (mean squared difference of the standardised maps) and
  :func:`illumination_aware_mirror_loss` (IAML: the same, weighted per pixel by the input's darkness).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cals_bench.train.losses import ssim_per_sample

BT601 = (0.299, 0.587, 0.114)


def mse_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the batch."""
    return F.mse_loss(output, target)


def structural_similarity(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Differentiable mean SSIM over the batch, data range 1 (see the module docstring for the convention)."""
    return ssim_per_sample(output, target).mean()


def ssim_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM(output, target)``, in float32 at least, autocast off: in bf16 the local variances
    ``E[x^2] - E[x]^2`` cancel catastrophically (the loss is quantised to 1/256 and its gradient can be NaN)."""
    dtype = torch.promote_types(output.dtype, torch.float32)
    with torch.autocast(output.device.type, enabled=False):
        return 1.0 - structural_similarity(output.to(dtype), target.to(dtype))


def standardise(f: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each map of the batch minus its mean, over its std (population), both over all of (C, h, w)."""
    flat = f.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1, correction=0).view(-1, 1, 1, 1)
    return (f - mean) / (std + eps)


def luminance_weight(image: torch.Tensor, alpha: float, eps: float = 1e-6) -> torch.Tensor:
    """Per-pixel emphasis ``W = 1 + alpha * (1 - Y_norm)``, ``(B, 1, H, W)``.

    ``Y`` is the BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of the input image and ``Y_norm`` its per-image
    min-max normalisation ``(Y - min) / (max - min + eps)``: the darkest pixel of an image gets ``1 + alpha``,
    the brightest ``1``. No gradient flows through W.
    """
    r, g, b = image.detach().float().unbind(dim=1)
    y = (BT601[0] * r + BT601[1] * g + BT601[2] * b).unsqueeze(1)
    lo = y.flatten(1).amin(dim=1).view(-1, 1, 1, 1)
    hi = y.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    y_norm = (y - lo) / (hi - lo + eps)
    return 1.0 + alpha * (1.0 - y_norm)


def _check_levels(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> None:
    if len(student) != len(teacher) or not student:
        raise ValueError(
            f"expected the same non-zero number of levels, got {len(student)} and {len(teacher)}"
        )
    for s, t in zip(student, teacher):
        if s.shape != t.shape:
            raise ValueError(f"student level {tuple(s.shape)} != teacher level {tuple(t.shape)}")


def illumination_aware_mirror_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    image: torch.Tensor,
    alpha: float,
    eps: float = 1e-5,
) -> torch.Tensor:
    """IAML: mean over levels of ``mean(W_l * (std(s_l) - std(sg(t_l)))**2)``.

    The mean runs over batch, channels and positions; ``W_l`` is :func:`luminance_weight` of the low-light
    ``image`` resized to level l by area averaging; ``sg`` is stop-gradient (the teacher maps are detached).
    """
    _check_levels(student, teacher)
    w = luminance_weight(image, alpha)
    total = image.new_zeros((), dtype=torch.float32)
    for s, t in zip(student, teacher):
        wl = F.interpolate(w, size=s.shape[-2:], mode="area") if w.shape[-2:] != s.shape[-2:] else w
        d = standardise(s.float(), eps) - standardise(t.detach().float(), eps)
        total = total + (wl * d.pow(2)).mean()
    return total / len(student)


def standardised_l2_mirror_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], eps: float = 1e-5
) -> torch.Tensor:
    """Mean over levels of ``mean((std(s_l) - std(sg(t_l)))**2)``: IAML without the illumination weight."""
    _check_levels(student, teacher)
    total = student[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student, teacher):
        total = total + (standardise(s.float(), eps) - standardise(t.detach().float(), eps)).pow(2).mean()
    return total / len(student)


def cosine_mirror_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Mean over levels and images of ``1 - cos(flat(s_l), flat(sg(t_l)))``."""
    _check_levels(student, teacher)
    total = student[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student, teacher):
        cos = F.cosine_similarity(s.float().flatten(1), t.detach().float().flatten(1), dim=1, eps=1e-8)
        total = total + (1.0 - cos).mean()
    return total / len(student)
