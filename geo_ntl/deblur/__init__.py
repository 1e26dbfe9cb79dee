"""Deblooming: NTL-Db-Net inside a PSF-explicit, clip-aware solver; the standalone GAN; physics.

Importing this package does not import torch; the torch modules
(:mod:`~geo_ntl.deblur.model`, :mod:`~geo_ntl.deblur.solver`,
:mod:`~geo_ntl.deblur.losses`, :mod:`~geo_ntl.deblur.train`) load when used.

Public API: :func:`deblur` (georeferenced scene, tiled, light conserved; ``method``
``"psf-gan"`` by default, ``"gan-direct"`` or ``"physics"``, see
:mod:`geo_ntl.deblur.methods`; for the ASM enhancer after it see
:func:`geo_ntl.pipeline.restore_scenes`), :func:`deblur_array` (in-memory array),
:func:`get_model`, :func:`list_models` (shipped weights registry); the physics
baseline :func:`deconvolve` / :func:`deconvolve_array` (Richardson-Lucy with the
scene's own PSF, :mod:`geo_ntl.deblur.physics`).
"""

from geo_ntl.deblur.inference import DEFAULT_HALO, DEFAULT_TILE
from geo_ntl.deblur.methods import DEFAULT_METHOD, METHODS, deblur, deblur_array
from geo_ntl.deblur.physics import deconvolve, deconvolve_array
from geo_ntl.deblur.weights import (
    DEFAULT_SOLVER_WEIGHTS,
    DEFAULT_WEIGHTS,
    get_meta,
    get_model,
    get_solver,
    list_models,
)

__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_METHOD",
    "DEFAULT_SOLVER_WEIGHTS",
    "DEFAULT_TILE",
    "DEFAULT_WEIGHTS",
    "METHODS",
    "deblur",
    "deblur_array",
    "deconvolve",
    "deconvolve_array",
    "get_meta",
    "get_model",
    "get_solver",
    "list_models",
]
