"""The sample area of interest that ships inside the package.

The Helsinki sample AOI (simulated Jilin-1 night light on real OpenStreetMap geography, about
9 MB; its ``README.md`` gives the provenance and the ODbL licence) is package data under
``geo_ntl/data/sample_aoi/helsinki``, so it is found the same way from a checkout, an editable
install or an installed wheel. In a checkout the files live in ``sample_aoi/`` at the repository
root and the package folder is a link to them (a wheel holds the files themselves).
``geo-ntl simulate --helsinki`` rebuilds it (with the ``osm`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from geo_ntl.exceptions import GeoNTLError, ParameterError

__all__ = ["SAMPLE_AOIS", "SampleAOI", "SampleDataError", "sample_aoi", "sample_aoi_path"]

#: Names of the shipped sample areas.
SAMPLE_AOIS = ("helsinki",)


class SampleDataError(GeoNTLError, FileNotFoundError):
    """The shipped sample data cannot be found on the file system."""


@dataclass(frozen=True)
class SampleAOI:
    """Paths of a sample AOI's files.

    Attributes
    ----------
    folder : pathlib.Path
        The folder holding the files and their ``README.md``.
    scene : pathlib.Path
        The degraded scene (uint8 RGB COG).
    truth : pathlib.Path
        The clean scene on the same grid (uint8 RGB COG).
    roads, permeable, buildings : pathlib.Path
        OpenStreetMap road lines, permeable surfaces and building footprints (GeoPackage).
    """

    folder: Path
    scene: Path
    truth: Path
    roads: Path
    permeable: Path
    buildings: Path


def sample_aoi_path(name: str = "helsinki") -> Path:
    """Return the folder of a shipped sample AOI.

    Parameters
    ----------
    name : str, default "helsinki"
        One of :data:`SAMPLE_AOIS`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ParameterError
        For an unknown ``name``.
    SampleDataError
        If the package was installed without its data, or from a zip file.

    Examples
    --------
    >>> (sample_aoi_path() / "scene.tif").is_file()
    True
    """
    if name not in SAMPLE_AOIS:
        raise ParameterError(f"unknown sample AOI {name!r}; choose one of {', '.join(SAMPLE_AOIS)}")
    folder = resources.files("geo_ntl").joinpath("data", "sample_aoi", name)
    if not isinstance(folder, Path) or not (folder / "scene.tif").is_file():
        raise SampleDataError(
            f"the sample AOI {name!r} is not on the file system at {folder}: reinstall geo_ntl "
            "from a wheel or a checkout that includes its package data"
        )
    return folder


def sample_aoi(name: str = "helsinki") -> SampleAOI:
    """Return the paths of a shipped sample AOI's scene, truth and vector layers.

    Parameters
    ----------
    name : str, default "helsinki"
        One of :data:`SAMPLE_AOIS`.

    Returns
    -------
    SampleAOI

    Examples
    --------
    >>> aoi = sample_aoi()
    >>> aoi.scene.name, aoi.roads.name
    ('scene.tif', 'roads.gpkg')
    """
    folder = sample_aoi_path(name)
    return SampleAOI(
        folder=folder,
        scene=folder / "scene.tif",
        truth=folder / "truth.tif",
        roads=folder / "roads.gpkg",
        permeable=folder / "permeable.gpkg",
        buildings=folder / "buildings.gpkg",
    )
