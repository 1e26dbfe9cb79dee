"""Saturated lamps stay lamps: hold the core of every clipped blob at full scale.

A pixel the sensor clipped says only that its light was at least full scale. The
*edge* of a clipped blob may be blooming (the truth's lamp is smaller than the
blob), but its *core* -- the clipped pixels more than the PSF's half width at half
maximum inside the blob -- was lit at least to full scale by the lamp itself: a
restoration that writes it grey (as a network hedging its squared error does)
removes the highlight a user looks for. :func:`core_mask` finds those pixels (per
band: the blob's clipped pixels eroded by a square of radius ``max(1,
round(HWHM))``, :func:`core_radius`). :func:`hold_cores` / :func:`hold_cores_torch`
raise the output to full scale on a larger core, eroded by half that radius
(:func:`hold_radius`), because the PSF they know is an estimate. The same rule runs
in training and at inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    import torch

__all__ = [
    "CLIPPED_FRACTION",
    "core_radius",
    "core_mask",
    "hold_cores",
    "hold_cores_torch",
    "hold_radius",
]

#: A pixel at this fraction of the clip level or above counts as clipped (JPEG-compressed
#: scenes hold their clipped blobs at 250-255 DN, not all at 255). The flux projection's
#: saturation threshold (:data:`geo_ntl.deblur.flux.SATURATION`).
CLIPPED_FRACTION = 250.0 / 255.0


def core_radius(fwhm: float) -> int:
    """Erosion radius (px) of a clipped blob's core: the PSF's HWHM, rounded, at least 1.

    Examples
    --------
    >>> core_radius(1.5), core_radius(4.0), core_radius(9.4)
    (1, 2, 5)
    """
    return max(1, int(round(0.5 * float(fwhm))))


def hold_radius(fwhm: float) -> int:
    """Erosion radius (px) of the cores a restoration holds: half :func:`core_radius`, at least 1.

    The PSF is an estimate; holding the blob eroded by half its HWHM keeps every pixel of the
    cores :func:`core_radius` defines (those of the benchmark's criterion) at full scale even
    where the estimate is up to twice too wide.

    Examples
    --------
    >>> hold_radius(1.5), hold_radius(3.6), hold_radius(9.4)
    (1, 1, 2)
    """
    return max(1, int(round(0.25 * float(fwhm))))


def core_mask(clipped: np.ndarray, fwhm: float, *, radius: int | None = None) -> np.ndarray:
    """Per band, the clipped pixels whose whole ``radius`` square is clipped.

    Parameters
    ----------
    clipped : (band, y, x) ndarray of bool
        Pixels at the clip level.
    fwhm : float
        The PSF's FWHM (px).
    radius : int, optional
        Erosion radius; default :func:`core_radius` of ``fwhm``.

    Examples
    --------
    >>> m = np.zeros((1, 9, 9), bool)
    >>> m[0, 2:7, 2:7] = True
    >>> int(core_mask(m, 2.0).sum())  # a 5 x 5 blob, radius 1: its 3 x 3 centre
    9
    """
    size = 2 * (core_radius(fwhm) if radius is None else radius) + 1
    return ndimage.minimum_filter(
        np.asarray(clipped, dtype=bool), size=(1, size, size), mode="nearest"
    )


def hold_cores(
    output: np.ndarray, scene: np.ndarray, *, level: np.ndarray | float, fwhm: float
) -> np.ndarray:
    """Raise ``output`` to ``level`` on the cores of the scene's clipped blobs (per band).

    Parameters
    ----------
    output, scene : (band, y, x) ndarray
        The restoration and its input, in the same units.
    level : float or (band,) ndarray
        Clip level; pixels of ``scene`` at :data:`CLIPPED_FRACTION` of it or above are clipped.
    fwhm : float
        The PSF's FWHM (px).

    Returns
    -------
    ndarray
        ``output`` with its cores at ``level`` (at least).
    """
    lvl = np.broadcast_to(np.asarray(level, dtype=np.float64), (scene.shape[0],))
    clipped = scene >= CLIPPED_FRACTION * lvl[:, None, None]
    if not clipped.any():
        return output
    core = core_mask(clipped, fwhm, radius=hold_radius(fwhm))
    held = np.maximum(output, lvl[:, None, None].astype(output.dtype))
    return np.where(core, held, output)


def hold_cores_torch(
    output: torch.Tensor, scene: torch.Tensor, *, level: torch.Tensor, fwhm: torch.Tensor
) -> torch.Tensor:
    """:func:`hold_cores` of a batch ``(N, band, y, x)`` (``level`` broadcast, ``fwhm`` ``(N,)``)."""
    import torch
    import torch.nn.functional as F

    clipped = (scene >= CLIPPED_FRACTION * level).to(output.dtype)
    out = []
    for i in range(output.shape[0]):
        r = hold_radius(float(fwhm[i]))
        core = -F.max_pool2d(
            -F.pad(clipped[i : i + 1], (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1
        )
        lvl = level[i : i + 1] if level.shape[0] > 1 else level
        out.append(
            torch.where(core > 0.5, torch.maximum(output[i : i + 1], lvl), output[i : i + 1])
        )
    return torch.cat(out)
