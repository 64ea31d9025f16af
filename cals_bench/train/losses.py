"""Loss terms more than one trainer uses. Images are float RGB ``(B, 3, H, W)`` in [0, 1].

:func:`ssim_per_sample` is the benchmark's SSIM convention (11x11 Gaussian window, sigma 1.5, K1 = 0.01,
K2 = 0.03, population moments, positions where the window fits, mean over channels and positions) at data
range 1, written with differentiable torch convolutions, so the quantity a trainer optimises is the one the
suite scores (``cals_bench.metrics.fidelity.structural_similarity``, which works on the 8-bit grid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cals_bench.metrics.fidelity import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW


def _gaussian_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    half = SSIM_WINDOW // 2
    x = torch.arange(-half, half + 1, device=device, dtype=torch.float64)
    k = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return (k / k.sum()).to(dtype)


def ssim_per_sample(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each image of the batch, shape ``(B,)``, differentiable (data range 1).

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> [round(v, 6) for v in ssim_per_sample(x, x).tolist()]
        [1.0, 1.0]
    """
    _, c, h, w = x.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} images, got {h}x{w}")
    k = _gaussian_window(x.device, x.dtype)
    kx = k.view(1, 1, 1, -1).expand(5 * c, 1, 1, SSIM_WINDOW)
    ky = k.view(1, 1, -1, 1).expand(5 * c, 1, SSIM_WINDOW, 1)
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    filt = F.conv2d(F.conv2d(stacked, kx, groups=5 * c), ky, groups=5 * c)
    mu_x, mu_y, e_xx, e_yy, e_xy = filt.split(c, dim=1)
    var_x, var_y, cov = e_xx - mu_x * mu_x, e_yy - mu_y * mu_y, e_xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)
