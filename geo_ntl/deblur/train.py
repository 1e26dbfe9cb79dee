"""Train NTL-Db-Net on blur-transfer pairs (CPU or GPU), with checkpoints and resume.

One training step is ``N_CRITIC`` WGAN-GP critic updates followed by one
generator update with ``L_adv + 100 (L_perc + L_1) + 200 L_HSI``
(:mod:`geo_ntl.deblur.losses`), Adam (lr 1e-3, beta1 0.5) for both networks
with a learning rate decaying linearly to zero.

Deviations from the paper, made for a CPU budget and for tiling (documented
in the model card):

* The generated batch of a step is computed once and reused by the step's
  five critic updates (each with fresh gradient-penalty interpolates); the
  critic is tiny, the generator's forward pass is not.
* Normalisation in two phases. For the first ``norm_freeze`` fraction of the
  steps the norm layers normalise per instance; then their running
  statistics are re-estimated over ``CALIBRATION_BATCHES`` batches with the
  current weights (dropout off, cumulative average) and frozen, and the rest
  of training adapts the network to those stored statistics, i.e. to exactly
  the function used at inference (see :mod:`geo_ntl.deblur.model`). With
  ``norm_freeze=0`` (the shipped model) the statistics are calibrated on the
  untrained network and the whole run trains the inference-time function:
  on night scenes, whose crops range from black to saturated, switching
  from per-instance to stored statistics mid-run cost more than the short
  CPU budget could recover.
* Optionally a flux term ``flux_weight * L_flux`` (:func:`losses.flux_loss`,
  block means of 24 px) is added to the generator loss: blooming moves light,
  and the pixel losses barely see it spread over a wide faint halo. Off (0)
  by default; the shipped model's value is in its meta.
* Optionally a lamp term ``lamp_weight * L_lamp`` (:func:`losses.lamp_loss`): L1
  averaged over the target's lamps and the 7 px around them only, where a lamp left
  wide or a dark ring dug around it barely moves the mean L1 of a whole crop.
* Optionally the generator starts from a weights file (``init_weights``, a name or a
  path: fine-tuning) instead of random weights, with the norm statistics stored in the
  file kept frozen throughout; its critic starts afresh.
* Optionally the adversarial term starts after ``adv_start`` steps of
  content-only training (0 by default in the library; the shipped model's
  value is in its meta).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geo_ntl import defaults
from geo_ntl.deblur import losses
from geo_ntl.deblur.blur_transfer import PairPool, make_pool, refresh_pool, sample_batch
from geo_ntl.deblur.model import Discriminator, Generator
from geo_ntl.exceptions import InputError, OutputExistsError, ParameterError

__all__ = [
    "TrainConfig",
    "read_run_config",
    "train",
    "calibrate_norm_stats",
    "set_norm_frozen",
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "GENERATOR_NAME",
]

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
GENERATOR_NAME = "generator.pt"
POOL_NAME = "pool.npz"
CONFIG_NAME = "config.json"
#: Batches used to re-estimate the running statistics before freezing them.
CALIBRATION_BATCHES = 32
#: Defaults of :class:`TrainConfig` that the command line shows too (from :mod:`geo_ntl.defaults`).
DEFAULT_STEPS = defaults.TRAIN_STEPS
DEFAULT_CROP = defaults.TRAIN_CROP
DEFAULT_BATCH = defaults.TRAIN_BATCH
DEFAULT_LR = defaults.TRAIN_LR
DEFAULT_BETA1 = 0.5


@dataclass
class TrainConfig:
    """Options of a training run (stored in the run folder and the weights meta)."""

    steps: int = DEFAULT_STEPS
    crop: int = DEFAULT_CROP
    batch: int = DEFAULT_BATCH
    seed: int = defaults.TRAIN_SEED
    lr: float = DEFAULT_LR
    beta1: float = DEFAULT_BETA1
    n_critic: int = losses.N_CRITIC
    gp_weight: float = losses.GP_WEIGHT
    content_weight: float = losses.CONTENT_WEIGHT
    hsi_weight: float = losses.HSI_WEIGHT
    adv_weight: float = 1.0
    flux_weight: float = defaults.TRAIN_FLUX_WEIGHT
    lamp_weight: float = defaults.TRAIN_LAMP_WEIGHT
    #: Train through the flux projection of inference (geo_ntl.deblur.flux): the loss sees the
    #: output geo-ntl deblur writes, so the network is not taught to fight the projection; an
    #: L1 on the raw output (weight content_weight) keeps the part the projection removes near
    #: the truth too.
    project_flux: bool = False
    adv_start: int = defaults.TRAIN_ADV_START
    norm_freeze: float = defaults.TRAIN_NORM_FREEZE
    n_cities: int = defaults.TRAIN_N_CITIES
    city_size: int = defaults.TRAIN_CITY_SIZE
    #: Steps between refreshes of the pool (a quarter of its cities replaced by new ones,
    #: :func:`~geo_ntl.deblur.blur_transfer.refresh_pool`); 0 keeps it fixed.
    refresh_every: int = defaults.TRAIN_REFRESH_EVERY
    checkpoint_every: int = defaults.TRAIN_CHECKPOINT_EVERY
    vgg_weights: str | None = None
    #: Folder of real blurred night images: their blooming statistics replace the shipped
    #: ones, and with a VGG-16 file they are the style images. None: the statistics shipped
    #: in geo_ntl/data and no style images, wherever geo_ntl is installed.
    real_blurred: str | None = None
    init_weights: str | None = None

    def check(self) -> None:
        """Raise :class:`ParameterError` for inconsistent options."""
        if self.steps < 1 or self.batch < 1 or self.n_cities < 1:
            raise ParameterError("steps, batch and n_cities must be >= 1")
        if self.crop < 96 or self.crop % 4:
            raise ParameterError(
                f"crop must be a multiple of 4 and >= 96 (the critic's four stride-3 "
                f"convolutions need it), got {self.crop}"
            )
        if self.crop > self.city_size:
            raise ParameterError(f"crop {self.crop} is larger than city_size {self.city_size}")
        if self.refresh_every < 0:
            raise ParameterError(
                f"refresh_every must be >= 0 steps (0: a fixed pool), got {self.refresh_every}"
            )
        if self.flux_weight < 0:
            raise ParameterError(f"flux_weight must be >= 0, got {self.flux_weight}")
        if self.lamp_weight < 0:
            raise ParameterError(f"lamp_weight must be >= 0, got {self.lamp_weight}")
        if not 0.0 <= self.norm_freeze <= 1.0:
            raise ParameterError(f"norm_freeze must be in [0, 1], got {self.norm_freeze}")


def _norm_layers(model: nn.Module) -> list[nn.InstanceNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.InstanceNorm2d)]


def set_norm_frozen(model: nn.Module, frozen: bool) -> None:
    """Make the norm layers use (and keep) their stored statistics, or not.

    Frozen norm layers are put in ``eval()`` mode, so even while the rest of
    the model trains they normalise with the running statistics and do not
    update them. Call after every ``model.train()``.
    """
    for m in _norm_layers(model):
        m.train(not frozen and model.training)


@torch.no_grad()
def calibrate_norm_stats(
    model: Generator,
    batches: list[torch.Tensor] | Callable[[], torch.Tensor],
    *,
    n: int | None = None,
) -> None:
    """Re-estimate the norm layers' running statistics as an exact average.

    Parameters
    ----------
    model : Generator
        Its norm layers' running statistics are reset and recomputed.
    batches : list of torch.Tensor or callable
        Input batches, or a function returning one batch per call.
    n : int, optional
        Number of calls when ``batches`` is callable.
    """
    was_training = model.training
    norms = _norm_layers(model)
    saved = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train(True)
    items = batches if isinstance(batches, list) else [batches() for _ in range(n or 1)]
    for x in items:
        model(x)
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    model.train(was_training)


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return rng.bit_generator.state  # type: ignore[return-value]  # a dict (numpy's stubs: Mapping)


def _load_stats(cfg: TrainConfig) -> dict:
    from geo_ntl.deblur.real_stats import load_shipped_stats, measure_images

    if cfg.real_blurred:
        return measure_images([cfg.real_blurred])
    return load_shipped_stats()


def _style_inputs(cfg: TrainConfig) -> tuple[object | None, list[np.ndarray] | None]:
    """VGG-16 features and real images for the style step, or ``(None, None)`` without it.

    The style step needs a ``vgg16`` file beside ``cfg.vgg_weights`` and real blurred
    images in the folder ``cfg.real_blurred``; without either, pairs are made with the
    real-blooming statistics substitute (:func:`_load_stats`).
    """
    if cfg.vgg_weights is None or not cfg.real_blurred:
        return None, None
    from geo_ntl.deblur.real_stats import load_image_rgb
    from geo_ntl.deblur.vgg import STYLE_LAYERS, load_vgg_features

    vgg16_path = Path(cfg.vgg_weights).with_name(
        Path(cfg.vgg_weights).name.replace("vgg13", "vgg16")
    )
    if not vgg16_path.is_file() or vgg16_path == Path(cfg.vgg_weights):
        return None, None
    vgg16 = load_vgg_features(vgg16_path, "vgg16", end=max(STYLE_LAYERS) + 1)
    d = Path(cfg.real_blurred)
    srcs = sorted(p for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".tif"))
    imgs = [load_image_rgb(p)[:, ::4, ::4].copy() for p in srcs]
    return (vgg16, imgs) if imgs else (None, None)


def train(
    out_dir: str | os.PathLike[str],
    *,
    config: TrainConfig | None = None,
    device: str | None = "auto",
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
    threads: int | None = None,
) -> dict:
    """Train NTL-Db-Net and export the generator.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Run folder: ``config.json``, ``pool.npz`` (training pairs),
        ``checkpoint.pt``, ``log.jsonl`` (one JSON line per step) and, at the
        end, ``generator.pt`` (loadable by :func:`geo_ntl.deblur.get_model`).
    config : TrainConfig, optional
        Options; defaults to ``TrainConfig()``. On resume the stored one is used: a
        ``config`` that differs from it in anything but ``steps`` (which may be raised)
        and ``checkpoint_every`` is an error (start from :func:`read_run_config`).
    device : str, default "auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    resume : bool, default False
        Continue from ``checkpoint.pt``; without it an existing checkpoint
        raises :class:`OutputExistsError`.
    progress : bool, default True
        Show a rich progress bar.
    command : str, optional
        The command line, recorded in the weights meta.
    threads : int, optional
        CPU threads for torch (``torch.set_num_threads``); on a CPU shared
        with other jobs one thread is often several times faster than two.

    Returns
    -------
    dict
        Summary: steps, seconds, final losses, paths.

    Raises
    ------
    OutputExistsError
        If ``out_dir`` holds a checkpoint and ``resume`` is False.
    InputError
        If ``resume`` is True and there is no checkpoint, or the run's config, pool or
        checkpoint is corrupt.
    ParameterError
        If a resumed run's ``config`` changes the stored one (see ``config``).

    Notes
    -----
    A run that fails removes the folders it created, unless they hold a checkpoint
    (or files of other programs); ``out_dir`` and its parents are created as needed.
    On CPU a run is deterministic for a seed (``torch.use_deterministic_algorithms``
    and seeded NumPy/torch generators, restored on resume).
    """
    out = Path(out_dir)
    if config is not None and not resume:
        config.check()  # before the run folder is made
    created = _missing_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _train(
            out,
            config=config,
            device=device,
            resume=resume,
            progress=progress,
            command=command,
            threads=threads,
        )
    except BaseException:
        _remove_failed_run(out, created)
        raise


#: Files a training run writes into its folder.
RUN_FILES = (CONFIG_NAME, POOL_NAME, CHECKPOINT_NAME, LOG_NAME, GENERATOR_NAME)
#: Parameters the messages name (``options`` of GeoNTLError: the CLI shows them as flags).
_OUT_DIR = {"`out_dir`": "out_dir"}
_RESUME = {"resume=True": "resume"}
#: Options a resumed run may change: only how often it saves (and ``steps``, which may rise).
RESUME_MUTABLE = ("steps", "checkpoint_every")


def _missing_folders(out: Path) -> list[Path]:
    """``out`` and its parents that do not exist yet, deepest first."""
    missing = []
    folder = out.absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_failed_run(out: Path, created: list[Path]) -> None:
    """Remove the folders a failed run made itself, if they hold only the run's own files.

    A folder holding a checkpoint is kept: the run can be resumed from it.
    """
    if not created or (out / CHECKPOINT_NAME).exists():
        return
    try:
        entries = list(out.iterdir())
        if any(e.name not in RUN_FILES and not e.name.startswith(".") for e in entries):
            return
        for entry in entries:
            if entry.is_file():
                entry.unlink()
        for folder in created:
            folder.rmdir()
    except OSError:
        return


def read_run_config(out_dir: str | os.PathLike[str]) -> TrainConfig:
    """Read the configuration stored in a run folder's ``config.json``.

    Raises
    ------
    InputError
        If the file is missing, corrupt or not a geo_ntl training configuration.
    """
    path = Path(out_dir) / CONFIG_NAME
    if not path.is_file():
        raise InputError(f"{path} does not exist; it is not a training run folder")
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict):
            raise TypeError(f"holds a {type(stored).__name__}, not an object")
        stored.setdefault("refresh_every", 0)  # runs from before refreshes had a fixed pool
        return TrainConfig(**stored)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path} is corrupt or not a geo_ntl training configuration ({exc}); "
            "start a new run with another `out_dir`",
            options=_OUT_DIR,
        ) from exc


def _check_resumed_config(given: TrainConfig, stored: TrainConfig, out: Path) -> None:
    changed = [
        f"{name}={getattr(given, name)!r} (the run has {getattr(stored, name)!r})"
        for name in asdict(stored)
        if name not in RESUME_MUTABLE and getattr(given, name) != getattr(stored, name)
    ]
    if given.steps < stored.steps:
        changed.append(f"steps={given.steps} is lower than the run's {stored.steps}")
    if changed:
        raise ParameterError(
            f"a resumed run keeps the configuration stored in {out / CONFIG_NAME}, but "
            + "; ".join(changed)
            + "; drop those options (steps may only be raised) or start a new run with "
            "another `out_dir`",
            options=_OUT_DIR,
        )


def _corrupt(path: Path, exc: BaseException, what: str) -> InputError:
    return InputError(
        f"{path} is corrupt or not a geo_ntl {what} ({type(exc).__name__}: {exc}); "
        "start a new run with another `out_dir`",
        options=_OUT_DIR,
    )


def _train(
    out: Path,
    *,
    config: TrainConfig | None,
    device: str | None,
    resume: bool,
    progress: bool,
    command: str | None,
    threads: int | None,
) -> dict:
    ckpt_path = out / CHECKPOINT_NAME
    cfg = _run_config(out, config, resume)
    cfg.check()
    dev = _prepare_torch(cfg, device, threads)
    init_state = None
    if cfg.init_weights and not resume:  # checked before the (slow) pool of pairs is made
        init_state = _initial_generator_state(cfg.init_weights)
    pool = _load_or_make_pool(out / POOL_NAME, cfg)
    (out / CONFIG_NAME).write_text(json.dumps(asdict(cfg), indent=1))
    run = _new_run(cfg, dev, init_state)
    if resume:
        _restore_checkpoint(run, ckpt_path, dev)
    # A fine-tuned generator keeps the norm statistics it was trained with, frozen throughout.
    freeze_at = 0 if cfg.init_weights else int(round(cfg.norm_freeze * cfg.steps))
    last, pool = _train_loop(run, cfg, pool, dev, out, freeze_at=freeze_at, progress=progress)
    return _export_generator(run, cfg, pool, dev, out, last=last, command=command)


def _run_config(out: Path, config: TrainConfig | None, resume: bool) -> TrainConfig:
    """Return the configuration a run uses: the given one, or on resume the stored one."""
    ckpt_path = out / CHECKPOINT_NAME
    if not resume:
        if ckpt_path.exists():
            raise OutputExistsError(
                f"{out} already holds a training run ({CHECKPOINT_NAME}); pass resume=True to "
                "continue it or choose another `out_dir`",
                options={**_RESUME, **_OUT_DIR},
            )
        return config or TrainConfig()
    if not ckpt_path.is_file():
        raise InputError(
            f"resume=True given but {ckpt_path} does not exist; start without resume=True",
            options=_RESUME,
        )
    stored = read_run_config(out)
    if config is None:
        return stored
    _check_resumed_config(config, stored, out)
    return TrainConfig(
        **{**asdict(stored), "steps": config.steps, "checkpoint_every": config.checkpoint_every}
    )


def _prepare_torch(cfg: TrainConfig, device: str | None, threads: int | None) -> torch.device:
    """Resolve the device, set the thread count, seed torch and make CPU runs deterministic."""
    from geo_ntl._device import resolve_device

    dev = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(int(threads))
    torch.manual_seed(cfg.seed)
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    return dev


def _initial_generator_state(init_weights: str) -> dict:
    """State dict of the generator a fine-tuning run starts from (a weights name or path)."""
    from geo_ntl.deblur.weights import load_generator, resolve_weights

    path, sha = resolve_weights(init_weights)
    return load_generator(path, sha256=sha).state_dict()


def _load_or_make_pool(pool_path: Path, cfg: TrainConfig) -> PairPool:
    """Read the run's pool of training pairs from ``pool_path``, or make and save it there."""
    if pool_path.is_file():
        try:
            return PairPool.load(pool_path)
        except Exception as exc:  # zip, pickle, key or shape errors of a damaged file
            raise _corrupt(pool_path, exc, "pool of training pairs") from exc
    pool = make_pool(n_cities=cfg.n_cities, size=cfg.city_size, seed=cfg.seed, **_pair_sources(cfg))
    pool.save(pool_path)
    return pool


