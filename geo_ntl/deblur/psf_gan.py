"""The default deblooming method: NTL-Db-Net's prior inside a PSF-explicit, clip-aware solver.

:func:`solve` (scenes, tiled and lazy) and :func:`solve_array` (arrays) run
:class:`geo_ntl.deblur.solver.UnrolledSolver` with the scene's own PSF, then write
what it estimates as an image:

1. **PSF**: measured once per scene by :func:`geo_ntl.psf.estimate_psf` (isolated
   lamps, or the edges of saturated blobs where lamps are too few), or given
   (``psf``, e.g. a ``geo-ntl psf --json`` file). Where too few lamps are found to
   stack a kernel, two documented fallbacks follow, each logged as a warning and
   named in the output's ``GEO_NTL_PSF`` tag, never a silent guess: a Moffat
   profile (beta :data:`~geo_ntl.deblur.solver_pairs.FALLBACK_BETA`) of
   :data:`WIDTH_TO_PSF` of the median width of at least :data:`MIN_WIDTH_LAMPS`
   isolated lamps (``"lamp-widths"``), else a Moffat kernel of FWHM
   :data:`~geo_ntl.deblur.solver_pairs.FALLBACK_FWHM` px (``"fallback"``). A measured
   kernel wider than :data:`MAX_PSF_OVER_LAMPS` times the isolated lamps' median width
   is refused the same way (no PSF is wider than the lamps it blurs) and the lamp-width
   PSF used, with a warning.
2. **Levels**: each band's black level and noise as :mod:`geo_ntl.deblur.physics`
   measures them (once per scene). The solver sees the light above black; light
   below black passes through unchanged.
3. **Clip level**: the GAN's rule (:func:`geo_ntl.deblur.inference._clip_level`):
   full scale for integer data, ``saturation`` when given, a float product's
   ``SATURATION`` tag, else none (float radiance is not clipped at its maximum).
4. **Finish**: the black level added back; an integer output clipped at full
   scale (what lay above it is the light that may leave near clipped pixels); the
   GAN's flux projection (:mod:`geo_ntl.deblur.flux`) at the PSF's scale
   (:func:`flux_sigma_for`; light moves, it is neither created nor removed, except
   within :func:`clip_radius_for` of clipped pixels, and there no more than the
   solver put above full scale); a deficit below 0
   taken from the light around it (:func:`~geo_ntl.deblur.flux.fill_range`), not made
   by a clip; an integer output clipped at full scale; saturated cores held at full scale
   (:mod:`geo_ntl.deblur.cores`); an unbiased ordered dither for integer outputs.
5. **Wide PSFs**: a PSF wider than the prior was trained on (:data:`MAX_FWHM`) is
   solved on block means (:func:`resample_factor`) and the correction interpolated back.

Tiles: the solver runs on each tile with :func:`default_halo` px of context
(its data steps' reach plus a margin for the prior); the flux projection is
a second exact tiled pass. 1-band scenes run as three identical bands and are
merged back as their mean; 2- and 4-band scenes are refused, as for the GAN.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from geo_ntl import defaults
from geo_ntl._raster import as_band_yx, as_band_yx_array, check_dtype, invalid_pixels, like
from geo_ntl.exceptions import ParameterError, PSFEstimationError

log = logging.getLogger(__name__)

__all__ = [
    "METHOD",
    "PSFChoice",
    "default_halo",
    "flux_sigma_for",
    "lamp_width_instead",
    "read_given_psf",
    "resolve_psf",
    "solve",
    "solve_array",
]

#: Name of this method (``geo-ntl deblur --method``).
METHOD = "psf-gan"
#: Tile edge (px, halo excluded): the deblur stage's.
DEFAULT_TILE = defaults.DEBLUR_TILE
#: Floor (DN above black) that keeps every pixel positive for Richardson-Lucy.
_FLOOR = 1e-3


@dataclass(frozen=True)
class PSFChoice:
    """The PSF a scene is solved with, and where it came from.

    Attributes
    ----------
    kernels : (3, k, k) ndarray of float32
        Per-band kernels, each summing to 1.
    fwhm : float
        Mean FWHM (px).
    source : str
        ``"isolated-lamps"``, ``"saturated-edges"`` (a kernel measured by
        :func:`geo_ntl.psf.estimate_psf`), ``"lamp-widths"`` (a Moffat profile of the
        measured width of a few isolated lamps), ``"given"`` or ``"fallback"``.
    n_sources : int
        Lamps or blobs the measurement used (0 when not measured).
    """

    kernels: np.ndarray
    fwhm: float
    source: str
    n_sources: int = 0

    def to_tag(self) -> str:
        """JSON for the output's ``GEO_NTL_PSF`` tag."""
        return json.dumps(
            {
                "source": self.source,
                "fwhm_px": round(self.fwhm, 3),
                "n_sources": self.n_sources,
                "size_px": int(self.kernels.shape[-1]),
            }  # fmt: skip
        )


