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

Pixel values are digital numbers (DN), not radiance. :class:`Calibration` converts them with a
calibration the user supplies, ``radiance = gain * DN ** exponent + offset``, in the unit the
user names. geo_ntl ships no default: no published absolute calibration of Jilin-1 night
imagery with coefficients was found to cite, and a product's calibration depends on the
satellite, the band and the exposure, so take the coefficients from the data provider.
Without a calibration, geo_ntl labels night-light values as DN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from geo_ntl.exceptions import InputError, ParameterError

__all__ = [
    "DN_UNIT",
    "Calibration",
    "EnhancedRasterError",
    "Rendition",
    "check_faithful",
    "parse_calibration",
    "rendition",
    "to_radiance",
    "value_unit",
]

#: Unit label of uncalibrated pixel values.
DN_UNIT = "DN"

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


@dataclass(frozen=True)
class Calibration:
    """A DN-to-radiance conversion, ``radiance = gain * DN ** exponent + offset``.

    Attributes
    ----------
    gain : float
        Multiplier of ``DN ** exponent``; finite and positive.
    unit : str
        Unit of the result, for labels (for example ``"nW cm-2 sr-1"``); not empty.
    offset : float, default 0.0
        Added after the gain; finite.
    exponent : float, default 1.0
        Power of the DN; finite and positive (1 for a linear calibration).

    Raises
    ------
    ParameterError
        For a value out of range.

    Examples
    --------
    >>> cal = Calibration(gain=2.0, offset=0.5, exponent=1.5, unit="W m-2 sr-1 um-1")
    >>> cal.to_radiance([0, 4]).tolist()
    [0.5, 16.5]
    """

    gain: float
    unit: str
    offset: float = 0.0
    exponent: float = 1.0

    def __post_init__(self) -> None:
        for name in ("gain", "offset", "exponent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParameterError(f"calibration {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ParameterError(f"calibration {name} must be finite, got {value}")
        if self.gain <= 0:
            raise ParameterError(
                f"calibration gain must be positive (radiance grows with DN), got {self.gain}"
            )
        if self.exponent <= 0:
            raise ParameterError(f"calibration exponent must be > 0, got {self.exponent}")
        if not isinstance(self.unit, str) or not self.unit.strip():
            raise ParameterError("calibration unit must be named, e.g. unit='nW cm-2 sr-1'")

    def to_radiance(self, dn: Any) -> np.ndarray:
        """Return ``gain * dn ** exponent + offset`` as float64 (see :func:`to_radiance`)."""
        return to_radiance(dn, self)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON-ready)."""
        return asdict(self)


def to_radiance(dn: Any, calibration: Calibration) -> np.ndarray:
    """Convert digital numbers to radiance with a user-given calibration.

    Parameters
    ----------
    dn : array_like
        Digital numbers (any shape; negative values give NaN for a non-integer exponent).
    calibration : Calibration

    Returns
    -------
    ndarray of float64
        ``calibration.gain * dn ** calibration.exponent + calibration.offset``.
    """
    values = np.asarray(dn, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        powered = values if calibration.exponent == 1 else np.power(values, calibration.exponent)
        radiance = calibration.gain * powered + calibration.offset
    overflow = np.isfinite(values) & np.isinf(radiance)
    if overflow.any():
        raise ParameterError(
            f"calibration {calibration.gain:g} * DN ** {calibration.exponent:g} + "
            f"{calibration.offset:g} overflows at DN {float(values[overflow].min()):g}; "
            "check the exponent and gain of `calibration`",
            options={"`calibration`": "calibration"},
        )
    return radiance


def value_unit(calibration: Calibration | None) -> str:
    """Return the unit label of night-light values: the calibration's unit, or ``"DN"``."""
    return DN_UNIT if calibration is None else calibration.unit


def parse_calibration(text: str) -> Calibration:
    """Parse ``"gain=G,offset=O,exponent=E,unit=U"`` into a :class:`Calibration`.

    ``gain`` and ``unit`` are required; ``offset`` (0) and ``exponent`` (1) may be left out.
    The unit is the text after ``unit=`` up to the end or the next comma.

    Parameters
    ----------
    text : str

    Returns
    -------
    Calibration

    Raises
    ------
    ParameterError
        For an unknown or repeated key, a missing ``gain`` or ``unit``, or a value that is not
        a number.

    Examples
    --------
    >>> parse_calibration("gain=1e-3,exponent=1.5,unit=W m-2 sr-1 um-1")
    Calibration(gain=0.001, unit='W m-2 sr-1 um-1', offset=0.0, exponent=1.5)
    """
    fields: dict[str, str] = {}
    for item in str(text).split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("gain", "offset", "exponent", "unit"):
            raise ParameterError(
                f"cannot read calibration {text!r}: expected KEY=VALUE items separated by commas, "
                "gain=<number>,offset=<number>,exponent=<number>,unit=<text>"
            )
        if key in fields:
            raise ParameterError(f"calibration {text!r} gives {key} twice")
        fields[key] = value.strip()
    missing = [key for key in ("gain", "unit") if key not in fields]
    if missing:
        raise ParameterError(
            f"calibration {text!r} lacks {' and '.join(missing)}: geo_ntl has no default "
            "calibration, give the coefficients and unit of your product"
        )
    numbers: dict[str, float] = {}
    for key in ("gain", "offset", "exponent"):
        if key in fields:
            try:
                numbers[key] = float(fields[key])
            except ValueError:
                raise ParameterError(
                    f"calibration {key} must be a number, got {fields[key]!r}"
                ) from None
    return Calibration(unit=fields["unit"], **numbers)
