"""``geo-ntl train``: train the NTL-Db-Net deblooming GAN."""

from __future__ import annotations

import shlex
import sys

import click
from click.core import ParameterSource

from geo_ntl import defaults
from geo_ntl.cli.options import HiddenAliasOption, device_opt

#: Command-line options that are fields of TrainConfig (same names).
_CONFIG_OPTIONS = (
    "steps",
    "crop",
    "batch",
    "seed",
    "n_cities",
    "city_size",
    "refresh_every",
    "lr",
    "adv_start",
    "flux_weight",
    "lamp_weight",
    "project_flux",
    "init_weights",
    "norm_freeze",
    "checkpoint_every",
    "vgg_weights",
    "real_blurred",
)


@click.command()
@click.option(
    "--out-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder (checkpoints, loss log, pool of pairs, generator.pt); created if missing.",
)
@click.option(
    "--steps",
    default=defaults.TRAIN_STEPS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Generator updates (each after 5 critic updates).",
)
@click.option(
    "--crop",
    default=defaults.TRAIN_CROP,
    show_default=True,
    type=click.IntRange(min=96),
    help="Training crop side in pixels (multiple of 4).",
)
@click.option(
    "--batch-size",
    "--batch",
    "batch",
    cls=HiddenAliasOption,
    hidden_aliases=("--batch",),
    default=defaults.TRAIN_BATCH,
    show_default=True,
    type=click.IntRange(min=1),
    help="Crops per step.",
)
@click.option(
    "--seed",
    default=defaults.TRAIN_SEED,
    show_default=True,
    type=int,
    help="Seed of data and weights.",
)
@click.option(
    "--cities",
    "n_cities",
    default=defaults.TRAIN_N_CITIES,
    show_default=True,
    type=click.IntRange(min=1),
    help="Procedural cities in the pool of training pairs.",
)
@click.option(
    "--city-size",
    default=defaults.TRAIN_CITY_SIZE,
    show_default=True,
    type=click.IntRange(min=96),
    help="Side of each procedural city in pixels.",
)
@click.option(
    "--lr",
    default=defaults.TRAIN_LR,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Adam learning rate of both networks (decays linearly to 0); the paper's is 1e-3.",
)
@click.option(
    "--adv-start",
    default=defaults.TRAIN_ADV_START,
    show_default=True,
    type=click.IntRange(min=0),
    help="Steps of content-only training before the adversarial loss starts.",
)
@click.option(
    "--flux-weight",
    default=defaults.TRAIN_FLUX_WEIGHT,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Weight of the block-flux loss (light moved, not created; not in the paper).",
)
@click.option(
    "--refresh-every",
    default=defaults.TRAIN_REFRESH_EVERY,
    show_default=True,
    type=click.IntRange(min=0),
    help="Steps between refreshes of the pool: a quarter of its cities is replaced by new ones "
    "(0: a fixed pool).",
)
@click.option(
    "--lamp-weight",
    default=defaults.TRAIN_LAMP_WEIGHT,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Weight of the L1 loss over lamps and the 7 px around them (not in the paper).",
)
@click.option(
    "--project-flux/--no-project-flux",
    default=False,
    show_default=True,
    help="Train through the light-conserving projection that geo-ntl deblur applies "
    "(the loss sees the written output; not in the paper).",
)
@click.option(
    "--init-weights",
    help="Start the generator from these weights (a model name or a file: fine-tuning) "
    "instead of random ones; their norm statistics stay frozen.",
)
@click.option(
    "--norm-freeze",
    default=defaults.TRAIN_NORM_FREEZE,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Fraction of steps after which the norm statistics are calibrated and frozen.",
)
@click.option(
    "--checkpoint-every",
    default=defaults.TRAIN_CHECKPOINT_EVERY,
    show_default=True,
    type=click.IntRange(min=1),
    help="Steps between checkpoints.",
)
@device_opt
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out-dir from its checkpoint, with its stored options "
    "(only --steps may be raised, and --checkpoint-every changed).",
)
@click.option(
    "--vgg-weights",
    type=click.Path(dir_okay=False),
    help="Local torchvision VGG-13 state dict for the perceptual loss (a vgg16 file "
    "beside it enables the VGG style transfer); default: SSIM + gradient substitute.",
)
@click.option(
    "--real-blurred",
    type=click.Path(file_okay=False),
    help="Folder of real blurred night images to measure blooming statistics on "
    "(also the style images with a vgg16 file; default: the shipped statistics, no style images).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="CPU threads for torch (default: torch's choice; 1 is faster on a busy CPU).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train(
    out_dir: str,
    steps: int,
    crop: int,
    batch: int,
    seed: int,
    n_cities: int,
    city_size: int,
    refresh_every: int,
    lr: float,
    adv_start: int,
    flux_weight: float,
    lamp_weight: float,
    project_flux: bool,
    init_weights: str | None,
    norm_freeze: float,
    checkpoint_every: int,
    device: str,
    resume: bool,
    vgg_weights: str | None,
    real_blurred: str | None,
    threads: int | None,
    no_progress: bool,
) -> None:
    """Train the deblooming GAN on blur-transfer pairs of procedural cities.

    Writes OUT_DIR/generator.pt (use it with `geo-ntl deblur --weights`),
    OUT_DIR/checkpoint.pt (resume with --resume) and OUT_DIR/log.jsonl.

    \b
    Examples:
      geo-ntl train --out-dir runs/a --steps 2000
      geo-ntl train --out-dir runs/a --steps 4000 --resume
      geo-ntl train --out-dir runs/b --real-blurred my_scenes/ --device cuda
      geo-ntl train --out-dir runs/c --init-weights ntl-db-net-jilin1-sim --lamp-weight 100
    """
    from dataclasses import replace
    from pathlib import Path

    from geo_ntl.deblur.train import CONFIG_NAME, TrainConfig, read_run_config
    from geo_ntl.deblur.train import train as run_training

    cfg = TrainConfig(
        steps=steps,
        crop=crop,
        batch=batch,
        seed=seed,
        n_cities=n_cities,
        city_size=city_size,
        refresh_every=refresh_every,
        lr=lr,
        adv_start=adv_start,
        flux_weight=flux_weight,
        lamp_weight=lamp_weight,
        project_flux=project_flux,
        init_weights=init_weights,
        norm_freeze=norm_freeze,
        checkpoint_every=checkpoint_every,
        vgg_weights=vgg_weights,
        real_blurred=real_blurred,
    )
    if resume and (Path(out_dir) / CONFIG_NAME).is_file():
        # A resumed run keeps its stored configuration; only the options given on this
        # command line are compared with it (and refused if they change it).
        ctx = click.get_current_context()
        given = {
            name: getattr(cfg, name)
            for name in _CONFIG_OPTIONS
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        }
        cfg = replace(read_run_config(out_dir), **given)
    command = None
    if "train" in sys.argv:
        command = "geo-ntl " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("train") :])
    summary = run_training(
        out_dir,
        config=cfg,
        device=device,
        resume=resume,
        progress=not no_progress,
        command=command,
        threads=threads,
    )
    click.echo(
        f"trained {summary['steps']} steps in {summary['seconds']:.0f} s; "
        f"generator: {summary['generator']}"
    )