def read_given_psf(psf: Any) -> tuple[Any, dict[str, Any]]:
    """Read a given PSF now (a bad file fails before any work) and describe it for job signatures.

    Parameters
    ----------
    psf : None, str, os.PathLike, PSFEstimate or ndarray
        A ``geo-ntl psf --json`` file, an estimate, a kernel, or None (measured per scene).

    Returns
    -------
    psf : PSFEstimate, ndarray or None
    params : dict
        ``psf`` (its source: the file, ``"given"`` or ``"per scene"``) and ``psf_fwhm``.
    """
    from geo_ntl.deblur.physics import _kernels
    from geo_ntl.psf import PSFEstimate, profile_fwhm, read_psf

    source: str = "per scene"
    fwhm: Any = "per scene"
    if isinstance(psf, str | os.PathLike):
        source = os.fspath(psf)
        psf = read_psf(psf)
    if isinstance(psf, PSFEstimate):
        fwhm = [round(float(v), 3) for v in psf.fwhm]
        source = source if source != "per scene" else "given"
    elif psf is not None:
        given = np.asarray(psf)
        bands = given.shape[0] if given.ndim == 3 else 1
        fwhm = [round(profile_fwhm(k), 3) for k in _kernels(psf, bands)]
        source = "given"
    return psf, {"psf": source, "psf_fwhm": fwhm}


def resolve_psf(scene: Any, psf: Any = None, *, nodata: float | None = None) -> PSFChoice:
    """Choose the PSF for a scene: given, measured, or the documented fallback (logged).

    Parameters
    ----------
    scene : ndarray or xarray.DataArray
        ``(band, y, x)``.
    psf : PSFEstimate, ndarray, str or os.PathLike, optional
        A given PSF (an estimate, a ``(k, k)`` / ``(bands, k, k)`` kernel, or a
        ``geo-ntl psf --json`` file); default measured on ``scene``.
    nodata : float, optional
        Nodata value of ``scene`` (arrays).
    """
    from geo_ntl.deblur.physics import _kernels
    from geo_ntl.deblur.solver_pairs import FALLBACK_BETA, FALLBACK_FWHM, fallback_kernel
    from geo_ntl.psf import PSFEstimate, estimate_psf, profile_fwhm, read_psf

    if isinstance(psf, str | os.PathLike):
        psf = read_psf(psf)
    if psf is not None:
        kernels = _kernels(psf, 3).astype(np.float32)
        n = psf.n_sources if isinstance(psf, PSFEstimate) else 0
        fwhm = float(np.mean([profile_fwhm(k) for k in kernels]))
        return PSFChoice(kernels, fwhm, "given", n)
    name = getattr(scene, "attrs", {}).get("source", "scene")
    try:
        est = estimate_psf(scene, nodata=nodata) if nodata is not None else estimate_psf(scene)
    except PSFEstimationError as exc:
        reason = str(exc).split(";")[0]
        widths = _lamp_width_psf(scene)
        if widths is not None:
            kernel, n, _ = widths
            fwhm = profile_fwhm(kernel)
            log.warning(
                "%s: no PSF kernel could be stacked (%s); using a Moffat PSF (beta %.1f) of FWHM "
                "%.1f px from the widths of %d isolated lamps -- give the sensor's PSF with "
                "--psf-json for a better result",
                name, reason, FALLBACK_BETA, fwhm, n,
            )  # fmt: skip
            return PSFChoice(np.repeat(kernel[None], 3, axis=0), fwhm, "lamp-widths", n)
        kernel = fallback_kernel()
        log.warning(
            "%s: no PSF could be measured (%s, and fewer than %d isolated lamps); using the "
            "fallback PSF (Moffat, FWHM %.1f px, beta %.1f) -- give the sensor's PSF with "
            "--psf-json for a better result",
            name, reason, MIN_WIDTH_LAMPS, FALLBACK_FWHM, FALLBACK_BETA,
        )  # fmt: skip
        return PSFChoice(np.repeat(kernel[None], 3, axis=0), profile_fwhm(kernel), "fallback")
    swap = lamp_width_instead(scene, est)
    if swap is not None:
        kernel, n, _ = swap
        return PSFChoice(np.repeat(kernel[None], 3, axis=0), profile_fwhm(kernel), "lamp-widths", n)
    kernels = _kernels(est, 3).astype(np.float32)
    return PSFChoice(kernels, float(np.mean(est.fwhm)), est.method, int(est.n_sources))