def _pair_sources(cfg: TrainConfig) -> dict[str, Any]:
    """Return the blooming statistics and style inputs that new training pairs are made with."""
    vgg16, style_imgs = _style_inputs(cfg)
    return {"stats": _load_stats(cfg), "vgg16": vgg16, "style_images": style_imgs}


def _refreshed(pool: PairPool, cfg: TrainConfig, step: int, pool_path: Path) -> PairPool:
    """Apply the refreshes due by ``step`` that ``pool`` lacks, saving it after each."""
    due = step // cfg.refresh_every if cfg.refresh_every else 0
    if pool.generation >= due:
        return pool
    sources = _pair_sources(cfg)
    while pool.generation < due:
        pool = refresh_pool(pool, pool.generation + 1, size=cfg.city_size, seed=cfg.seed, **sources)
        pool.save(pool_path)
    return pool


@dataclass
class _Run:
    """Everything a training run updates and checkpoints."""

    gen: Generator
    critic: Discriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    perceptual: nn.Module
    rng: np.random.Generator
    gp_gen: torch.Generator
    step: int = 0
    elapsed: float = 0.0


def _new_run(cfg: TrainConfig, dev: torch.device, init_state: dict | None) -> _Run:
    """Fresh networks, optimisers and generators, seeded from ``cfg.seed``."""
    gen, critic = Generator().to(dev), Discriminator().to(dev)
    if init_state is not None:
        gen.load_state_dict(init_state)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    return _Run(
        gen=gen,
        critic=critic,
        opt_g=opt_g,
        opt_d=opt_d,
        perceptual=losses.make_perceptual(cfg.vgg_weights).to(dev),
        rng=np.random.default_rng(cfg.seed),
        gp_gen=torch.Generator().manual_seed(cfg.seed + 1),
    )


