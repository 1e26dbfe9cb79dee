"""A cluster result as esda objects, for splot, esda's own tools and other PySAL code.

:func:`to_esda` rebuilds, from a :class:`~geo_ntl.spatial.api.ClusterResult`'s analysed cells
and its row-standardised weights, the esda objects geo_ntl read its statistics from:

* global tests: :class:`esda.Moran` and :class:`esda.Moran_BV`, computed again with the same
  permutations and seed, so ``I``, ``EI``, ``z_sim`` and ``p_sim`` are those of the result;
* local tests: :class:`esda.Moran_Local` and :class:`esda.Moran_Local_BV` with esda's
  statistics and quadrants (``Is``, ``q``), and ``p_sim`` set to the result's pseudo p-values
  (geo_ntl draws the conditional permutations itself, see :mod:`geo_ntl.spatial.stats`).
  These objects hold no simulations (``sim``/``rlisas``), only what splot's ``lisa_cluster``
  and ``moran_scatterplot`` and esda's cluster labels read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geo_ntl.spatial.stats import _as_graph, esda_moran, esda_moran_bv, esda_moran_local

if TYPE_CHECKING:
    from geo_ntl.spatial.api import ClusterResult

__all__ = ["EsdaResults", "to_esda"]


@dataclass(frozen=True)
class EsdaResults:
    """esda objects of a cluster result, aligned with its analysed cells.

    Attributes
    ----------
    global_stats : dict of str to esda.Moran or esda.Moran_BV
        Keyed as :attr:`ClusterResult.global_stats`.
    local_stats : dict of str to esda.Moran_Local or esda.Moran_Local_BV
        Keyed as :attr:`ClusterResult.local_stats`.
    cells : geopandas.GeoDataFrame
        The analysed cells; row ``i`` is observation ``i`` of every object (what splot's
        ``lisa_cluster(moran_loc, gdf)`` expects as ``gdf``).
    weights : libpysal.graph.Graph
        The row-standardised weights the objects hold as ``w``.
    """

    global_stats: dict[str, Any]
    local_stats: dict[str, Any]
    cells: Any
    weights: Any


def to_esda(result: ClusterResult) -> EsdaResults:
    """Return a cluster result's statistics as the esda objects they were computed from.

    Parameters
    ----------
    result : ClusterResult

    Returns
    -------
    EsdaResults
        ``I`` and ``p_sim`` of every object equal those of ``result``.
    """
    graph = _as_graph(result.weights.graph)
    cells = result.cells.iloc[result.weights.cells]

    def values(name: str) -> np.ndarray:
        return cells[name].to_numpy(dtype=np.float64)

    global_objects: dict[str, Any] = {}
    for key, stat in result.global_stats.items():
        opts = {"permutations": stat.permutations, "seed": stat.seed}
        if stat.test == "moran":
            global_objects[key] = esda_moran(values(stat.y), graph, **opts)
        else:
            global_objects[key] = esda_moran_bv(values(str(stat.x)), values(stat.y), graph, **opts)
    local_objects: dict[str, Any] = {}
    for key, local in result.local_stats.items():
        focal, lagged = result.local_variables[key]
        x, y = (None, values(focal)) if lagged is None else (values(focal), values(lagged))
        obj = esda_moran_local(x, y, graph, permutations=0, seed=local.seed)
        obj.p_sim = np.array(local.p_sim, dtype=np.float64)
        local_objects[key] = obj
    return EsdaResults(
        global_stats=global_objects, local_stats=local_objects, cells=cells, weights=graph
    )
