"""Padding an image batch up to a size multiple: the one rule the engine and the models share.

A model whose network needs H and W divisible by some number (``Enhancer.pad_multiple``) gets its input
reflect-padded at the bottom and right up to the next multiple, and its output cropped back to the input's
size. Replicate padding is used only where a side is too short to reflect (reflection needs fewer padded
rows than the image has).

>>> import torch
>>> x = torch.arange(9.0).reshape(1, 1, 3, 3)
>>> pad_to_multiple(x, 4)[0, 0]  # one row and one column reflected
tensor([[0., 1., 2., 1.],
        [3., 4., 5., 4.],
        [6., 7., 8., 7.],
        [3., 4., 5., 4.]])
>>> pad_to_multiple(torch.tensor([[[[0.0, 1.0]]]]), 2)[0, 0]  # one row cannot reflect: replicated
tensor([[0., 1.],
        [0., 1.]])
>>> pad_to_multiple(x, 3) is x
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``x`` (``(..., H, W)``) padded at the bottom/right up to multiples of ``multiple``; ``x`` itself when
    H and W already are. Crop a result back with ``out[..., :H, :W]``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
