"""The stages :func:`geo_ntl.pipeline.restore_scenes` runs, and what each records.

A stage is given as a :class:`DeblurStage` or :class:`EnhanceStage`, as a name
(``"deblur"``), or as a name and the stage's keyword arguments
(``("enhance", {"tile": 512})``). :func:`plan_stages` checks a sequence of them
once, before any scene is read, and turns it into a :class:`StagePlan`: the
function that computes one scene, and the parameters that make a job (what
its output's job signature and provenance tags hold).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from geo_ntl.defaults import DEBLUR_TILE, ENHANCE_TILE
from geo_ntl.exceptions import ParameterError, TilingError

if TYPE_CHECKING:
    import xarray as xr

    from geo_ntl._device import DevicePlan

__all__ = ["DeblurStage", "EnhanceStage", "StagePlan", "StageSpec", "plan_stages"]

#: Output dtypes a run may ask for (``None``: the input's).
OUTPUT_DTYPES = (None, "float32")
#: Name prefix of the hidden folder the deblur output is staged in before the enhancer.
STAGING_PREFIX = ".geo_ntl-gan-"


@dataclass(frozen=True)
class DeblurStage:
    """Remove blooming with one of the methods of :mod:`geo_ntl.deblur.methods`.

    Parameters
    ----------
    method : {"psf-gan", "gan-direct", "physics"}, default "psf-gan"
        ``"psf-gan"``: NTL-Db-Net inside the PSF-explicit, clip-aware solver
        (:func:`geo_ntl.deblur.psf_gan.solve`); ``"gan-direct"`` (earlier name ``"gan"``):
        the standalone generator (:func:`geo_ntl.deblur.inference.deblur`);
        ``"physics"``: Richardson-Lucy with the scene's own PSF
        (:func:`geo_ntl.deblur.physics.physics_stage`).
    weights : str or os.PathLike, optional
        Weights of the psf-gan solver or of the standalone generator: a shipped name or a
        file from training; default the shipped ones.
    tile : int, default :data:`geo_ntl.defaults.DEBLUR_TILE`
        Tile edge in pixels, halo excluded (multiple of 4, at least 16).
    halo : int, optional
        Halo in pixels (multiple of 4); default the method's own.
    batch_size : int, optional
        GAN tiles per forward pass; default 4 on a GPU, 1 on a CPU.
    psf : str, os.PathLike or PSFEstimate, optional
        The PSF of psf-gan and physics (a JSON file from ``geo-ntl psf --json``); default
        measured on each scene.
    saturation : float, optional
        psf-gan and gan-direct: level at which the sensor clipped (see
        :func:`geo_ntl.deblur.inference.deblur`); default full scale for integer scenes, none
        for float radiance.
    """

    name: ClassVar[str] = "deblur"
    method: Literal["psf-gan", "gan-direct", "gan", "physics"] = "psf-gan"
    weights: str | os.PathLike[str] | None = None
    tile: int = DEBLUR_TILE
    halo: int | None = None
    batch_size: int | None = None
    psf: Any = None
    saturation: float | None = None


@dataclass(frozen=True)
class EnhanceStage:
    """Brighten with the ASM low-light enhancer (a rendition for viewing).

    Parameters
    ----------
    params : ASMParams or mapping, optional
        Enhancer parameters (:data:`geo_ntl.enhance.PARAM_DOCS`); default :class:`ASMParams`'s.
    tile : int, optional
        Tile edge in pixels, halo excluded; default :data:`geo_ntl.defaults.ENHANCE_TILE`,
        or the deblur stage's tile when it follows one.
    """

    name: ClassVar[str] = "enhance"
    params: Any = None
    tile: int | None = None


#: A stage: an object, a name, or a name and the stage's keyword arguments.
StageSpec = DeblurStage | EnhanceStage | str | tuple[str, Mapping[str, Any]]

_STAGES: dict[str, type[DeblurStage] | type[EnhanceStage]] = {
    "deblur": DeblurStage,
    "enhance": EnhanceStage,
}


@dataclass
class StagePlan:
    """What a run computes for each scene, checked and resolved.

    Attributes
    ----------
    stage : str
        Stage name recorded in the outputs (the first stage's).
    suffix : str
        Suffix of the output names in an output folder.
    params : dict
        Every parameter that changes the pixels (recorded, and part of the job signature);
        :meth:`bind` adds the device's.
    first : callable
        ``first(scene, device) -> result``, lazy; ``device`` a
        :class:`~geo_ntl._device.DevicePlan`.
    then : callable, optional
        The enhancer after a deblur stage, run on the deblur output once it is on disk, so
        the enhancer's two passes over a scene do not run the deblur twice
        (``then(scene, device)``).
    then_chunks : int
        Chunk edge to read the staged deblur output with.
    dtype : str, optional
        Output dtype the COG writer casts to.
    inputs : list of (str, pathlib.Path)
        Other files the stages read (no output may be one of them).
    staged : bool
        Whether the run needs a staging folder (every run with a deblur stage: it also
        removes what a killed run left there).
    model : str or None
        ``"gan"``, ``"psf-gan"`` or ``"enhance"``: the first stage that runs on the torch device, whose
        precision and batch the job records; None when no stage does (physics only).
    """

    stage: str
    suffix: str
    params: dict[str, Any]
    first: Callable[[xr.DataArray, DevicePlan], xr.DataArray]
    then: Callable[[xr.DataArray, DevicePlan], xr.DataArray] | None = None
    then_chunks: int = ENHANCE_TILE
    dtype: str | None = None
    inputs: list[tuple[str, Path]] = field(default_factory=list)
    staged: bool = False
    model: str | None = None

    def bind(self, device: DevicePlan) -> None:
        """Record the device the stages run on in :attr:`params` (the job signature).

        Results depend on it: on CUDA the GAN runs in reduced precision and the enhancer's
        superpixel sums are not deterministic, and the GAN's default batch is the device's.
        """
        from geo_ntl.deblur.inference import default_batch_size

        if self.model is None and self.then is None:
            return
        self.params["device"] = device.type
        self.params["precision"] = device.precision if self.model == "gan" else "fp32"
        if self.model == "gan" and self.params.get("batch_size") is None:
            self.params["batch_size"] = default_batch_size(device.type)

    @property
    def stages(self) -> tuple[str, ...]:
        """Names of the stages each scene goes through, in order."""
        return (self.stage, "enhance") if self.then is not None else (self.stage,)

    def builder(self, staging: Path | None, device: DevicePlan) -> Callable[..., xr.DataArray]:
        """Return ``build(scene, on_stage=None) -> result``, staging the deblur output in ``staging``.

        ``on_stage(name, lazy_result_or_None)`` is called as each stage starts building
        (for progress reports); the stages run on ``device``.
        """
        first, then = self.first, self.then
        if then is None:

            def build_one(da: xr.DataArray, on_stage: OnStage | None = None) -> xr.DataArray:
                (on_stage or _ignore)(self.stage, None)
                return first(da, device)

            return build_one
        if staging is None:
            raise ValueError("a plan with two stages needs a staging folder")
        from geo_ntl.io import open_scene, write_cog

        counter = itertools.count()

        def build(da: xr.DataArray, on_stage: OnStage | None = None) -> xr.DataArray:
            report = on_stage or _ignore
            report(self.stage, None)
            deblurred = first(da, device)
            report(self.stage, deblurred)
            path = write_cog(deblurred, staging / f"gan_{next(counter)}.tif", compress="NONE")
            report("enhance", None)
            return then(open_scene(path, chunks=self.then_chunks), device)

        return build


#: ``on_stage(name, lazy_result_or_None)``: told as each stage of a scene starts.
OnStage = Callable[[str, Any], None]


def _ignore(name: str, data: Any) -> None:
    """Ignore a stage report (the default ``on_stage``)."""


def as_stage(spec: StageSpec) -> DeblurStage | EnhanceStage:
    """Return the stage object a spec names.

    Raises
    ------
    ParameterError
        For an unknown stage name or argument.
    """
    if isinstance(spec, DeblurStage | EnhanceStage):
        return spec
    name, kwargs = (spec, {}) if isinstance(spec, str) else spec
    cls = _STAGES.get(name)
    if cls is None:
        raise ParameterError(f"unknown stage {name!r}; stages are {', '.join(sorted(_STAGES))}")
    try:
        return cls(**dict(kwargs))
    except TypeError as exc:
        raise ParameterError(f"bad arguments for stage {name!r}: {exc}") from None


def plan_stages(specs: Sequence[StageSpec], *, dtype: str | None = None) -> StagePlan:
    """Check the stages and resolve them into a :class:`StagePlan` (no scene is read).

    The device is given to the plan's functions when they run (and recorded by
    :meth:`StagePlan.bind`), once the job knows where it runs.

    Parameters
    ----------
    specs : sequence of StageSpec
        ``[deblur]``, ``[enhance]`` or ``[deblur, enhance]``.
    dtype : {None, "float32"}, optional
        Output dtype; default the input's.

    Returns
    -------
    StagePlan

    Raises
    ------
    ParameterError, TilingError
        For an unknown, misordered or badly parametrised stage.
    WeightsNotFoundError, WeightsError
        For a missing, corrupt or foreign weights file (loaded here, before any work).
    InputError
        For a physics PSF file that does not hold a PSF.
    """
    if isinstance(specs, str | DeblurStage | EnhanceStage) or (
        isinstance(specs, tuple) and len(specs) == 2 and isinstance(specs[1], Mapping)
    ):
        specs = [specs]  # one stage given bare: "deblur", ("enhance", {...}), DeblurStage()
    stages = [as_stage(spec) for spec in specs]
    names = tuple(stage.name for stage in stages)
    if names not in (("deblur",), ("enhance",), ("deblur", "enhance")):
        raise ParameterError(
            f"stages must be deblur, enhance, or deblur then enhance; got {list(names) or 'none'}"
        )
    if dtype not in OUTPUT_DTYPES:
        raise ParameterError(f"dtype must be None or 'float32', got {dtype!r}")
    if names == ("enhance",):
        return _enhance_plan(stages[0], dtype=dtype)  # type: ignore[arg-type]
    deblur: DeblurStage = stages[0]  # type: ignore[assignment]
    enhance: EnhanceStage | None = stages[1] if len(stages) == 2 else None  # type: ignore[assignment]
    plan = _deblur_plan(deblur, dtype=dtype)
    # The job signature holds the enhancer's parameters when it runs (False when not).
    plan.params["enhance"] = False
    if enhance is not None:
        asm = _asm_params(enhance.params)
        tile = deblur.tile if enhance.tile is None else enhance.tile
        recorded = asm.to_dict()
        if tile != deblur.tile:
            recorded["tile"] = tile
        plan.params["enhance"] = recorded

        def then(da: xr.DataArray, device: DevicePlan) -> xr.DataArray:
            from geo_ntl.enhance import enhance as asm_enhance

            return asm_enhance(da, params=asm, device=device, tile=tile)

        plan.then, plan.then_chunks = then, tile
    return plan


def _asm_params(params: Any) -> Any:
    from geo_ntl.enhance import ASMParams

    return params if isinstance(params, ASMParams) else ASMParams.from_mapping(params)


def _enhance_plan(stage: EnhanceStage, *, dtype: str | None) -> StagePlan:
    asm = _asm_params(stage.params)
    tile = ENHANCE_TILE if stage.tile is None else stage.tile

    def first(da: xr.DataArray, device: DevicePlan) -> xr.DataArray:
        from geo_ntl.enhance import enhance as asm_enhance

        return asm_enhance(da, params=asm, device=device, tile=tile, dtype=dtype)

    return StagePlan(
        stage="enhance",
        suffix="_enhanced",
        # Every parameter, defaults included, and the tile edge: all can change the pixels.
        params={**asm.to_dict(), "dtype": dtype, "tile": tile},
        first=first,
        model="enhance",
    )


def _check_tiling(tile: Any, halo: Any) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 16 or tile % 4:
        raise ParameterError(f"tile must be a multiple of 4 and >= 16 pixels, got {tile!r}")
    if halo is not None and (
        isinstance(halo, bool) or not isinstance(halo, int) or halo < 0 or halo % 4
    ):
        raise TilingError(f"halo must be a non-negative multiple of 4 pixels, got {halo!r}")


def _weights_params(
    weights: Any, loader: Callable[..., Any], default: str
) -> tuple[dict[str, Any], list]:
    """Load weights now (bad files fail before any work); their job parameters and input files."""
    from geo_ntl.deblur.weights import list_models, resolve_weights, sha256sum

    loader(weights)
    path, _ = resolve_weights(weights or default)
    inputs = []
    if not (weights is None or weights in list_models()):
        inputs.append(("weights file", Path(path)))
    # The model by its SHA-256: a retrained file under the same name is another model.
    params = {"weights": os.fspath(weights) if weights else "default",
              "weights_sha256": sha256sum(path)}  # fmt: skip
    return params, inputs


def _add_output_params(params: dict[str, Any], *, dtype: Any, saturation: Any) -> None:
    """Record the output dtype and the clip level when given (both change the pixels)."""
    if dtype is not None:
        params["dtype"] = dtype
    if saturation is not None:
        params["saturation"] = float(saturation)


def _model_deblur_plan(
    params: dict[str, Any], first: Any, *, dtype: str | None, inputs: list, model: str
) -> StagePlan:
    """Return the plan of a deblur stage whose model runs on the torch device (gan, psf-gan)."""
    return StagePlan(stage="deblur", suffix="_clean", params=params, first=first, dtype=dtype,
                     inputs=inputs, staged=True, model=model)  # fmt: skip


def _deblur_plan(stage: DeblurStage, *, dtype: str | None) -> StagePlan:
    from geo_ntl.deblur.methods import canonical_method

    _check_tiling(stage.tile, stage.halo)
    method = canonical_method(stage.method)
    if method == "physics":
        return _physics_plan(stage, dtype=dtype)
    if method == "psf-gan":
        return _solver_plan(stage, dtype=dtype)
    if stage.psf is not None:
        raise ParameterError("psf applies to method='psf-gan' and method='physics'")
    from geo_ntl.deblur.flux import CLIP_RADIUS, FLUX_SIGMA
    from geo_ntl.deblur.inference import DEFAULT_HALO
    from geo_ntl.deblur.weights import DEFAULT_WEIGHTS, get_generator

    weights, tile, halo, batch_size = stage.weights, stage.tile, stage.halo, stage.batch_size
    weights_params, inputs = _weights_params(weights, get_generator, DEFAULT_WEIGHTS)
    # The model, the resolved halo and the flux projection: what changes the pixels.
    params: dict[str, Any] = {
        "method": "gan-direct",
        **weights_params,
        "flux": {"sigma": FLUX_SIGMA, "clip_radius": CLIP_RADIUS},
        "tile": tile,
        "halo": DEFAULT_HALO if halo is None else halo,
        "batch_size": batch_size,
    }
    _add_output_params(params, dtype=dtype, saturation=stage.saturation)

    def first(da: xr.DataArray, device: DevicePlan) -> xr.DataArray:
        from geo_ntl.deblur.inference import deblur

        return deblur(
            da.chunk({"y": tile, "x": tile}),
            weights=weights,
            device=device,
            tile=tile,
            halo=halo,
            batch_size=batch_size,
            saturation=stage.saturation,
        )

    return _model_deblur_plan(params, first, dtype=dtype, inputs=inputs, model="gan")


def _solver_plan(stage: DeblurStage, *, dtype: str | None) -> StagePlan:
    if stage.batch_size is not None:
        raise ParameterError("batch_size applies to method='gan-direct'")
    from geo_ntl.deblur.flux import FILL_SIGMAS
    from geo_ntl.deblur.psf_gan import METHOD, read_given_psf, solve
    from geo_ntl.deblur.weights import DEFAULT_SOLVER_WEIGHTS, get_solver

    weights, tile, halo = stage.weights, stage.tile, stage.halo
    weights_params, inputs = _weights_params(weights, get_solver, DEFAULT_SOLVER_WEIGHTS)
    psf, psf_params = read_given_psf(stage.psf)
    if isinstance(stage.psf, str | os.PathLike):
        inputs.append(("PSF file", Path(stage.psf)))
    params: dict[str, Any] = {
        "method": METHOD,
        **weights_params,
        **psf_params,
        # psf-gan lets light go only within the PSF's FWHM of clipped pixels (clip_radius_for),
        # no more than it put above full scale; out-of-range light moves to the nearest room
        "flux": {
            "sigma": "2 x psf fwhm, 8-16 px",
            "clip_radius": "psf fwhm, at least 2 px",
            "removable": "above full scale",
            "fill_sigmas": FILL_SIGMAS,
        },
        "tile": tile,
        "halo": halo,
    }
    _add_output_params(params, dtype=dtype, saturation=stage.saturation)

    def first(da: xr.DataArray, device: DevicePlan) -> xr.DataArray:
        return solve(da.chunk({"y": tile, "x": tile}), psf=psf, weights=weights, device=device,
                     tile=tile, halo=halo, dtype=dtype, saturation=stage.saturation)  # fmt: skip

    return _model_deblur_plan(params, first, dtype=dtype, inputs=inputs, model="psf-gan")


def _physics_plan(stage: DeblurStage, *, dtype: str | None) -> StagePlan:
    if stage.weights is not None or stage.batch_size is not None or stage.saturation is not None:
        raise ParameterError(
            "weights, batch_size and saturation apply to method='psf-gan' or 'gan-direct'"
        )
    from geo_ntl.deblur.physics import physics_stage

    deconvolve, params = physics_stage(stage.psf, tile=stage.tile, halo=stage.halo, dtype=dtype)

    def first(da: xr.DataArray, device: DevicePlan) -> xr.DataArray:
        return deconvolve(da)  # numpy: no torch device

    return StagePlan(
        stage="deblur", suffix="_clean", params=params, first=first, dtype=dtype, staged=True
    )
