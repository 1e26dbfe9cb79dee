"""One source for every default: geo_ntl.defaults, read by the command line and the library."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from geo_ntl import defaults


def _default(func, name):
    return inspect.signature(func).parameters[name].default


def test_defaults__library_restoration_defaults_are_the_shared_ones():
    from geo_ntl.deblur import DEFAULT_TILE, inference, psf_gan
    from geo_ntl.enhance import enhance
    from geo_ntl.pipeline import DeblurStage, EnhanceStage

    assert DEFAULT_TILE == _default(inference.deblur, "tile") == defaults.DEBLUR_TILE
    assert _default(psf_gan.solve, "tile") == defaults.DEBLUR_TILE
    assert DeblurStage().tile == defaults.DEBLUR_TILE
    from geo_ntl.deblur import physics
    from geo_ntl.enhance import api as enhance_api

    # The physics baseline tiles like the GAN: the deblur stage's tile, whichever method.
    assert physics.DEFAULT_TILE == _default(physics.deconvolve, "tile") == defaults.DEBLUR_TILE
    assert _default(physics.physics_stage, "tile") == defaults.DEBLUR_TILE
    assert enhance_api.DEFAULT_TILE == defaults.ENHANCE_TILE
    assert _default(enhance, "tile") == defaults.ENHANCE_TILE
    assert EnhanceStage().tile is None  # ENHANCE_TILE alone, the deblur tile after deblur


def test_defaults__cluster_signature_defaults_are_the_shared_ones():
    from geo_ntl.spatial import cluster

    assert _default(cluster, "cell_size") == defaults.CLUSTER_CELL_SIZE
    assert _default(cluster, "k") == defaults.CLUSTER_K
    assert _default(cluster, "permutations") == defaults.CLUSTER_PERMUTATIONS
    assert _default(cluster, "alpha") == defaults.CLUSTER_ALPHA
    from geo_ntl.spatial import grid, neighbours, stats

    assert grid.DEFAULT_CELL_SIZE == defaults.CLUSTER_CELL_SIZE
    assert neighbours.DEFAULT_K == defaults.CLUSTER_K
    assert stats.PERMUTATIONS == defaults.CLUSTER_PERMUTATIONS
    assert stats.DEFAULT_ALPHA == defaults.CLUSTER_ALPHA


#: TrainConfig field -> its default in geo_ntl.defaults (which TrainConfig imports).
TRAIN_FIELDS = {
    "steps": defaults.TRAIN_STEPS,
    "crop": defaults.TRAIN_CROP,
    "batch": defaults.TRAIN_BATCH,
    "seed": defaults.TRAIN_SEED,
    "n_cities": defaults.TRAIN_N_CITIES,
    "city_size": defaults.TRAIN_CITY_SIZE,
    "lr": defaults.TRAIN_LR,
    "adv_start": defaults.TRAIN_ADV_START,
    "flux_weight": defaults.TRAIN_FLUX_WEIGHT,
    "lamp_weight": defaults.TRAIN_LAMP_WEIGHT,
    "norm_freeze": defaults.TRAIN_NORM_FREEZE,
    "checkpoint_every": defaults.TRAIN_CHECKPOINT_EVERY,
    "refresh_every": defaults.TRAIN_REFRESH_EVERY,
}


def test_defaults__train_config_defaults_are_the_shared_ones():
    pytest.importorskip("torch")
    from geo_ntl.deblur.train import TrainConfig

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert {name: fields[name] for name in TRAIN_FIELDS} == TRAIN_FIELDS


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("deblur", "tile", defaults.DEBLUR_TILE),
        ("enhance", "tile", defaults.ENHANCE_TILE),
        ("cluster", "cell_size", defaults.CLUSTER_CELL_SIZE),
        ("cluster", "k", defaults.CLUSTER_K),
        ("cluster", "permutations", defaults.CLUSTER_PERMUTATIONS),
        ("cluster", "alpha", defaults.CLUSTER_ALPHA),
        *(("train", name, value) for name, value in TRAIN_FIELDS.items()),
    ],
)
def test_defaults__command_options_read_them(command, option, value):
    from geo_ntl.cli.main import cli

    params = {p.name: p for p in cli.get_command(None, command).params}
    assert params[option].default == value
