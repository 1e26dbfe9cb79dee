"""The deblooming GAN (NTL-Db-Net): model, blur-transfer training, weights, inference.

Importing this package does not import torch; the torch modules
(:mod:`~geo_ntl.deblur.model`, :mod:`~geo_ntl.deblur.losses`,
:mod:`~geo_ntl.deblur.train`) load when used.

Public API: :func:`deblur` (georeferenced scene, tiled, light conserved; for the
ASM enhancer after it see :func:`geo_ntl.pipeline.restore_scenes`),
:func:`deblur_array` (in-memory array), :func:`get_model`, :func:`list_models`
(shipped weights registry); the physics baseline :func:`deconvolve` /
:func:`deconvolve_array` (Richardson-Lucy with the scene's own PSF,
:mod:`geo_ntl.deblur.physics`).
"""

from geo_ntl.deblur.inference import DEFAULT_HALO, DEFAULT_TILE, deblur, deblur_array
from geo_ntl.deblur.physics import deconvolve, deconvolve_array
from geo_ntl.deblur.weights import DEFAULT_WEIGHTS, get_meta, get_model, list_models

__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_TILE",
    "DEFAULT_WEIGHTS",
    "deblur",
    "deblur_array",
    "deconvolve",
    "deconvolve_array",
    "get_meta",
    "get_model",
    "list_models",
]
