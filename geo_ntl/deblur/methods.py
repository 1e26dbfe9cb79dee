"""The deblooming methods behind one interface: names, checks and dispatch.

Three methods remove blooming; :func:`deblur` and :func:`deblur_array` run any of
them, and the pipeline (``geo-ntl deblur --method``), the benchmarks and the
training judge them by the same names:

``"psf-gan"`` (the default)
    NTL-Db-Net's generator blocks as the learned prior of an unrolled,
    PSF-explicit, clip-aware solver (:mod:`geo_ntl.deblur.psf_gan`): the scene's
    own PSF is given to the model instead of guessed.
``"gan-direct"``
    The seed paper's standalone NTL-Db-Net generator
    (:mod:`geo_ntl.deblur.inference`), kept for comparison. ``"gan"`` is its
    earlier name and still accepted.
``"physics"``
    Masked Richardson-Lucy with the scene's own PSF
    (:mod:`geo_ntl.deblur.physics`): the data step alone, no learned part.

Every method keeps the input's shape, dtype, CRS, transform and nodata.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from geo_ntl.exceptions import ParameterError

__all__ = ["DEFAULT_METHOD", "METHODS", "canonical_method", "deblur", "deblur_array"]

#: The method names, the default first.
METHODS = ("psf-gan", "gan-direct", "physics")
#: The method of ``geo-ntl deblur`` and :func:`deblur` when none is named.
DEFAULT_METHOD = "psf-gan"
#: Earlier names still accepted.
ALIASES = {"gan": "gan-direct"}
#: Options each method takes (beyond the scene): what :func:`deblur` passes on.
_OPTIONS = {
    "psf-gan": {"psf", "weights", "device", "saturation", "tile", "halo", "conserve"},
    "gan-direct": {"weights", "device", "tile", "halo", "batch_size", "scale", "conserve"},
    "physics": {"psf", "iterations", "damping", "saturation", "tile", "halo", "dtype"},
}


def canonical_method(name: str) -> str:
    """Return a method's name, resolving earlier names; raise for an unknown one.

    Examples
    --------
    >>> canonical_method("gan"), canonical_method("psf-gan")
    ('gan-direct', 'psf-gan')
    """
    resolved = ALIASES.get(name, name)
    if resolved not in METHODS:
        raise ParameterError(
            f"unknown deblooming method {name!r}; choose one of {', '.join(METHODS)}"
        )
    return resolved


def _check_options(method: str, options: dict[str, Any]) -> None:
    extra = sorted(k for k, v in options.items() if v is not None and k not in _OPTIONS[method])
    if extra:
        takes = [m for m in METHODS if set(extra) <= _OPTIONS[m]]
        hint = f" (they apply to method={takes[0]!r})" if takes else ""
        raise ParameterError(f"{', '.join(extra)} do not apply to method={method!r}{hint}")


def deblur(da: xr.DataArray, *, method: str = DEFAULT_METHOD, **options: Any) -> xr.DataArray:
    """Remove blooming from a georeferenced scene, lazily and tiled.

    Parameters
    ----------
    da : xarray.DataArray
        Scene ``(band, y, x)`` or ``(y, x)``.
    method : {"psf-gan", "gan-direct", "physics"}, default "psf-gan"
        See the module docstring.
    **options
        The method's options: :func:`geo_ntl.deblur.psf_gan.solve`,
        :func:`geo_ntl.deblur.inference.deblur` or
        :func:`geo_ntl.deblur.physics.deconvolve`.

    Returns
    -------
    xarray.DataArray

    Raises
    ------
    ParameterError
        For an unknown method or an option it does not take.

    Examples
    --------
    >>> from geo_ntl.testing import make_scene
    >>> scene = make_scene((3, 64, 64))
    >>> out = deblur(scene, method="gan-direct", device="cpu", tile=32)
    >>> out.shape == scene.shape and out.dtype == scene.dtype
    True
    """
    name = canonical_method(method)
    _check_options(name, options)
    kept = {k: v for k, v in options.items() if v is not None}
    if name == "psf-gan":
        from geo_ntl.deblur.psf_gan import solve

        return solve(da, **kept)
    if name == "gan-direct":
        from geo_ntl.deblur.inference import deblur as gan_deblur

        return gan_deblur(da, **kept)
    from geo_ntl.deblur.physics import deconvolve

    return deconvolve(da, **kept)


def deblur_array(image: np.ndarray, *, method: str = DEFAULT_METHOD, **options: Any) -> np.ndarray:
    """Remove blooming from an image held in memory (see :func:`deblur`).

    Examples
    --------
    >>> img = np.zeros((3, 64, 64), dtype=np.uint8)
    >>> deblur_array(img, method="gan-direct", device="cpu").shape
    (3, 64, 64)
    """
    name = canonical_method(method)
    kept = {k: v for k, v in options.items() if v is not None}
    if name == "psf-gan":
        from geo_ntl.deblur.psf_gan import solve_array

        return solve_array(image, **kept)
    if name == "gan-direct":
        from geo_ntl.deblur.inference import deblur_array as gan_deblur_array

        return gan_deblur_array(image, **kept)
    from geo_ntl.deblur.physics import deconvolve_array

    psf = kept.pop("psf", None)
    if psf is None:
        from geo_ntl.psf import estimate_psf

        psf = estimate_psf(image, nodata=kept.get("nodata"))
    return deconvolve_array(image, psf, **kept)
