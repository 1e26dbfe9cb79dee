"""Figures: LISA cluster maps and Moran scatterplots (matplotlib, no pyplot state).

Figures are built on :class:`matplotlib.figure.Figure` objects, so they work
under any backend (Agg in the CLI, inline in notebooks) and never touch
pyplot's global figure list.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from geo_ntl.spatial.api import ClusterResult

__all__ = ["LABEL_COLOURS", "plot_lisa_map", "plot_moran_scatter", "write_figures"]

#: Colour of each label in maps and scatterplots.
LABEL_COLOURS = {
    "HH": "#d7191c",
    "LL": "#2c7bb6",
    "HL": "#fdae61",
    "LH": "#abd9e9",
    "ns": "#e8e8e8",
    "island": "#969696",
    "no_data": "#ffffff",
}
_DPI = 120
_SCATTER_MAX_POINTS = 200_000


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


def plot_lisa_map(result: ClusterResult, key: str, *, ax: Any = None) -> Any:
    """Map the LISA labels of one local test.

    Parameters
    ----------
    result : ClusterResult
        From :func:`geo_ntl.spatial.cluster`.
    key : str
        One of ``result.local_stats`` (``"ntl"``, ``"ntl_road_density"``,
        ``"ntl_permeable_fraction"``).
    ax : matplotlib Axes, optional
        Where to draw; a new Figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, ax = _figure(ax)
    labels = result.cells[f"{key}_label"].to_numpy().astype(str)
    names = list(LABEL_COLOURS)
    codes = np.array([names.index(lab) for lab in labels])
    grid = result.grid
    if grid.kind == "square":
        image = np.full(grid.lattice_shape, np.nan)
        image[result.cells["row"].to_numpy(), result.cells["col"].to_numpy() + grid.col_offset] = (
            codes
        )
        left, _, _, top = grid.frame.bounds
        n_rows, n_cols = grid.lattice_shape
        extent = (left, left + n_cols * grid.cell_size, top - n_rows * grid.cell_size, top)
        ax.imshow(
            image,
            cmap=ListedColormap(list(LABEL_COLOURS.values())),
            vmin=-0.5,
            vmax=len(names) - 0.5,
            extent=extent,
            interpolation="nearest",
        )
    else:
        result.cells.plot(ax=ax, color=[LABEL_COLOURS[lab] for lab in labels], linewidth=0)
    present = [lab for lab in names if (labels == lab).any()]
    ax.legend(
        handles=[
            Patch(
                facecolor=LABEL_COLOURS[lab],
                edgecolor="0.5",
                label=f"{lab} ({(labels == lab).sum()})",
            )
            for lab in present
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    stat = result.local_stats[key]
    cut = f"FDR cut-off {stat.threshold:.2g}" if stat.fdr else f"p < {stat.alpha:g}"
    ax.set_title(f"{_title(result, key)}\n{stat.permutations} permutations, {cut}", fontsize=9)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    return fig


def plot_moran_scatter(result: ClusterResult, key: str, *, ax: Any = None) -> Any:
    """Moran scatterplot: standardised variable against the spatial lag, coloured by label.

    Parameters
    ----------
    result : ClusterResult
    key : str
        One of ``result.local_stats``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The line has slope equal to the global (bivariate) Moran's I; with
    row-standardised weights this is the least-squares slope of the lag on
    the standardised focal variable.
    """
    fig, ax = _figure(ax)
    focal, other = result.local_variables[key]
    analysed = result.cells.iloc[result.weights.cells]
    graph = result.weights.graph
    zf = analysed[focal].to_numpy(dtype=float)
    zf = (zf - zf.mean()) / zf.std(ddof=1 if other else 0)
    zn = analysed[other or focal].to_numpy(dtype=float)
    zn = (zn - zn.mean()) / zn.std(ddof=1 if other else 0)
    lag = graph.sparse @ zn
    labels = analysed[f"{key}_label"].to_numpy().astype(str)
    if len(zf) > _SCATTER_MAX_POINTS:
        pick = np.random.default_rng(0).choice(len(zf), _SCATTER_MAX_POINTS, replace=False)
    else:
        pick = np.arange(len(zf))
    ax.scatter(
        zf[pick],
        lag[pick],
        s=6,
        c=[LABEL_COLOURS[lab] for lab in labels[pick]],
        edgecolors="none",
        rasterized=True,
    )
    gkey = f"moran_{focal}" if other is None else f"moran_bv_{focal}_{other}"
    slope = result.global_stats[gkey].I
    xs = np.array([zf.min(), zf.max()])
    ax.plot(xs, slope * xs, color="k", linewidth=1)
    ax.axhline(0, color="0.6", linewidth=0.6)
    ax.axvline(0, color="0.6", linewidth=0.6)
    ax.set_xlabel(f"{focal} (standardised)")
    ax.set_ylabel(f"spatial lag of {other or focal} (standardised)")
    p = result.global_stats[gkey].p_sim
    ax.set_title(
        f"{'Moran' if other is None else 'Bivariate Moran'} scatterplot: I = {slope:.3f}, "
        f"pseudo p = {p:.3g}",
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
    """Write a LISA map and a Moran scatterplot per local test as PNG files.

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
    """
    from geo_ntl._raster import disk_errors
    from geo_ntl.io import atomic_output, check_output_path

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
    written = []
    for path, draw, key in targets:
        fig = draw(result, key)
        with atomic_output(path, overwrite=overwrite) as tmp, disk_errors(path, tmp.parent):
            fig.savefig(tmp, dpi=dpi, format="png")
        written.append(path)
    return written
