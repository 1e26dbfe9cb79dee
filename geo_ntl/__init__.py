"""geo_ntl: clean and analyse high-resolution night-time-light imagery.

The package reads georeferenced scenes lazily (:func:`geo_ntl.io.open_scene`),
runs restoration stages tile by tile with overlapping windows
(:func:`geo_ntl.tiling.apply_tiled`) and writes Cloud-Optimized GeoTIFFs
(:func:`geo_ntl.io.write_cog`); :func:`geo_ntl.pipeline.restore_scenes` does all
three over many scenes, resumably. Names are imported on first use, so
``import geo_ntl`` and ``geo-ntl --help`` stay fast; torch and PySAL load only
with the stages that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

from geo_ntl._version import __version__

_LAZY = {
    "open_scene": "geo_ntl.io",
    "write_cog": "geo_ntl.io",
    "scene_info": "geo_ntl.io",
    "apply_tiled": "geo_ntl.tiling",
    "apply_whole": "geo_ntl.tiling",
    "sample_aoi": "geo_ntl.sample_data",
    "sample_aoi_path": "geo_ntl.sample_data",
    "restore_scenes": "geo_ntl.pipeline",
    "zonal": "geo_ntl.spatial.zones",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geo_ntl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
