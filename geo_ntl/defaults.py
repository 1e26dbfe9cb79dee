"""Default values that the library and the command line share, written once.

This module imports nothing, so the command line reads its option defaults
from here without loading numpy, xarray or torch (``geo-ntl --help`` stays
fast). One module for the whole package rather than one per subpackage: a
``geo_ntl.deblur.defaults`` would import ``geo_ntl.deblur`` -- and with it
xarray -- first.

The library's functions and constants (``geo_ntl.deblur.DEFAULT_TILE``,
``TrainConfig``'s fields, ``geo_ntl.spatial.grid.DEFAULT_CELL_SIZE``...) take
their values from these; ``tests/test_defaults.py`` checks that they do.
"""

from __future__ import annotations

__all__ = [
    "CLUSTER_ALPHA",
    "CLUSTER_CELL_SIZE",
    "CLUSTER_K",
    "CLUSTER_PERMUTATIONS",
    "DEBLUR_TILE",
    "ENHANCE_TILE",
    "TRAIN_ADV_START",
    "TRAIN_BATCH",
    "TRAIN_CHECKPOINT_EVERY",
    "TRAIN_CITY_SIZE",
    "TRAIN_CROP",
    "TRAIN_FLUX_WEIGHT",
    "TRAIN_LAMP_WEIGHT",
    "TRAIN_LR",
    "TRAIN_NORM_FREEZE",
    "TRAIN_N_CITIES",
    "TRAIN_REFRESH_EVERY",
    "TRAIN_SEED",
    "TRAIN_STEPS",
]

# --- restoration -------------------------------------------------------------------------

#: Tile edge of the deblur stage in pixels, halo excluded, for the GAN
#: (``geo_ntl.deblur.DEFAULT_TILE``) and the physics baseline (``geo_ntl.deblur.physics``).
DEBLUR_TILE = 2048
#: Tile edge of the ASM enhancer in pixels, halo excluded (:func:`geo_ntl.enhance.enhance`).
ENHANCE_TILE = 1024

# --- training (fields of geo_ntl.deblur.train.TrainConfig) -------------------------------

#: Generator updates (each after the critic's updates).
TRAIN_STEPS = 2000
#: Training crop side in pixels (multiple of 4).
TRAIN_CROP = 128
#: Crops per step.
TRAIN_BATCH = 4
#: Seed of the data and the initial weights.
TRAIN_SEED = 0
#: Procedural cities in the pool of training pairs.
TRAIN_N_CITIES = 48
#: Side of each procedural city in pixels.
TRAIN_CITY_SIZE = 256
#: Adam learning rate of both networks (the paper's).
TRAIN_LR = 1e-3
#: Steps of content-only training before the adversarial loss starts.
TRAIN_ADV_START = 0
#: Weight of the block-flux loss.
TRAIN_FLUX_WEIGHT = 0.0
#: Weight of the L1 loss over lamps.
TRAIN_LAMP_WEIGHT = 0.0
#: Fraction of the steps after which the norm statistics are calibrated and frozen.
TRAIN_NORM_FREEZE = 0.3
#: Steps between checkpoints.
TRAIN_CHECKPOINT_EVERY = 100
#: Steps between refreshes of the pool of training pairs: each replaces a quarter of its cities
#: with new ones, so training draws fresh pairs throughout; 0 keeps the pool fixed.
TRAIN_REFRESH_EVERY = 500

# --- spatial clustering (geo_ntl.spatial.cluster) ----------------------------------------

#: Grid cell size in metres.
CLUSTER_CELL_SIZE = 50.0
#: Neighbours of k-nearest-neighbour weights.
CLUSTER_K = 8
#: Conditional permutations of the Moran and LISA tests.
CLUSTER_PERMUTATIONS = 999
#: Significance level of the LISA labels.
CLUSTER_ALPHA = 0.05
