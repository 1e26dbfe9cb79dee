"""Which rasters keep their light as measured: faithful products versus enhanced renditions.

geo_ntl writes two kinds of raster. A *faithful* product -- a scene as delivered, or the
deblooming stage's output (``geo-ntl deblur``), which moves light but neither creates nor
destroys it -- keeps the relative brightness of every place, so statistics of night light
(Moran's I, LISA, sums per cell) can be computed on it. An *enhanced rendition* -- the ASM
low-light enhancer's output (``geo-ntl enhance``, ``geo-ntl deblur --enhance``) -- brightens
dark places more than bright ones, as a low-light enhancer must; it is for viewing, and its
clustering is distorted (on the sample AOI the permeable-surface association flipped to a
significant opposite sign). The stage and parameters that each geo_ntl output records in its
tags tell the two apart; :func:`check_faithful` refuses an enhanced rendition for analysis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from geo_ntl.exceptions import InputError

__all__ = ["EnhancedRasterError", "Rendition", "check_faithful", "rendition"]

Rendition = Literal["faithful", "enhanced"]


class EnhancedRasterError(InputError):
    """A raster whose relative brightness the enhancer changed was given for analysis."""


def rendition(tags: Mapping[str, Any]) -> Rendition:
    """Tell from a raster's tags whether its light is as measured or an enhanced rendition.

    Parameters
    ----------
    tags : mapping
        The raster's tags (``rasterio`` ``tags()``, or a rioxarray DataArray's ``attrs``).

    Returns
    -------
    {"faithful", "enhanced"}
        "enhanced" for outputs of the enhance stage and of deblur with the enhancer; rasters
        without geo_ntl tags are taken as faithful (as delivered by a sensor).

    Examples
    --------
    >>> rendition({"GEO_NTL_STAGE": "deblur", "GEO_NTL_PARAMS": '{"enhance": true}'})
    'enhanced'
    >>> rendition({"GEO_NTL_STAGE": "deblur", "GEO_NTL_PARAMS": '{"enhance": false}'})
    'faithful'
    >>> rendition({"GEO_NTL_STAGE": "deblur", "GEO_NTL_PARAMS": '{"enhance": {"p": 0.15}}'})
    'enhanced'
    """
    stage = str(tags.get("GEO_NTL_STAGE", ""))
    if stage == "enhance":
        return "enhanced"
    if stage == "deblur":
        try:
            params = json.loads(str(tags.get("GEO_NTL_PARAMS", "{}")))
        except json.JSONDecodeError:
            params = {}
        # "enhance" is False, or the enhancer's parameters (True in older outputs).
        if isinstance(params, dict) and params.get("enhance") not in (None, False):
            return "enhanced"
    return "faithful"


def check_faithful(tags: Mapping[str, Any], *, source: str, allow_enhanced: bool) -> None:
    """Raise :class:`EnhancedRasterError` for an enhanced rendition unless allowed.

    Parameters
    ----------
    tags : mapping
        The raster's tags.
    source : str
        The raster's name, for the message.
    allow_enhanced : bool
        Accept an enhanced rendition all the same.

    Raises
    ------
    EnhancedRasterError
    """
    if allow_enhanced or rendition(tags) == "faithful":
        return
    raise EnhancedRasterError(
        f"{source} is an enhanced rendition (stage {tags.get('GEO_NTL_STAGE')!s}): the low-light "
        "enhancer changed its relative brightness, which distorts the clustering; analyse the "
        "deblooming output without the enhancer (geo-ntl deblur without --enhance) or pass "
        "allow_enhanced=True to analyse it anyway"
    )