def lamp_width_instead(scene: Any, est: Any) -> tuple[np.ndarray, int, float] | None:
    """Return the lamp-width PSF where a measured one is wider than the scene's lamps, else None.

    A lamp is the PSF convolved with the lamp, so no PSF is wider than the lamps it blurs; a
    fit wider than :data:`MAX_PSF_OVER_LAMPS` times the isolated lamps' median FWHM is refused
    (logged as a warning) and :func:`_lamp_width_psf`'s kernel, lamp count and width returned.
    Only saturated-edge fits are checked: a kernel stacked from isolated lamps is their width.
    Shared by ``psf-gan`` and ``--method physics``.

    Parameters
    ----------
    scene : ndarray or xarray.DataArray
        ``(band, y, x)``.
    est : geo_ntl.psf.PSFEstimate
        The PSF measured on ``scene``.
    """
    if est.method != "saturated-edges":
        return None
    from geo_ntl.psf import profile_fwhm

    widths = _lamp_width_psf(scene)
    fwhm = float(np.mean(est.fwhm))
    if widths is None or fwhm <= MAX_PSF_OVER_LAMPS * widths[2]:
        return None
    kernel, n, lamp_fwhm = widths
    log.warning(
        "%s: the %s PSF (FWHM %.1f px) is wider than the median isolated lamp (%.1f px, %d "
        "lamps), which no PSF can be; using a Moffat PSF of FWHM %.1f px from the lamps' widths "
        "-- give the sensor's PSF with --psf-json for a better result",
        getattr(scene, "attrs", {}).get("source", "scene"), est.method, fwhm, lamp_fwhm, n,
        profile_fwhm(kernel),
    )  # fmt: skip
    return widths


#: A measured PSF wider than this times the isolated lamps' median FWHM is refused (no PSF is
#: wider than the lamps it blurs; 1.25 leaves room for the width measurement's scatter). ISS
#: Nagoya's saturated-edge fit gave 5.2 px where its 105 isolated lamps are 2.3 px wide.
MAX_PSF_OVER_LAMPS = 1.25
#: Least isolated lamps whose widths make the lamp-width PSF (:func:`_lamp_width_psf`).
MIN_WIDTH_LAMPS = 3
#: Isolation distances (px) tried for the lamp widths, smallest first.
WIDTH_SEPARATIONS = (16, 24, 32, 48, 64)
#: The PSF's FWHM as a share of the isolated lamps' median width (lamps are not points).
WIDTH_TO_PSF = 0.8
_WIDTH_WINDOW = 2048  # edge of the central window the lamp widths are measured on