def _restore_checkpoint(run: _Run, ckpt_path: Path, dev: torch.device) -> None:
    """Load networks, optimisers, step, time and every random state from a checkpoint.

    Read onto the CPU whatever device wrote it and ``dev`` is: the random states must stay CPU
    byte tensors (``map_location=dev`` moved them to the GPU and ``set_rng_state`` refused
    them), and ``load_state_dict`` copies the weights and optimiser state to ``dev``.
    """
    del dev  # the networks in `run` are on it already
    try:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        run.gen.load_state_dict(ck["generator"])
        run.critic.load_state_dict(ck["critic"])
        run.opt_g.load_state_dict(ck["opt_g"])
        run.opt_d.load_state_dict(ck["opt_d"])
        run.step, run.elapsed = int(ck["step"]), float(ck["elapsed"])
        run.rng.bit_generator.state = ck["np_rng"]
        run.gp_gen.set_state(ck["gp_rng"])
        torch.set_rng_state(ck["torch_rng"])
    except Exception as exc:  # truncated, foreign or from another architecture
        raise _corrupt(ckpt_path, exc, "training checkpoint") from exc


def _save_checkpoint(run: _Run, ckpt_path: Path) -> None:
    """Write the checkpoint atomically (temporary file, then rename)."""
    tmp = ckpt_path.with_suffix(".tmp")
    torch.save(
        {
            "generator": run.gen.state_dict(),
            "critic": run.critic.state_dict(),
            "opt_g": run.opt_g.state_dict(),
            "opt_d": run.opt_d.state_dict(),
            "step": run.step,
            "elapsed": run.elapsed,
            "np_rng": _rng_state(run.rng),
            "gp_rng": run.gp_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        },
        tmp,
    )
    os.replace(tmp, ckpt_path)


