"""Parameters of the ASM enhancer, with the seed paper's defaults and their roles.

The paper (Zhao et al., Remote Sens. 2025, 17(12), 2069) fixes lambda1..lambda4,
mu1..mu3, sigma, b, p, epsilon, alpha, alpha1 and three iterations; its Table 6
describes the role of each. Everything else here (filter sizes the paper leaves
open, the superpixel size, solver iteration counts) is this implementation's
choice, marked "not in the paper" below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from geo_ntl.exceptions import ParameterError

__all__ = ["ASMParams", "FLOAT_RANGES", "PARAM_DOCS"]

#: Role of every parameter (Table 6 of the paper where it has one).
PARAM_DOCS: dict[str, str] = {
    "lambda1": "fidelity term weight; low sensitivity (Table 6)",
    "lambda2": "TV weight of the illumination weighting map H; low sensitivity (Table 6)",
    "lambda3": "gradient (smoothing) term weight on HR - U; relatively high sensitivity (Table 6)",
    "lambda4": "noise sparsity weight ||Z o N||^2; moderate sensitivity (Table 6)",
    "mu1": "HQS penalty for Q1 = Z o grad H",
    "mu2": "HQS penalty for Q2 = grad(R o H - U)",
    "mu3": "HQS penalty for Q3 = grad(HR - U)",
    "iterations": "outer alternating iterations (the paper converges in 3)",
    "alpha": "offset added to I before the guided filter that gives atmospheric light A (eq. 23)",
    "b": "weight of the blurred channel-max of A in A_e; suppresses over-exposed regions (Table 6)",
    "sigma": "transmittance offset in eq. 28; sets overall transmission, hence contrast (Table 6)",
    "alpha1": "lower bound of the transmittance t (eq. 28)",
    "p": "baseline of the illumination compensation H0 (eq. 32); directly sets brightening (Table 6)",
    "epsilon": "offset in H0 (eq. 32) separating high- and low-illumination regions",
    "asd_fraction": "ASD block edge as a fraction of the scene's height and width (paper: 1/50)",
    "h_max": "upper bound K of the weighting map H (Assumption 1); not in the paper's figures",
    "gf_radius": "guided-filter radius for A, full-resolution pixels; not in the paper",
    "gf_eps": "guided-filter regularisation for A (gray in [0, 1]); not in the paper",
    "ae_sigma": "Gaussian sigma (px) blurring channel-max A in A_e (paper: kernel size 10)",
    "t_sigma": "Gaussian sigma (px) smoothing the transmittance t (paper: unspecified)",
    "el_sigma": "Gaussian sigma (px) of the local exposure E_L (eq. 31; paper: unspecified)",
    "superpixel_size": "superpixel seed spacing in full-resolution pixels; not in the paper",
    "slic_iterations": "SLIC assignment passes for the superpixels of Z; not in the paper",
    "slic_compactness": "SLIC colour/space trade-off (colour units per seed spacing)",
    "z_sigma": "Gaussian sigma (px) smoothing Z across superpixel borders (avoids seams in U)",
    "z_scale": "scale delta mapping mean*range of a superpixel to Z = 1/(1 + mean*range/delta)",
    "h_sweeps": "damped-Jacobi sweeps per H subproblem (inexact HQS inner solve)",
    "m_sweeps": "Chebyshev iterations per HR subproblem (inexact HQS inner solve)",
    "keep_hue": "apply eq. 29 to gray(I) and keep colour ratios (True) or per channel as printed (False)",
    "init": "initial reflectance: 'asm' (the paper, eqs. 23-29) or 'max_rgb' (LIME-style I / max_c I, ablation)",
    "cell": "side of the coarse grid (px) on which the smooth initial maps are computed",
    "guard": "night-light guard on the output: highlights kept, bright scenes left alone, "
    "noise not amplified (geo_ntl.enhance.guard); not in the paper",
    "guard_mean_low": "scene mean luminance (0-1) up to which the guard lets the method act fully",
    "guard_mean_high": "scene mean luminance (0-1) from which the scene is not low-light: the "
    "method acts at a fifth of its strength",
    "guard_mean_off": "scene mean luminance (0-1) from which the scene is kept as it is",
    "detail_sigma": "Gaussian sigma (px) separating the smooth image from its detail and noise",
    "detail_gain": "fraction of the local brightening given to the detail (the noise): 0-1",
}


#: Valid range of every float parameter: (low, high, low excluded). Upper bounds are where a
#: value stops making sense: filter radii and sigmas beyond a few hundred pixels make the tile
#: halo (about 2 radii + 3 sigmas) larger than any tile; alpha, b and p act on gray levels in
#: [0, 1], where alpha = 1e30 gave an all-black scene; weights and penalties past 1e3 swamp
#: the other terms of the model.
FLOAT_RANGES: dict[str, tuple[float, float, bool]] = {
    "lambda1": (0.0, 1e3, True),
    "lambda2": (0.0, 1e3, False),
    "lambda3": (0.0, 1e3, False),
    "lambda4": (0.0, 1e3, False),
    "mu1": (0.0, 1e3, True),
    "mu2": (0.0, 1e3, True),
    "mu3": (0.0, 1e3, True),
    "alpha": (0.0, 1.0, False),
    "b": (0.0, 10.0, False),
    "sigma": (1e-6, 100.0, False),
    "alpha1": (1e-3, 1.0, False),
    "p": (0.0, 10.0, False),
    "epsilon": (1e-6, 100.0, False),
    "asd_fraction": (1e-4, 1.0, False),
    "h_max": (1.0, 1e3, False),
    "gf_radius": (0.0, 512.0, False),
    "gf_eps": (0.0, 10.0, True),
    "ae_sigma": (0.0, 256.0, False),
    "t_sigma": (0.0, 256.0, False),
    "el_sigma": (0.0, 256.0, False),
    "slic_compactness": (0.0, 100.0, True),
    "z_scale": (0.0, 100.0, True),
    "z_sigma": (0.0, 256.0, False),
    "guard_mean_low": (0.0, 1.0, False),
    "guard_mean_high": (0.0, 1.0, False),
    "guard_mean_off": (0.0, 1.0, False),
    "detail_sigma": (0.5, 16.0, False),
    "detail_gain": (0.0, 1.0, False),
}


def _describe_range(name: str) -> str:
    low, high, low_open = FLOAT_RANGES[name]
    return f"{'(' if low_open else '['}{low:g}, {high:g}]"


@dataclass(frozen=True)
class ASMParams:
    """All parameters of the ASM enhancer (defaults: the paper's, see :data:`PARAM_DOCS`).

    Parameters
    ----------
    lambda1, lambda2, lambda3, lambda4 : float
        Weights of the four terms of the model (eq. 10): 1, 1, 0.5, 0.3.
    mu1, mu2, mu3 : float
        Half-quadratic-splitting penalties: 3, 3, 3.
    iterations : int
        Outer alternating iterations: 3.
    alpha, b, sigma, alpha1 : float
        Initialisation of R0 (eqs. 23-29): 0.1, 0.5, 0.3, 0.1.
    p, epsilon : float
        Initialisation of H0 (eq. 32): 0.15, 0.5.
    asd_fraction : float
        ASD block edge as a fraction of the scene size: 1/50.
    h_max : float
        Upper bound of H.
    gf_radius, gf_eps, ae_sigma, t_sigma, el_sigma : float
        Filter sizes (pixels) and guided-filter regularisation.
    superpixel_size : int
        Superpixel seed spacing (pixels, multiple of ``cell``).
    slic_iterations : int
        SLIC assignment passes.
    slic_compactness, z_scale, z_sigma : float
        Superpixel compactness, the scale of Z and its smoothing.
    h_sweeps, m_sweeps : int
        Inner iterations of the H and HR subproblems.
    cell : int
        Coarse-grid side for the smooth initial maps.
    init : {"asm", "max_rgb"}
        Initial reflectance (the paper's, or a LIME-style ablation).
    keep_hue : bool
        Apply eq. 29 to the gray level and keep colour ratios (default) or per channel.

    Raises
    ------
    ParameterError
        If a value is out of range.

    Examples
    --------
    >>> ASMParams().lambda3
    0.5
    >>> ASMParams.from_mapping({"p": 0.2}).p
    0.2
    """

    lambda1: float = 1.0
    lambda2: float = 1.0
    lambda3: float = 0.5
    lambda4: float = 0.3
    mu1: float = 3.0
    mu2: float = 3.0
    mu3: float = 3.0
    iterations: int = 3
    alpha: float = 0.1
    b: float = 0.5
    sigma: float = 0.3
    alpha1: float = 0.1
    p: float = 0.15
    epsilon: float = 0.5
    asd_fraction: float = 1.0 / 50.0
    h_max: float = 8.0
    gf_radius: float = 8.0
    gf_eps: float = 1e-2
    ae_sigma: float = 2.5
    t_sigma: float = 2.5
    el_sigma: float = 10.0
    superpixel_size: int = 16
    slic_iterations: int = 2
    slic_compactness: float = 0.1
    z_scale: float = 0.01
    z_sigma: float = 8.0
    h_sweeps: int = 1
    m_sweeps: int = 5
    cell: int = 4
    init: str = "asm"
    keep_hue: bool = True
    guard: bool = True
    guard_mean_low: float = 0.30
    guard_mean_high: float = 100.0 / 255.0
    guard_mean_off: float = 140.0 / 255.0
    detail_sigma: float = 2.0
    detail_gain: float = 0.25

    def __post_init__(self) -> None:
        for name, (low, high, low_open) in FLOAT_RANGES.items():
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ParameterError(
                    f"parameter {name} must be a finite number in {_describe_range(name)}, "
                    f"got {value!r}"
                )
            if value > high or value < low or (low_open and value == low):
                raise ParameterError(
                    f"parameter {name} must be in {_describe_range(name)}, got {value!r}"
                )
        integers = {
            "iterations": (0, 50),
            "superpixel_size": (1, 512),
            "slic_iterations": (1, 10),
            "h_sweeps": (0, 50),
            "m_sweeps": (1, 200),
            "cell": (1, 16),
        }
        for name, (low, high) in integers.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ParameterError(
                    f"parameter {name} must be an integer in [{low}, {high}], got {value!r}"
                )
        for name in ("keep_hue", "guard"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(
                    f"parameter {name} must be True or False, got {getattr(self, name)!r}"
                )
        if not self.guard_mean_low < self.guard_mean_high < self.guard_mean_off:
            raise ParameterError(
                f"guard_mean_low < guard_mean_high < guard_mean_off must hold, got "
                f"{self.guard_mean_low}, {self.guard_mean_high}, {self.guard_mean_off}"
            )
        if self.init not in ("asm", "max_rgb"):
            raise ParameterError(f"parameter init must be 'asm' or 'max_rgb', got {self.init!r}")
        if self.superpixel_size % self.cell:
            raise ParameterError(
                f"superpixel_size ({self.superpixel_size}) must be a multiple of cell ({self.cell})"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> ASMParams:
        """Build parameters from a mapping of overrides (e.g. parsed ``--param NAME=VALUE``).

        Parameters
        ----------
        values : mapping, optional
            Parameter names and values; ints are accepted for floats.

        Returns
        -------
        ASMParams

        Raises
        ------
        ParameterError
            For an unknown name or a bad value.
        """
        if not values:
            return cls()
        known = {f.name: f for f in fields(cls)}
        clean: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                raise ParameterError(
                    f"unknown ASM parameter {name!r}; known parameters: {', '.join(sorted(known))}"
                )
            if (
                known[name].type in ("float", float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if known[name].type in ("int", int) and isinstance(value, float) and value.is_integer():
                value = int(value)
            clean[name] = value
        return replace(cls(), **clean)

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a plain dict (for provenance tags)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