def _lamp_width_psf(scene: Any) -> tuple[np.ndarray, int, float] | None:
    """Make a Moffat PSF from the median width of the scene's isolated lamps, or None.

    Returns the kernel, the number of lamps and their median FWHM (px).

    The smallest isolation distance whose lamps (at least :data:`MIN_WIDTH_LAMPS`) fit in
    their windows (median FWHM at most the distance: the half maximum well inside) gives the width;
    the PSF's FWHM is :data:`WIDTH_TO_PSF` of it.
    """
    from geo_ntl.deblur.solver_pairs import fallback_kernel
    from geo_ntl.metrics.light import lamp_widths

    _, h, w = scene.shape
    y0, x0 = max(0, (h - _WIDTH_WINDOW) // 2), max(0, (w - _WIDTH_WINDOW) // 2)
    window = np.asarray(scene[:, y0 : y0 + _WIDTH_WINDOW, x0 : x0 + _WIDTH_WINDOW])
    for sep in WIDTH_SEPARATIONS:
        measured = lamp_widths(window, sep=sep)
        if measured["n"] >= MIN_WIDTH_LAMPS and measured["fwhm"] <= sep:
            lamp_fwhm = float(measured["fwhm"])
            return fallback_kernel(WIDTH_TO_PSF * lamp_fwhm), int(measured["n"]), lamp_fwhm
    return None


def default_halo(kernel_size: int, solver: Any) -> int:
    """Halo (px) between tiles: the data steps' reach plus a prior's, a multiple of 8.

    Richardson-Lucy's influence over ``n`` updates spreads about ``0.8 r sqrt(n)``
    (:func:`geo_ntl.deblur.physics.default_halo`, ``r`` the kernel radius, at least 32 px);
    16 px more cover the prior's corrections. Measured with the s12 run's weights at step
    640 (512 px scenes, 128 px tiles): 48 px already kept tiled and whole results within
    1 DN for 19-31 px kernels, where this rule gives 48-72 px.
    """
    from geo_ntl.deblur.physics import default_halo as rl_halo

    reach = rl_halo(kernel_size, solver.stages * solver.iterations) + 16
    return int(8 * math.ceil(reach / 8))


def clip_radius_for(fwhm: float) -> int:
    """Reach (px) around clipped input pixels within which the flux projection lets light go.

    Light may leave a neighbourhood only where the sensor clipped it: the clip-aware data step
    puts the light of a clipped lamp back into its core, above full scale, and an integer
    output cannot hold it there. That happens inside the clipped blob and at its edge, so the
    reach is the PSF's FWHM (at least 2 px). Within it, no more light leaves than the solver
    put above full scale (``removable`` of :func:`~geo_ntl.deblur.flux.conserve_flux`): a
    trained prior that darkened ISS Nagoya beside its few saturated pixels deleted 7.5 % of
    its light without that bound (s12 run, step 4400; 71 % of lit cells within 10 %).

    Examples
    --------
    >>> clip_radius_for(1.5), clip_radius_for(3.6), clip_radius_for(25.0)
    (2, 4, 25)
    """
    return max(2, int(math.ceil(fwhm)))


def flux_sigma_for(fwhm: float) -> float:
    """Scale (px) of psf-gan's flux projection: twice the PSF's FWHM, within 8-16 px.

    Deblurring moves light by about a PSF width, so beyond a few widths every neighbourhood
    keeps its light. The standalone GAN's 16 px let a trained prior carry the light it took
    from ISS Sapporo's dark ground (black level 0, PSF 2.3 px) across 100 m cells: 2 of its 7
    lit cells off by more than 10 % (s12 run, step 4400 at half strength); at 8 px all 7 are
    within 7 %, for -0.2 to +0.2 dB on the simulated families.

    Examples
    --------
    >>> flux_sigma_for(1.8), flux_sigma_for(5.7), flux_sigma_for(25.0)
    (8.0, 11.4, 16.0)
    """
    from geo_ntl.deblur.flux import FLUX_SIGMA

    return float(min(FLUX_SIGMA, max(8.0, 2.0 * fwhm)))


def _output_clip(level: float, dtype: np.dtype) -> float | None:
    """Return the level an output of ``dtype`` clips at: ``level`` for integers, else None."""
    return level if np.dtype(dtype).kind in "ui" and np.isfinite(level) else None


class _Finish:
    """After the flux projection: no light made at 0, none kept above full scale, cores held.

    Where the projection went below 0 the deficit is taken from the light around it
    (:func:`~geo_ntl.deblur.flux.fill_range`) rather than added by a clip at 0; an integer
    output is then clipped at the clip level (light a sharpened lamp puts above full scale is
    lost there, as the sensor lost it: moving it beside the lamp instead re-bloomed point lamps,
    -1.0 dB on the Gaussian + exponential family at the s12 run's step 4400); saturated cores
    are held at the clip level. Needs :attr:`reach` px of halo beyond the projection's.
    """

    def __init__(self, *, level: float, fwhm: float, clip_output: bool) -> None:
        from geo_ntl.deblur.flux import fill_halo

        self.level = level
        self.fwhm = fwhm
        self.clip_output = clip_output
        self.reach = fill_halo()

    def __call__(self, out: np.ndarray, scene: np.ndarray) -> np.ndarray:
        from geo_ntl.deblur.cores import hold_cores
        from geo_ntl.deblur.flux import fill_range

        out = fill_range(out, low=0.0)
        if not np.isfinite(self.level):
            return out
        if self.clip_output:  # an integer output holds no light above full scale
            out = np.minimum(out, self.level)
        return hold_cores(out, scene, level=self.level, fwhm=self.fwhm)


class _SolverRunner:
    """Picklable per-block function: the solver on one extended tile (light, not yet finished)."""

    def __init__(
        self,
        *,
        weights: Any,
        device: str,
        choice: PSFChoice,
        black: np.ndarray,
        sigma: np.ndarray,
        level: float,
        unit: float,
        nodata: float | None,
        bands: int,
    ) -> None:
        self.weights = weights
        self.device = device
        self.choice = choice
        self.black = black
        self.sigma = sigma
        self.level = level
        self.unit = unit
        self.nodata = nodata
        self.bands = bands
        self.factor = resample_factor(choice.fwhm)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        bad = invalid_pixels(block, self.nodata, nonfinite=True)
        x = block.astype(np.float32)  # the solver's precision; float64 only cost copies
        if bad.all():
            return np.zeros((self.bands, *block.shape[1:]), dtype=np.float32)
        if bad.any():  # nearest valid value, so nodata does not ring into its neighbours
            from scipy import ndimage

            idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
            x = x[:, idx[0], idx[1]]
        if self.bands == 1:
            x = np.repeat(x, 3, axis=0)
        black = np.resize(self.black, 3).astype(np.float32)
        above = x - black[:, None, None]
        data = np.maximum(above, 0.0) + np.float32(_FLOOR)
        valid = (~bad).astype(np.float32)
        factor = self.factor
        if factor == 1:
            latent = self._solve_light(data, valid, self.choice.kernels, self.choice.fwhm, black)
        else:  # a PSF wider than the prior was trained on: solve at a coarser sampling
            low = self._solve_light(
                _block_mean(data, factor), _block_mean(valid, factor),
                _coarser_kernels(self.choice.kernels, factor), self.choice.fwhm / factor, black,
            )  # fmt: skip
            correction = _upsample(low - _block_mean(data, factor), factor, data.shape[1:])
            latent = np.maximum(data + correction, 0.0)
        out = latent - np.float32(_FLOOR) + black[:, None, None] + np.minimum(above, 0.0)
        if self.bands == 1:
            out = out.mean(axis=0, keepdims=True)
        out[:, bad] = 0.0
        return out.astype(np.float32)

    def _solve_light(
        self, data: np.ndarray, valid: np.ndarray, kernels: np.ndarray, fwhm: float, black: Any
    ) -> np.ndarray:
        """Run the solver on light above black ``(3, h, w)``; return its estimate (float32)."""
        import torch

        from geo_ntl._device import gpu_slot, resolve_device
        from geo_ntl.deblur.solver import SolverInputs
        from geo_ntl.deblur.weights import get_solver

        dev = resolve_device(self.device)  # where the task runs (a GPU worker, say)
        solver = get_solver(self.weights, device=str(dev))
        level = self.level - black if np.isfinite(self.level) else np.full(3, np.inf)
        unit = np.maximum(self.unit - black, 1e-6)

        def column(v: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(v, np.float32)).view(1, -1, 1, 1).to(dev)

        mask = None  # every pixel measured (the usual tile): no mask, three passes fewer an update
        if valid.min() < 1.0:
            mask = torch.from_numpy(valid.astype(np.float32))[None, None].to(dev)
        inputs = SolverInputs(
            data=torch.from_numpy(data.astype(np.float32))[None].to(dev),
            kernels=torch.from_numpy(np.ascontiguousarray(kernels, np.float32))[None].to(dev),
            level=column(level),
            full_scale=column(unit),
            noise=column([float(np.mean(self.sigma)) / float(np.mean(unit))]),
            fwhm=column([fwhm]),
            valid=mask,
        )
        try:
            with gpu_slot(dev), torch.inference_mode():
                return solver(inputs)[0][0].float().cpu().numpy()
        except torch.OutOfMemoryError as exc:
            from geo_ntl._device import on_out_of_memory

            h, w = data.shape[1:]
            raise on_out_of_memory(exc, what=f"one {h} x {w} px window of the psf-gan solver",
                                   options={"`tile`": "tile"}) from exc  # fmt: skip


#: Widest PSF (FWHM, px) the solver runs at the scene's own sampling: the training range's top.
MAX_FWHM = 12.0


def resample_factor(fwhm: float) -> int:
    """Return the sampling step (1, 2, 4 or 8) that brings a PSF within the trained widths.

    A PSF wider than :data:`MAX_FWHM` (the upscaled real Jilin-1 crop's 25 px, say) is
    solved on block means of ``factor`` x ``factor`` pixels, where its FWHM is
    ``fwhm / factor``; the correction is interpolated back and added to the scene.
    Powers of two, so tiles and halos (multiples of 8) cut the coarse grid alike.

    Examples
    --------
    >>> resample_factor(4.0), resample_factor(13.0), resample_factor(25.0), resample_factor(200.0)
    (1, 2, 4, 8)
    """
    factor = 1
    while fwhm / factor > MAX_FWHM and factor < 8:
        factor *= 2
    return factor


def _block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor`` x ``factor`` blocks of ``(..., h, w)`` (edge-padded to a multiple)."""
    h, w = a.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    pad = [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)]
    a = np.pad(a, pad, mode="edge")
    shape = (*a.shape[:-2], a.shape[-2] // factor, factor, a.shape[-1] // factor, factor)
    return a.reshape(shape).mean(axis=(-3, -1))


def _upsample(a: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear interpolation of block values back to pixels (pixel edges aligned), cropped."""
    from scipy import ndimage

    up = ndimage.zoom(a, (1, factor, factor), order=1, grid_mode=True, mode="nearest")
    return up[:, : shape[0], : shape[1]]


def _coarser_kernels(kernels: np.ndarray, factor: int) -> np.ndarray:
    """Return the PSF on the coarse grid, each band summing to 1.

    Box-averaged over ``factor`` px and sampled every ``factor`` px outwards from its centre,
    so the side stays odd.
    """
    from scipy import ndimage

    centre = kernels.shape[-1] // 2
    reach = centre // factor
    boxed = ndimage.uniform_filter(kernels.astype(np.float64), size=(1, factor, factor),
                                   mode="constant")  # fmt: skip
    idx = centre + factor * np.arange(-reach, reach + 1)
    coarse = boxed[:, idx][:, :, idx]
    return (coarse / coarse.sum(axis=(-2, -1), keepdims=True)).astype(np.float32)


def _levels_and_unit(
    data: Any, dtype: np.dtype, nodata: float | None, saturation: float | None, attrs: Any = None
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Black level and noise per band, the clip level (inf: none) and the prior's full scale.

    The clip level follows the GAN's rule (:func:`geo_ntl.deblur.inference._clip_level`):
    ``saturation`` when given, full scale for integer data (255 for uint8, else the scene's
    maximum), a ``SATURATION`` tag of a float product, else none.
    """
    from geo_ntl.deblur.inference import _clip_level, _scale_for
    from geo_ntl.deblur.physics import _levels

    black, sigma = _levels(data, nodata)
    unit = _scale_for(np.dtype(dtype), data, nodata)
    level = _clip_level(np.dtype(dtype), unit, saturation=saturation, scale_given=False,
                        attrs=attrs)  # fmt: skip
    if np.isfinite(level):
        unit = level
    return black, sigma, level, unit


def _check_bands(n: int) -> None:
    from geo_ntl.deblur.inference import _check_bands as check

    check(n)


def solve_array(
    image: np.ndarray,
    *,
    psf: Any = None,
    weights: str | os.PathLike[str] | None = None,
    device: str | None = "auto",
    saturation: float | None = None,
    nodata: float | None = None,
    halo: int | None = None,
    conserve: bool = True,
    dtype: str | np.dtype | None = None,
) -> np.ndarray:
    """Deblur an image held in memory with the PSF solver (see the module docstring).

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        1 or 3 bands; uint8, uint16, int16 or float.
    psf : PSFEstimate, ndarray, str or os.PathLike, optional
        The PSF; default measured on the image (or the logged fallback).
    weights : str or os.PathLike, optional
        Solver weights: a shipped name or a file from the solver's training; default
        the shipped solver.
    device : str, default "auto"
        Torch device.
    saturation : float, optional
        Clip level (default full scale for integer data: 255 for uint8, else the image's
        maximum; none for float radiance).
    nodata : float, optional
        Nodata value.
    halo : int, optional
        Reflected margin around the image (default :func:`default_halo`).
    conserve : bool, default True
        Apply the flux projection.
    dtype : str or numpy.dtype, optional
        Output dtype; default the input's. ``"float32"`` keeps the light of lamps
        sharpened above full scale (an integer output clips it).

    Returns
    -------
    ndarray
        Same shape as ``image``, in ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> from geo_ntl.simulate.psf import gaussian_psf
    >>> sharp = np.full((3, 96, 96), 4.0)
    >>> sharp[:, 48, 48] = 900.0
    >>> blurred = np.stack([ndimage.convolve(b, gaussian_psf(11, sigma=1.5)) for b in sharp])
    >>> out = solve_array(blurred.astype(np.float32), psf=gaussian_psf(11, sigma=1.5), device="cpu")
    >>> bool(out[0, 48, 48] > 2 * blurred[0, 48, 48]), round(float(out.sum() / blurred.sum()), 2)
    (True, 1.0)
    """
    from geo_ntl._device import resolve_device
    from geo_ntl.deblur.flux import flux_halo
    from geo_ntl.deblur.inference import _FluxProjector
    from geo_ntl.deblur.weights import get_solver
    from geo_ntl.tiling import apply_whole

    arr, squeeze = as_band_yx_array(image)
    _check_bands(arr.shape[0])
    out_dtype = np.dtype(dtype) if dtype is not None else arr.dtype
    dev = str(resolve_device(device))
    solver = get_solver(weights, device=dev)
    choice = resolve_psf(arr, psf, nodata=nodata)
    black, sigma, level, unit = _levels_and_unit(arr, arr.dtype, nodata, saturation)
    runner = _SolverRunner(
        weights=weights, device=dev, choice=choice, black=black, sigma=sigma, level=level,
        unit=unit, nodata=nodata, bands=arr.shape[0],
    )  # fmt: skip
    depth = default_halo(choice.kernels.shape[-1], solver) if halo is None else int(halo)
    restored = apply_whole(arr, runner, halo=depth)
    bad = invalid_pixels(arr, nodata, nonfinite=True)
    finish = _Finish(level=level, fwhm=choice.fwhm, clip_output=out_dtype.kind in "ui")
    if conserve:
        full = level if np.isfinite(level) else unit
        radius, flux_sigma = clip_radius_for(choice.fwhm), flux_sigma_for(choice.fwhm)
        fh = flux_halo(flux_sigma, radius) + finish.reach
        projector = _FluxProjector(
            bands=arr.shape[0], full_scale=full, nodata=nodata, out_dtype=out_dtype, halo=fh,
            clip_radius=radius, finish=finish, clip_level=_output_clip(level, out_dtype),
            sigma=flux_sigma,
        )  # fmt: skip
        stacked = np.concatenate([arr.astype(np.float32), restored.astype(np.float32)])
        out = apply_whole(stacked, projector, halo=fh, bands_out=arr.shape[0])
    else:
        from geo_ntl._raster import to_dtype

        out = to_dtype(finish(restored, arr.astype(np.float64)), out_dtype, nodata, bad)
    if nodata is not None and bad.any():
        out[:, bad] = nodata
    return out[0] if squeeze else out


def _finish_tiled(
    scene: xr.DataArray, restored: xr.DataArray, finish: _Finish, nodata: Any, dtype: np.dtype
) -> xr.DataArray:
    """Run the finish alone (no flux projection), block by block with the scene beside it."""
    import dask.array as dsa

    from geo_ntl._raster import to_dtype
    from geo_ntl.deblur.cores import core_radius
    from geo_ntl.tiling import apply_tiled

    bands = scene.shape[0]
    stacked = dsa.concatenate([scene.data.astype(np.float32), restored.data], axis=0)
    carrier = xr.DataArray(
        stacked.rechunk({0: -1}),
        dims=scene.dims,
        coords={k: v for k, v in scene.coords.items() if "band" not in v.dims},
    )
    carrier = like(carrier, scene, nodata=nodata, attrs=False)

    def run(block: np.ndarray) -> np.ndarray:
        bad = invalid_pixels(block[:bands], nodata, nonfinite=True)
        return to_dtype(finish(block[bands:], block[:bands]), dtype, nodata, bad)

    halo = 8 * math.ceil((core_radius(finish.fwhm) + 1) / 8) + finish.reach
    out = apply_tiled(carrier, run, halo=halo, dtype=dtype, bands_out=bands, name="finish")
    return restored.copy(data=out.data)


def solve(
    da: xr.DataArray,
    *,
    psf: Any = None,
    weights: str | os.PathLike[str] | None = None,
    device: Any = "auto",
    saturation: float | None = None,
    tile: int = DEFAULT_TILE,
    halo: int | None = None,
    conserve: bool = True,
    dtype: str | np.dtype | None = None,
) -> xr.DataArray:
    """Deblur a georeferenced scene with the PSF solver, lazily and tiled.

    Parameters
    ----------
    da : xarray.DataArray
        Scene ``(band, y, x)`` or ``(y, x)``, 1 or 3 bands, numpy- or dask-backed.
    psf, weights, saturation, conserve, dtype
        See :func:`solve_array`.
    device : str or geo_ntl._device.DevicePlan, default "auto"
        Torch device, planned where the tiles run (:func:`geo_ntl._device.plan_device`: on a
        cluster whose workers declare GPUs, the solver's tiles ask for one).
    tile : int, default 2048
        Tile edge in pixels (halo excluded), a multiple of 4.
    halo : int, optional
        Halo between tiles (multiple of 4); default :func:`default_halo`.

    Returns
    -------
    xarray.DataArray
        Lazy result with the input's shape, dtype, dims, coords, CRS, transform,
        attrs and nodata; ``attrs["geo_ntl_psf"]`` says which PSF was used.

    Examples
    --------
    >>> from geo_ntl.testing import make_scene
    >>> scene = make_scene((3, 96, 96), chunks=48)
    >>> out = solve(scene, device="cpu", tile=48)
    >>> out.shape == scene.shape and out.dtype == scene.dtype
    True
    """
    import dask.array as dsa

    from geo_ntl._device import plan_device, resolve_device
    from geo_ntl.deblur.inference import _conserve_tiled
    from geo_ntl.deblur.weights import get_solver
    from geo_ntl.parallel import active_client
    from geo_ntl.tiling import apply_tiled

    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 16 or tile % 4:
        raise ParameterError(f"tile must be a multiple of 4 and >= 16 pixels, got {tile!r}")
    if halo is not None and (isinstance(halo, bool) or not isinstance(halo, int) or halo % 4):
        raise ParameterError(f"halo must be a non-negative multiple of 4 pixels, got {halo!r}")
    da3, squeeze = as_band_yx(da)
    _check_bands(da3.shape[0])
    in_dtype = check_dtype(da3.dtype)
    out_dtype = np.dtype(dtype) if dtype is not None else in_dtype
    plan = plan_device(device)
    here = resolve_device(plan.device) if active_client() is None else "cpu"
    solver = get_solver(weights, device=str(here))  # bad weights fail here, before any tile
    nodata = da3.rio.nodata
    data = da3.data
    if not isinstance(data, dsa.Array):
        data = dsa.from_array(np.asarray(data), chunks=(-1, tile, tile))
    carrier = da3.copy(data=data.rechunk((-1, tile, tile)))
    choice = resolve_psf(da3, psf)
    black, sigma, level, unit = _levels_and_unit(
        carrier.data, in_dtype, nodata, saturation, attrs=da3.attrs
    )
    runner = _SolverRunner(
        weights=weights, device=plan.device, choice=choice, black=black, sigma=sigma,
        level=level, unit=unit, nodata=nodata, bands=da3.shape[0],
    )  # fmt: skip
    depth = default_halo(choice.kernels.shape[-1], solver) if halo is None else int(halo)
    restored = apply_tiled(carrier, runner, halo=depth, dtype=np.float32, name="psfgan",
                           resources=plan.resources)  # fmt: skip
    finish = _Finish(level=level, fwhm=choice.fwhm, clip_output=out_dtype.kind in "ui")
    full = level if np.isfinite(level) else unit
    out = _conserve_tiled(
        carrier, restored, full_scale=full, nodata=nodata, dtype=out_dtype,
        clip_radius=clip_radius_for(choice.fwhm), finish=finish,
        clip_level=_output_clip(level, out_dtype), sigma=flux_sigma_for(choice.fwhm),
    ) if conserve else _finish_tiled(carrier, restored, finish, nodata, out_dtype)  # fmt: skip
    out = like(out, da3)
    out.attrs["geo_ntl_psf"] = choice.to_tag()
    return out.isel(band=0, drop=True) if squeeze else out
