"""Torch building blocks of the enhancer: filters, resampling and difference operators.

Every operator here treats the array edge as a half-sample symmetric mirror
(``numpy.pad(mode="symmetric")``), the reflection the tiled engine uses at scene
edges, so running on an unpadded array and on an array extended by symmetric
reflection give the same values inside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sym_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Return indices into an axis of length ``n`` realising a symmetric pad (any pad width)."""
    idx = torch.arange(-before, n + after, device=device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - 1 - idx, idx)


def sym_pad(x: torch.Tensor, py: int, px: int) -> torch.Tensor:
    """Symmetric pad of the last two axes by ``py`` rows and ``px`` columns on each side."""
    if py:
        x = x.index_select(-2, sym_index(x.shape[-2], py, py, x.device))
    if px:
        x = x.index_select(-1, sym_index(x.shape[-1], px, px, x.device))
    return x


def _box_1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Mean over a window of ``2r+1`` along ``dim`` (symmetric edges), via a cumulative sum."""
    n = x.shape[dim]
    idx = sym_index(n, r + 1, r, x.device)
    xp = x.index_select(dim, idx)
    c = xp.cumsum(dim)
    upper = c.narrow(dim, 2 * r + 1, n)
    lower = c.narrow(dim, 0, n)
    return (upper - lower) / (2 * r + 1)


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a ``(2r+1)^2`` window on the last two axes."""
    if r <= 0:
        return x
    return _box_1d(_box_1d(x, r, -1), r, -2)


def gaussian_radius(sigma: float) -> int:
    """Return the truncation radius (3 sigma) of the Gaussian kernels."""
    return int(math.ceil(3.0 * sigma)) if sigma > 0 else 0


def gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of the last two axes of a ``(..., h, w)`` tensor."""
    r = gaussian_radius(sigma)
    if r == 0:
        return x
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    shape = x.shape
    y = sym_pad(x.reshape(-1, 1, shape[-2], shape[-1]), r, r)
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(shape)


def cell_mean(x: torch.Tensor, cell: int) -> torch.Tensor:
    """Mean over ``cell x cell`` blocks of a ``(c, h, w)`` tensor (h, w multiples of cell)."""
    if cell == 1:
        return x
    return F.avg_pool2d(x.unsqueeze(0), cell).squeeze(0)


def upsample(x: torch.Tensor, cell: int) -> torch.Tensor:
    """Bilinear interpolation from cell centres to pixel centres (edges clamped = symmetric)."""
    if cell == 1:
        return x
    return F.interpolate(
        x.unsqueeze(0), scale_factor=cell, mode="bilinear", align_corners=False
    ).squeeze(0)


def grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along x and y with a zero last difference (Neumann)."""
    gx = torch.zeros_like(x)
    gy = torch.zeros_like(x)
    torch.sub(x[..., :, 1:], x[..., :, :-1], out=gx[..., :, :-1])
    torch.sub(x[..., 1:, :], x[..., :-1, :], out=gy[..., :-1, :])
    return gx, gy


def grad_t(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Adjoint G^T of :func:`grad` (minus the divergence); the last difference must be zero."""
    out = F.pad(gx, (1, 0))[..., :, :-1] - gx
    out += F.pad(gy, (0, 0, 1, 0))[..., :-1, :]
    out -= gy
    return out


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """``G^T G x``: the 5-point Neumann Laplacian (positive semi-definite sign)."""
    return grad_t(*grad(x))


def degree(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Count the 4-neighbours of every pixel of an ``h x w`` grid (the diagonal of G^T G)."""
    d = torch.full((h, w), 4.0, device=device)
    d[0, :] -= 1
    d[-1, :] -= 1
    d[:, 0] -= 1
    d[:, -1] -= 1
    return d


def soft_clip(v: torch.Tensor, tau: float) -> torch.Tensor:
    """``clip(v, -tau, tau)`` = v - shrink(v, tau): the residual of soft thresholding."""
    return v.clamp(-tau, tau)
