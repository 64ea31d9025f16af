"""LIME: low-light image enhancement via illumination map estimation (Guo, Li & Ling, IEEE TIP 2017).

Model card
----------
What it is: a training-free Retinex method. The illumination of each pixel is first estimated as the
maximum of its R, G and B values (``T_hat``); that map is refined by a structure-aware smoothing, and the
enhanced image is the input divided by the gamma-corrected refined illumination, ``L / T ** gamma``.

Paper: X. Guo, Y. Li, H. Ling, "LIME: Low-Light Image Enhancement via Illumination Map Estimation", IEEE
Trans. Image Processing 26(2):982-993, 2017 (doi:10.1109/TIP.2016.2639450). No weights; the code is the
project's own, written from the paper.

What is implemented, in the paper's terms:
- initial map ``T_hat(x) = max_c L^c(x)``;
- refinement ``min_T ||T_hat - T||_F^2 + alpha ||W o grad T||_1`` by the paper's *sped-up solver*: the l1
  term is approximated by ``sum_x sum_{d in h,v} W_d(x) (grad_d T(x))^2 / (|grad_d T_hat(x)| + eps)``, so
  the minimiser solves the sparse symmetric positive definite 5-point system
  ``(I + alpha sum_d D_d^T diag(w~_d) D_d) t = t_hat`` with ``w~_d = W_d / (|grad_d T_hat| + eps)``;
  ``D_h, D_v`` are forward differences, zero (Neumann) past the last column / row. The system is solved by
  a sparse direct solver (SuperLU through ``scipy.sparse.linalg.spsolve``, minimum-degree ordering on
  A + A^T); relative residual ~2e-10 on LOL-v1 images. Preconditioned CG was tried and rejected: the
  coefficients span ~7 orders of magnitude, Jacobi-PCG had not converged after 5000 iterations (4 min), and
  scipy's ILU (pivoting, non-symmetric) is not a valid CG preconditioner (no convergence in 500 steps);
- weighting strategies (``strategy``): I ``W_d = 1``; II ``W_d = 1 / (|grad_d T_hat| + eps)``; III
  (default; the combination "sped-up solver + strategy III" is the one the authors' released demo runs, and
  for which its comments recommend alpha = 0.15)
  ``W_d(x) = sum_{y in Omega(x)} G(x, y) / (|sum_{y in Omega(x)} G(x, y) grad_d T_hat(y)| + eps)`` with
  the Gaussian ``G(x, y) = exp(-||x - y||^2 / (2 sigma^2))``;
- gamma correction of the refined illumination, ``T <- T ** gamma``, and ``R = L / T`` clamped to [0, 1]
  (what a saved 8-bit result holds).

Parameters, all recorded in ``self.args``: alpha 0.15, sigma 2, gamma 0.8 (the paper's values; the
authors' demo script sets gamma 0.7), epsilon 1e-3. Choices the paper leaves open, fixed and recorded here:
the window ``Omega(x)`` is a square of radius ``ceil(3 sigma)`` (13x13 for sigma 2) clipped at the image
border; ``G`` is normalised to sum 1 over the full square, so that in flat areas ``W_d`` tends to
``1 / eps`` as in strategy II; the refined map is floored at ``epsilon`` before the gamma so that the
division is finite at black pixels (``T_hat = 0``).

Deviations: the optional post-processing step (BM3D denoising of the Y channel, recomposed with the refined
illumination as weight) is left out. Published LIME numbers on LOL-v1 come from several implementations
(the authors' MATLAB release with or without BM3D, or a widely circulated MATLAB re-implementation that adds
0.02 to the initial map and uses relative-total-variation weights), so they are not expected to match ours
to the decimal.

Images: float32 RGB ``(B, 3, H, W)`` in [0, 1]; each image is processed on its own, in float64, on the
CPU (about 2 s for 600x400, dominated by the sparse factorisation).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from scipy import ndimage

from cals_bench.enhancer import Enhancer, register_enhancer
from cals_bench.errors import CalsBenchError

STRATEGIES = (1, 2, 3)


def initial_illumination(rgb: np.ndarray) -> np.ndarray:
    """The paper's initial map ``T_hat(x) = max_c L^c(x)``: float ``(H, W, 3)`` in [0, 1] -> ``(H, W)``."""
    return np.asarray(rgb, dtype=np.float64).max(axis=2)


