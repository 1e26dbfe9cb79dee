"""Figures: LISA cluster maps and Moran scatterplots, drawn by splot.

The maps and scatterplots are splot's (:func:`splot.esda.lisa_cluster`,
:func:`splot.esda.moran_scatterplot`), drawn from the result's esda objects
(:meth:`~geo_ntl.spatial.api.ClusterResult.to_esda`) at the result's own
significance threshold (``alpha`` or the FDR cut-off), so they show the labels
of the cells table. Cells left out of the statistics (no data, islands) are
drawn grey beneath the map. Figures are built on :class:`matplotlib.figure.Figure`
objects, so they work under any backend and never touch pyplot's figure list.
splot is the optional ``maps`` extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geo_ntl.exceptions import MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from geo_ntl.spatial.api import ClusterResult

__all__ = ["plot_lisa_map", "plot_moran_scatter", "require_splot", "write_figures"]

_DPI = 120
_LEFT_OUT = "#bdbdbd"


def require_splot() -> Any:
    """Return :mod:`splot.esda`, or raise MissingDependencyError with how to install it."""
    try:
        import splot.esda
    except ImportError as exc:
        raise MissingDependencyError(
            "LISA maps and Moran scatterplots are drawn by splot: "
            "`pip install 'geo_ntl[maps]'` (or `pip install splot`)"
        ) from exc
    return splot.esda


def _figure(ax: Any) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    return fig, fig.add_subplot()


def _title(result: ClusterResult, key: str) -> str:
    focal, other = result.local_variables[key]
    return (
        f"LISA clusters: {focal}" if other is None else f"Bivariate LISA: {focal} vs lag of {other}"
    )


def _esda(result: ClusterResult, esda_objects: Any) -> Any:
    return esda_objects if esda_objects is not None else result.to_esda()


def plot_lisa_map(
    result: ClusterResult, key: str, *, ax: Any = None, esda_objects: Any = None
) -> Any:
    """Map the LISA labels of one local test with splot's ``lisa_cluster``.

    Parameters
    ----------
    result : ClusterResult
        From :func:`geo_ntl.spatial.cluster`.
    key : str
        One of ``result.local_stats`` (``"ntl"``, ``"ntl_road_density"``,
        ``"ntl_permeable_fraction"``).
    ax : matplotlib Axes, optional
        Where to draw; a new Figure otherwise.
    esda_objects : EsdaResults, optional
        ``result.to_esda()``, when already computed.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    MissingDependencyError
        Without splot.
    """
    splot_esda = require_splot()
    objects = _esda(result, esda_objects)
    fig, ax = _figure(ax)
    left_out = result.cells[~result.cells["analysed"]]
    if len(left_out):
        left_out.plot(ax=ax, color=_LEFT_OUT, linewidth=0)
    stat = result.local_stats[key]
    splot_esda.lisa_cluster(
        objects.local_stats[key],
        objects.cells.reset_index(drop=True),
        p=stat.threshold,
        ax=ax,
        legend_kwds={"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8},
    )
    ax.set_axis_on()
    cut = f"FDR cut-off {stat.threshold:.2g}" if stat.fdr else f"p < {stat.alpha:g}"
    grey = f"; grey: {len(left_out)} cells not analysed" if len(left_out) else ""
    ax.set_title(
        f"{_title(result, key)}\n{stat.permutations} permutations, {cut}{grey}", fontsize=9
    )
    ax.set_xlabel(f"x (m, {result.report.get('analysis_crs', 'CRS units')})", fontsize=8)
    ax.set_ylabel("y (m)", fontsize=8)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    return fig


def plot_moran_scatter(
    result: ClusterResult, key: str, *, ax: Any = None, esda_objects: Any = None
) -> Any:
    """Moran scatterplot of one local test with splot's ``moran_scatterplot``.

    Standardised focal variable against the spatial lag (of itself, or of the other
    variable for a bivariate test), significant cells coloured by quadrant at the
    result's threshold, and the fit line whose slope is the local test's global I.

    Parameters
    ----------
    result : ClusterResult
    key : str
        One of ``result.local_stats``.
    ax : matplotlib Axes, optional
    esda_objects : EsdaResults, optional
        ``result.to_esda()``, when already computed.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    MissingDependencyError
        Without splot.
    """
    splot_esda = require_splot()
    objects = _esda(result, esda_objects)
    fig, ax = _figure(ax)
    stat = result.local_stats[key]
    splot_esda.moran_scatterplot(
        objects.local_stats[key], p=stat.threshold, aspect_equal=False, ax=ax
    )
    focal, other = result.local_variables[key]
    gkey = f"moran_{focal}" if other is None else f"moran_bv_{focal}_{other}"
    glob = result.global_stats[gkey]
    ax.set_xlabel(f"{focal} (standardised)")
    ax.set_ylabel(f"spatial lag of {other or focal} (standardised)")
    ax.set_title(
        f"{'Moran' if other is None else 'Bivariate Moran'} scatterplot: I = {glob.I:.3f}, "
        f"pseudo p = {glob.p_sim:.3g}",
        fontsize=9,
    )
    return fig


def write_figures(
    result: ClusterResult,
    directory: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    dpi: int = _DPI,
) -> list[Path]:
    """Write splot's LISA map and Moran scatterplot of each local test as PNG files.

    Parameters
    ----------
    result : ClusterResult
    directory : str or os.PathLike
        Created if missing. Files: ``lisa_<key>.png`` and ``scatter_<key>.png``.
    overwrite : bool, default False
        Replace existing files.
    dpi : int, default 120

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    OutputExistsError
        If a figure exists and ``overwrite`` is False (checked before writing any).
    MissingDependencyError
        Without splot (the ``maps`` extra).
    """
    from geo_ntl._raster import disk_errors
    from geo_ntl.io import atomic_output, check_output_path

    require_splot()
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    targets = []
    for key in result.local_stats:
        targets += [
            (folder / f"lisa_{key}.png", plot_lisa_map, key),
            (folder / f"scatter_{key}.png", plot_moran_scatter, key),
        ]
    for path, _, _ in targets:
        check_output_path(path, overwrite=overwrite)
    objects = result.to_esda()
    written = []
    for path, draw, key in targets:
        fig = draw(result, key, esda_objects=objects)
        with atomic_output(path, overwrite=overwrite) as tmp, disk_errors(path, tmp.parent):
            fig.savefig(tmp, dpi=dpi, format="png")
        written.append(path)
    return written