def _sample(
    pool: PairPool, cfg: TrainConfig, rng: np.random.Generator, dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of (blurred, sharp) crops on ``dev``."""
    x, y = sample_batch(pool, batch=cfg.batch, crop=cfg.crop, rng=rng)
    return torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)


def _sample_inputs(
    pool: PairPool, cfg: TrainConfig, rng: np.random.Generator, dev: torch.device
) -> torch.Tensor:
    """Return the blurred half of :func:`_sample` (what norm calibration feeds the generator)."""
    return _sample(pool, cfg, rng, dev)[0]


def _lr_scale(step: int, steps: int) -> float:
    """Linear learning-rate decay from 1 at step 0 to 0 at ``steps``."""
    return max(0.0, 1.0 - step / steps)


def _progress_bar(cfg: TrainConfig, step: int) -> tuple[Any, Any]:
    """Start a rich progress bar over the run's steps; return it and its task."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    bar.start()
    return bar, bar.add_task("train", total=cfg.steps, completed=step, info="")


def _train_loop(
    run: _Run,
    cfg: TrainConfig,
    pool: PairPool,
    dev: torch.device,
    out: Path,
    *,
    freeze_at: int,
    progress: bool,
) -> tuple[dict, PairPool]:
    """Run the remaining steps, logging, checkpointing and refreshing the pool.

    Returns the last log record and the pool as it ends.
    """
    log = (out / LOG_NAME).open("a")
    bar, task = _progress_bar(cfg, run.step) if progress else (None, None)
    last: dict = {}
    try:
        # A run stopped between a refresh's checkpoint and the pool's save catches up here.
        pool = _refreshed(pool, cfg, run.step, out / POOL_NAME)
        while run.step < cfg.steps:
            last = _train_step(run, cfg, pool, dev, freeze_at=freeze_at)
            log.write(json.dumps(last) + "\n")
            log.flush()
            if bar is not None:
                bar.update(
                    task, completed=run.step, info=f"L1 {last['l1']:.4f} HSI {last['hsi']:.5f}"
                )
            refresh = bool(cfg.refresh_every) and run.step % cfg.refresh_every == 0
            if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps or refresh:
                # checkpoint first: the saved pool is never ahead of the saved run
                _save_checkpoint(run, out / CHECKPOINT_NAME)
            if refresh and run.step < cfg.steps:
                pool = _refreshed(pool, cfg, run.step, out / POOL_NAME)
    finally:
        log.close()
        if bar is not None:
            bar.stop()
    return last, pool


def _prepare_step(
    run: _Run, cfg: TrainConfig, pool: PairPool, dev: torch.device, *, freeze_at: int
) -> bool:
    """Train mode, norm calibration at ``freeze_at``, learning rates; return whether norms are frozen."""
    run.gen.train()
    run.critic.train()
    if run.step == freeze_at and not cfg.init_weights:
        sampler = functools.partial(_sample_inputs, pool, cfg, run.rng, dev)
        calibrate_norm_stats(run.gen, sampler, n=CALIBRATION_BATCHES)
    frozen = run.step >= freeze_at
    for group in run.opt_g.param_groups + run.opt_d.param_groups:
        group["lr"] = cfg.lr * _lr_scale(run.step, cfg.steps)  # linear decay to zero
    set_norm_frozen(run.gen, frozen)
    return frozen


def _project(cfg: TrainConfig, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Return ``pred`` projected as at inference with ``project_flux``, else unchanged."""
    if not cfg.project_flux:
        return pred
    from geo_ntl.deblur.flux import conserve_flux_torch

    return conserve_flux_torch(x, pred)


def _generate(run: _Run, cfg: TrainConfig, x: torch.Tensor) -> torch.Tensor:
    """Return the generator's output for ``x``, projected as at inference with ``project_flux``."""
    return _project(cfg, x, run.gen(x))


def _critic_updates(
    run: _Run, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor
) -> dict[str, float]:
    """``n_critic`` WGAN-GP critic updates on one generated batch; return the last loss parts."""
    with torch.no_grad():
        fake = _generate(run, cfg, x)
    d_parts = {"wasserstein": 0.0, "gp": 0.0}
    for _ in range(cfg.n_critic):
        run.opt_d.zero_grad(set_to_none=True)
        d_loss, d_parts = losses.critic_loss(
            run.critic, y, fake, gp_weight=cfg.gp_weight, generator=run.gp_gen
        )
        d_loss.backward()
        run.opt_d.step()
    return d_parts


def _generator_update(
    run: _Run, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, *, use_adv: bool
) -> dict[str, torch.Tensor]:
    """One generator update; return its loss terms (``g_loss`` their weighted sum)."""
    run.opt_g.zero_grad(set_to_none=True)
    raw = run.gen(x)
    pred = _project(cfg, x, raw)
    zero = pred.new_zeros(())
    terms = {
        "l1": (pred - y).abs().mean(),
        "perceptual": run.perceptual(pred, y),
        "hsi": losses.hsi_loss(pred, y),
        "adv": losses.generator_adversarial_loss(run.critic, pred) if use_adv else zero,
        "flux": losses.flux_loss(pred, y) if cfg.flux_weight > 0 else zero,
        "lamp": losses.lamp_loss(pred, y) if cfg.lamp_weight > 0 else zero,
        # The projection removes the low-pass of the correction, so the loss on its output alone
        # leaves that part free: an L1 on the raw output keeps it near the truth too.
        "raw_l1": (raw - y).abs().mean() if cfg.project_flux else zero,
    }
    g_loss = (
        cfg.adv_weight * terms["adv"]
        + cfg.content_weight * (terms["perceptual"] + terms["l1"])
        + cfg.hsi_weight * terms["hsi"]
        + cfg.flux_weight * terms["flux"]
        + cfg.lamp_weight * terms["lamp"]
        + cfg.content_weight * terms["raw_l1"]
    )
    g_loss.backward()
    run.opt_g.step()
    return {"g_loss": g_loss, **terms}


def _train_step(
    run: _Run, cfg: TrainConfig, pool: PairPool, dev: torch.device, *, freeze_at: int
) -> dict:
    """One training step (critic updates, then a generator update); return its log record."""
    t0 = time.perf_counter()
    frozen = _prepare_step(run, cfg, pool, dev, freeze_at=freeze_at)
    x, y = _sample(pool, cfg, run.rng, dev)
    use_adv = cfg.adv_weight > 0 and run.step >= cfg.adv_start
    d_parts = _critic_updates(run, cfg, x, y) if use_adv else {"wasserstein": 0.0, "gp": 0.0}
    terms = _generator_update(run, cfg, x, y, use_adv=use_adv)
    run.step += 1
    run.elapsed += time.perf_counter() - t0
    return {
        "step": run.step,
        **{name: terms[name].item() for name in _LOGGED_TERMS},
        **d_parts,
        "lr": run.opt_g.param_groups[0]["lr"],
        "norm_frozen": frozen,
        "elapsed_s": round(run.elapsed, 2),
    }


#: Generator loss terms in the order of a log record.
_LOGGED_TERMS = ("g_loss", "adv", "l1", "perceptual", "hsi", "flux", "lamp", "raw_l1")


def _export_generator(
    run: _Run,
    cfg: TrainConfig,
    pool: PairPool,
    dev: torch.device,
    out: Path,
    *,
    last: dict,
    command: str | None,
) -> dict:
    """Save the generator with its training meta; return the run's summary."""
    from geo_ntl.deblur.weights import save_weights

    run.gen.eval()
    style = "VGG-16 Gram matrices" if cfg.vgg_weights else "real-blooming statistics substitute"
    meta = {
        "training": {
            "data": "blur-transfer pairs from geo_ntl.simulate procedural cities "
            f"({cfg.n_cities} cities of {cfg.city_size}px + {pool.n_black} black pairs, seed "
            f"{cfg.seed}"
            + (
                f"; a quarter of the cities replaced every {cfg.refresh_every} steps, "
                f"{pool.generation} times"
                if cfg.refresh_every
                else ""
            )
            + "); style step: "
            + style,
            "config": asdict(cfg),
            "steps": run.step,
            "seconds": round(run.elapsed, 1),
            "hardware": _hardware(dev),
            "torch": torch.__version__,
            "command": command,
            "perceptual": run.perceptual.name,
        },
        "final_losses": last,
    }
    save_weights(run.gen, out / GENERATOR_NAME, meta=meta, overwrite=True)
    return {
        "steps": run.step,
        "seconds": run.elapsed,
        "last": last,
        "generator": str(out / GENERATOR_NAME),
    }