def forward_gradients(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical forward differences of an ``(H, W)`` map, zero past the last column / row."""
    gh = np.zeros_like(t, dtype=np.float64)
    gv = np.zeros_like(t, dtype=np.float64)
    gh[:, :-1] = t[:, 1:] - t[:, :-1]
    gv[:-1, :] = t[1:, :] - t[:-1, :]
    return gh, gv


def gaussian_window_1d(sigma: float, radius: int) -> np.ndarray:
    """1-D factor of the window Gaussian: ``exp(-r^2 / (2 sigma^2))`` on ``2 radius + 1`` taps, sum 1.

    The 2-D window ``G(x, y) = exp(-||x - y||^2 / (2 sigma^2))`` (normalised over the full square) is the
    outer product of two of these.

    >>> w = gaussian_window_1d(2.0, 3)
    >>> len(w), round(float(w.sum()), 12), bool(w[3] == w.max()), bool(w[0] == w[-1])
    (7, 1.0, True, True)
    """
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return g / g.sum()


def structure_weights(
    t_hat: np.ndarray,
    *,
    strategy: int = 3,
    sigma: float = 2.0,
    epsilon: float = 1e-3,
    radius: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's weight maps ``(W_h, W_v)`` for an ``(H, W)`` initial map (strategy I, II or III).

    Strategy III sums over the window clipped to the image (zero padding of the sums, not of the map).
    """
    gh, gv = forward_gradients(t_hat)
    if strategy == 1:
        return np.ones_like(gh), np.ones_like(gv)
    if strategy == 2:
        return 1.0 / (np.abs(gh) + epsilon), 1.0 / (np.abs(gv) + epsilon)
    if strategy != 3:
        raise CalsBenchError(f"lime: strategy must be one of {STRATEGIES}, got {strategy!r}")
    radius = math.ceil(3 * sigma) if radius is None else int(radius)
    g = gaussian_window_1d(sigma, radius)

    def window_sum(a: np.ndarray) -> np.ndarray:  # sum_{y in Omega(x), inside the image} G(x, y) a(y)
        a = ndimage.correlate1d(a, g, axis=0, mode="constant", cval=0.0)
        return ndimage.correlate1d(a, g, axis=1, mode="constant", cval=0.0)

    mass = window_sum(np.ones_like(t_hat, dtype=np.float64))
    return mass / (np.abs(window_sum(gh)) + epsilon), mass / (np.abs(window_sum(gv)) + epsilon)


def smoothness_coefficients(
    t_hat: np.ndarray,
    *,
    strategy: int = 3,
    sigma: float = 2.0,
    epsilon: float = 1e-3,
    radius: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``w~_d = W_d / (|grad_d T_hat| + eps)`` (``(H, W)`` each), zero where the forward difference leaves the
    image (last column for h, last row for v), so the sped-up term is ``sum w~_d (grad_d T)^2``."""
    wh, wv = structure_weights(t_hat, strategy=strategy, sigma=sigma, epsilon=epsilon, radius=radius)
    gh, gv = forward_gradients(t_hat)
    ah = wh / (np.abs(gh) + epsilon)
    av = wv / (np.abs(gv) + epsilon)
    ah[:, -1] = 0.0
    av[-1, :] = 0.0
    return ah, av


def illumination_system(ah: np.ndarray, av: np.ndarray, alpha: float) -> sp.csc_matrix:
    """The sped-up solver's matrix ``I + alpha * (D_h^T diag(ah) D_h + D_v^T diag(av) D_v)``.

    Unknowns are the ``(H, W)`` map flattened row-major (index ``i * W + j``). The matrix is symmetric,
    strictly diagonally dominant with a positive diagonal (hence positive definite), and its rows sum to 1.
    """
    h, w = ah.shape
    eh = alpha * ah.ravel()  # coupling between (i, j) and (i, j + 1)
    ev = alpha * av.ravel()  # coupling between (i, j) and (i + 1, j)
    diag = 1.0 + eh + ev
    diag[1:] += eh[:-1]
    diag[w:] += ev[:-w]
    bands, offsets = [diag], [0]
    if w > 1:  # a single column has no horizontal coupling (and offset 1 would repeat the vertical one)
        bands += [-eh[:-1], -eh[:-1]]
        offsets += [1, -1]
    if h > 1:
        bands += [-ev[:-w], -ev[:-w]]
        offsets += [w, -w]
    n = h * w
    return sp.diags(bands, offsets, shape=(n, n), format="csc")


def sped_up_objective(
    t: np.ndarray, t_hat: np.ndarray, ah: np.ndarray, av: np.ndarray, alpha: float
) -> float:
    """The quadratic objective the sped-up solver minimises.

    ``||T_hat - T||^2 + alpha sum_d w~_d (grad_d T)^2`` for ``(H, W)`` maps ``t`` and ``t_hat``.
    """
    gh, gv = forward_gradients(t)
    return float(np.sum((t_hat - t) ** 2) + alpha * (np.sum(ah * gh**2) + np.sum(av * gv**2)))


def refine_illumination(
    t_hat: np.ndarray,
    *,
    alpha: float = 0.15,
    strategy: int = 3,
    sigma: float = 2.0,
    epsilon: float = 1e-3,
    radius: int | None = None,
) -> np.ndarray:
    """Solve the sped-up system for the refined illumination ``T`` ``(H, W)`` (float64, not floored)."""
    ah, av = smoothness_coefficients(t_hat, strategy=strategy, sigma=sigma, epsilon=epsilon, radius=radius)
    a = illumination_system(ah, av, alpha)
    t = spla.spsolve(a, t_hat.ravel().astype(np.float64), permc_spec="MMD_AT_PLUS_A")
    return np.asarray(t).reshape(t_hat.shape)


def lime_enhance(
    rgb: np.ndarray,
    *,
    alpha: float = 0.15,
    gamma: float = 0.8,
    strategy: int = 3,
    sigma: float = 2.0,
    epsilon: float = 1e-3,
    radius: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """LIME on one image: float ``(H, W, 3)`` in [0, 1] -> (enhanced ``(H, W, 3)`` in [0, 1], ``T``).

    ``T`` is the refined map floored at ``epsilon`` and gamma-corrected: exactly what the input is divided by.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    t_ref = refine_illumination(
        initial_illumination(rgb), alpha=alpha, strategy=strategy, sigma=sigma, epsilon=epsilon, radius=radius
    )
    t = np.maximum(t_ref, epsilon) ** gamma
    return np.clip(rgb / t[..., None], 0.0, 1.0), t


@register_enhancer("lime")
class Lime(Enhancer):
    """LIME (Guo, Li & Ling, TIP 2017), sped-up solver, no BM3D. The module docstring is the model card."""

    summary = "LIME: max-RGB illumination refined by the sped-up structure-aware solver, gamma 0.8 (no BM3D)"
    paper = "Guo, Li & Ling, LIME: Low-Light Image Enhancement via Illumination Map Estimation, IEEE TIP 2017"
    licence = "no weights (training-free method)"

    def __init__(
        self,
        *,
        alpha: float = 0.15,
        gamma: float = 0.8,
        sigma: float = 2.0,
        epsilon: float = 1e-3,
        strategy: int = 3,
        radius: int | None = None,
    ) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.sigma = float(sigma)
        self.epsilon = float(epsilon)
        if strategy not in STRATEGIES:
            raise CalsBenchError(f"lime: strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.strategy = int(strategy)
        if not (self.alpha > 0 and self.gamma > 0 and self.sigma > 0 and self.epsilon > 0):
            raise CalsBenchError("lime: alpha, gamma, sigma and epsilon must all be > 0")
        self.radius = math.ceil(3 * self.sigma) if radius is None else int(radius)
        if self.radius < 0:
            raise CalsBenchError(f"lime: radius must be >= 0, got {radius}")
        self.args.update(
            alpha=self.alpha,
            gamma=self.gamma,
            sigma=self.sigma,
            epsilon=self.epsilon,
            strategy=self.strategy,
            radius=self.radius,
            solver="sped-up (sparse direct, SuperLU MMD_AT_PLUS_A)",
            initial_illumination="max_rgb",
            denoise="none (BM3D post-processing left out)",
        )

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 RGB ``(B, 3, H, W)`` in [0, 1] -> same shape and range; loops over the batch."""
        out = []
        for img in x:
            rgb = img.detach().to(torch.float64).permute(1, 2, 0).cpu().numpy()
            res, _ = lime_enhance(
                rgb,
                alpha=self.alpha,
                gamma=self.gamma,
                strategy=self.strategy,
                sigma=self.sigma,
                epsilon=self.epsilon,
                radius=self.radius,
            )
            out.append(torch.from_numpy(np.ascontiguousarray(res)).permute(2, 0, 1))
        return torch.stack(out).to(device=x.device, dtype=torch.float32)
