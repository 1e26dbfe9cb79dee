"""Roads and permeable surfaces for the clustering, read from an OpenStreetMap extract.

The extract (``.osm.pbf``, e.g. a city or region from download.geofabrik.de or
BBBike) is read with pyrosm (the ``osm`` extra) within the scene's
longitude/latitude bounds, with the rules that built the sample AOI's layers:

- roads: every ``highway`` way of pyrosm's ``"all"`` network -- all classes
  except abandoned, construction, no, planned, platform, proposed, raceway,
  razed, rest_area and services, and except areas (``area=yes``) -- less ways in
  tunnels (``tunnel`` = yes, building_passage, culvert), which are hidden from above;
- permeable surfaces: polygons tagged as in
  :data:`geo_ntl.simulate.osm.PERMEABLE_TAGS` (landuse, natural, leisure), plus sea
  cut from the scene's box by ``natural=coastline`` ways.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from geo_ntl.exceptions import SceneNotFoundError, VectorDataError

__all__ = ["OSM_MARGIN_M", "osm_layers"]

#: Margin in metres added around the scene when reading the extract (roads crossing its edge).
OSM_MARGIN_M = 200.0


def osm_layers(path: str | os.PathLike[str], *, footprint: Any, crs: Any) -> tuple[Any, Any]:
    """Read the roads and permeable surfaces of an OSM extract within a scene.

    Parameters
    ----------
    path : str or os.PathLike
        OpenStreetMap ``.osm.pbf`` extract.
    footprint : shapely geometry
        The scene's outline in ``crs``.
    crs : CRS
        Projected CRS in metres of ``footprint`` and of the returned layers.

    Returns
    -------
    roads, permeable : geopandas.GeoDataFrame
        Road lines (``highway``) and permeable polygons (``kind``), in ``crs``.

    Raises
    ------
    MissingDependencyError
        If pyrosm is not installed.
    SceneNotFoundError
        If ``path`` does not exist.
    VectorDataError
        If the file cannot be read, or holds no roads within the scene (it does not overlap it).
    """
    import geopandas as gpd
    import shapely

    from geo_ntl.simulate.osm import _pyrosm, permeable_from, roads_from_network

    pyrosm = _pyrosm()
    if not os.path.exists(path):
        raise SceneNotFoundError(f"the OSM extract {path} does not exist; check the path")
    area = gpd.GeoSeries([footprint.buffer(OSM_MARGIN_M)], crs=crs).to_crs("EPSG:4326")
    west, south, east, north = (float(v) for v in area.total_bounds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            osm = pyrosm.OSM(os.fspath(path), bounding_box=[west, south, east, north])
            network = osm.get_network(network_type="all")
        except Exception as exc:  # pyrosm raises several errors for files that are not PBF
            raise VectorDataError(
                f"cannot read {path} as an OpenStreetMap .osm.pbf extract ({exc}); "
                "give a PBF file, e.g. from download.geofabrik.de"
            ) from exc
        if network is None or len(network) == 0:
            raise VectorDataError(
                f"the OSM extract {path} holds no roads within the scene (longitude "
                f"{west:.4f} to {east:.4f}, latitude {south:.4f} to {north:.4f}): it does not "
                "overlap the scene; use an extract that covers it"
            )
        landuse = osm.get_landuse()
        natural = osm.get_natural()
        leisure = osm.get_data_by_custom_criteria(custom_filter={"leisure": True}, keep_nodes=False)
    roads = roads_from_network(network).to_crs(crs)
    box = shapely.box(west, south, east, north)
    permeable = permeable_from([landuse, natural, leisure], natural, box).to_crs(crs)
    report = {"source": os.fspath(path), "reader": f"pyrosm {pyrosm.__version__}"}
    roads.attrs["geo_ntl_osm"] = permeable.attrs["geo_ntl_osm"] = report
    return roads, permeable
