"""NTL-Db-Net generator and discriminator (PyTorch).

The layer layout follows the NTL-Db-Net description (Li et al.): a ResNet-style
encoder/decoder generator whose bottleneck holds three *multi-path* residual
blocks (three parallel branches with dilations 1, 2 and 3), and a small
strided discriminator with a CBAM attention block.

Normalisation is instance normalisation **with running statistics**
(``track_running_stats=True``). In training mode it normalises each image by
its own statistics, as instance norm does; in evaluation mode it applies the
stored running mean and variance, which turns every norm layer into a fixed
per-channel affine map. The generator in ``eval()`` mode is therefore a
translation-equivariant function of its input (up to the stride-4 sampling
grid and the reflection padding at the borders of whatever it is given), so a
scene cut into tiles with a sufficient halo gives the same result as the scene
processed whole. :func:`receptive_field` measures how wide that halo must be.

This module imports torch at import time; ``geo_ntl/__init__.py`` does not
import it.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

__all__ = [
    "GENERATOR_ARCH",
    "DISCRIMINATOR_ARCH",
    "DILATIONS",
    "N_RES_BLOCKS",
    "SCALE_FACTOR",
    "Generator",
    "Discriminator",
    "CBAM",
    "MultiPathResBlock",
    "count_parameters",
    "theoretical_receptive_radius",
    "receptive_field",
]

#: Architecture tag stored with every weights file; loading checks it.
GENERATOR_ARCH = "ntl-db-net-generator-v1"
#: Architecture tag of the discriminator (saved in training checkpoints only).
DISCRIMINATOR_ARCH = "ntl-db-net-discriminator-v1"
#: Dilations of the three branches of a multi-path residual block.
DILATIONS = (1, 2, 3)
#: Number of multi-path residual blocks in the bottleneck.
N_RES_BLOCKS = 3
#: Total down-sampling factor of the generator; inputs are padded to a multiple.
SCALE_FACTOR = 4
#: Dropout probability inside the residual branches (active in training only).
DROPOUT = 0.5
#: Momentum of the running statistics of the norm layers.
NORM_MOMENTUM = 0.1


def _norm(channels: int) -> nn.InstanceNorm2d:
    """Instance norm with affine parameters and running statistics."""
    return nn.InstanceNorm2d(
        channels, affine=True, track_running_stats=True, momentum=NORM_MOMENTUM
    )


def _branch(channels: int, dilation: int, dropout: float, norm: bool = True) -> nn.Sequential:
    """One branch of a multi-path residual block (5x5 dil d, 7x7, 5x5 dil d)."""
    pad5 = 2 * dilation

    def normed() -> nn.Module:
        return _norm(channels) if norm else nn.Identity()

    layers: list[nn.Module] = [
        nn.ReflectionPad2d(pad5),
        nn.Conv2d(channels, channels, 5, dilation=dilation),
        normed(),
        nn.ReLU(inplace=True),
        nn.ReflectionPad2d(3),
        nn.Conv2d(channels, channels, 7),
        normed(),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers += [
        nn.ReflectionPad2d(pad5),
        nn.Conv2d(channels, channels, 5, dilation=dilation),
        normed(),
    ]
    return nn.Sequential(*layers)


class MultiPathResBlock(nn.Module):
    """Residual block with three parallel dilated branches summed with the identity.

    Parameters
    ----------
    channels : int
        Number of input and output channels.
    dilations : tuple of int, default (1, 2, 3)
        Dilation of the two 5x5 convolutions of each branch.
    dropout : float, default 0.5
        Dropout probability after the middle convolution of each branch.
    norm : bool, default True
        Instance norms after the convolutions (False: none, as in the solver's prior,
        whose output must not depend on statistics of what it is given).
    """

    def __init__(
        self,
        channels: int,
        *,
        dilations: tuple[int, ...] = DILATIONS,
        dropout: float = DROPOUT,
        norm: bool = True,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(_branch(channels, d, dropout, norm) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + sum(branch(x))``."""
        out = x
        for branch in self.branches:
            out = out + branch(x)
        return out


class Generator(nn.Module):
    """NTL-Db-Net generator: blurred RGB in [-1, 1] -> deblurred RGB in [-1, 1].

    Layout: reflection-pad 3, 7x7 conv to 16 channels, norm, ReLU; two stride-2
    3x3 convs (32, 64 channels) with norm and ReLU; three multi-path residual
    blocks at 64 channels; two stride-2 3x3 transposed convs (32, 16 channels)
    with norm and ReLU; reflection-pad 3, 7x7 conv to 3 channels, tanh.

    Parameters
    ----------
    in_channels : int, default 3
        Input channels.
    out_channels : int, default 3
        Output channels.
    base : int, default 16
        Channels of the first convolution (doubled by each down-sampling).
    n_blocks : int, default 3
        Number of multi-path residual blocks.
    residual : bool, default True
        Add the input to the tanh output and clamp to [-1, 1] (a global skip,
        DeblurGAN's ``learn_residual``, on which NTL-Db-Net builds): the
        network learns the correction rather than the whole image, which a
        short CPU training needs.

    Notes
    -----
    Height and width of the input must be multiples of :data:`SCALE_FACTOR`
    (4); :func:`geo_ntl.deblur.inference.deblur_array` pads for you.
    About 3.7 million parameters with the defaults.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        base: int = 16,
        n_blocks: int = N_RES_BLOCKS,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if residual and in_channels != out_channels:
            raise ValueError("a residual generator needs in_channels == out_channels")
        c1, c2, c3 = base, base * 2, base * 4
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, c1, 7),
            _norm(c1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            _norm(c2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1),
            _norm(c3),
            nn.ReLU(inplace=True),
        ]
        layers += [MultiPathResBlock(c3) for _ in range(n_blocks)]
        layers += [
            nn.ConvTranspose2d(c3, c2, 3, stride=2, padding=1, output_padding=1),
            _norm(c2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1),
            _norm(c1),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(c1, out_channels, 7),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)
        self.arch = GENERATOR_ARCH
        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "base": base,
            "n_blocks": n_blocks,
            "residual": residual,
        }
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a (N, C, H, W) batch in [-1, 1] to a (N, C_out, H, W) batch in [-1, 1]."""
        out = self.net(x)
        if self.residual:
            out = torch.clamp(x + out, -1.0, 1.0)
        return out


class CBAM(nn.Module):
    """Convolutional block attention module with a residual connection.

    Channel attention: a shared two-layer 1x1 MLP (reduction ``reduction``)
    applied to the max- and average-pooled features, summed, sigmoid. Spatial
    attention: a 7x7 convolution on the channel-wise max and mean, sigmoid.
    The attended features are added to the input.

    Parameters
    ----------
    channels : int
        Feature channels.
    reduction : int, default 8
        Reduction ratio of the channel MLP.
    """

    def __init__(self, channels: int, *, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + spatial_att(channel_att(x))``."""
        avg = torch.mean(x, dim=(2, 3), keepdim=True)
        mx = torch.amax(x, dim=(2, 3), keepdim=True)
        ca = torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        y = x * ca
        sa_in = torch.cat([y.amax(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)], dim=1)
        y = y * torch.sigmoid(self.spatial(sa_in))
        return x + y


class Discriminator(nn.Module):
    """NTL-Db-Net critic: four 7x7 stride-3 convs, CBAM, 5x5 conv to one channel.

    Channels 8, 16, 32, 64 with LeakyReLU(0.2), instance norm after all but the
    first convolution. Used as a WGAN critic (no sigmoid). Instance norm here
    is affine without running statistics: the critic is never used in
    inference, and WGAN-GP's per-sample gradient penalty forbids batch norm.

    Parameters
    ----------
    in_channels : int, default 3
        Input channels.
    """

    def __init__(self, *, in_channels: int = 3) -> None:
        super().__init__()
        chans = (8, 16, 32, 64)
        layers: list[nn.Module] = []
        prev = in_channels
        for i, c in enumerate(chans):
            layers.append(nn.Conv2d(prev, c, 7, stride=3, padding=3))
            if i > 0:
                layers.append(nn.InstanceNorm2d(c, affine=True))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            prev = c
        layers.append(CBAM(prev, reduction=8))
        layers.append(nn.Conv2d(prev, 1, 5, padding=2))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the (N, 1, h, w) critic map of a (N, C, H, W) batch."""
        return self.net(x)


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        Any module.

    Returns
    -------
    int
        Sum of ``p.numel()`` over parameters with ``requires_grad``.
    """
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def theoretical_receptive_radius(*, n_blocks: int = N_RES_BLOCKS) -> int:
    """Return the generator's theoretical receptive-field radius in input pixels.

    Parameters
    ----------
    n_blocks : int, default 3
        Number of multi-path residual blocks.

    Returns
    -------
    int
        Radius ``r`` such that an output pixel depends on at most the
        ``(2r+1) x (2r+1)`` input window centred on it (before border padding).

    Notes
    -----
    Full resolution: 7x7 head (3) + 7x7 tail (3). Each stride-2 conv adds 1
    pixel at its input resolution and each transposed conv 1 pixel at its
    output resolution (1 + 2 at full res, twice). At quarter resolution each
    residual block adds, through its widest branch (dilation 3),
    ``6 + 3 + 6 = 15`` pixels, i.e. 60 full-resolution pixels.
    """
    widest = max(DILATIONS)
    per_block = 2 * widest + 3 + 2 * widest  # quarter-resolution pixels
    quarter = n_blocks * per_block
    return 3 + 1 + 2 + 4 * quarter + 2 + 1 + 3


def receptive_field(
    model: Generator,
    *,
    size: int = 256,
    n_samples: int = 4,
    mass: float = 0.999,
    seed: int = 0,
) -> dict[str, float]:
    """Measure the effective receptive field of a generator in eval mode.

    The gradient of the central output pixel (summed over channels) with
    respect to the input is accumulated over ``n_samples`` random
    night-light-like inputs (dark background with a few bright spots). The
    effective radius is the smallest Chebyshev radius around the centre that
    holds a fraction ``mass`` of the total absolute gradient (Luo et al.,
    2016, "Understanding the effective receptive field in deep CNNs").

    Parameters
    ----------
    model : Generator
        The generator; it is evaluated in ``eval()`` mode and restored after.
    size : int, default 256
        Side of the square probe input (a multiple of 4, larger than twice the
        expected radius).
    n_samples : int, default 4
        Number of random probe inputs.
    mass : float, default 0.999
        Fraction of the absolute gradient the effective radius must hold.
    seed : int, default 0
        Seed of the probe inputs.

    Returns
    -------
    dict
        ``{"effective_radius": r_eff, "theoretical_radius": r_th,
        "support_radius": r_sup}`` in input pixels, where ``r_sup`` is the
        radius of the non-zero gradient support seen on the probe.
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(size, size, dtype=torch.float64)
    c = size // 2
    try:
        for _ in range(n_samples):
            x = torch.rand(1, 3, size, size, generator=gen) * 0.2 - 0.9
            spots = torch.rand(1, 1, size, size, generator=gen) > 0.995
            x = torch.where(spots, torch.ones_like(x) * 0.9, x).requires_grad_(True)
            y = model(x)
            y[0, :, c, c].sum().backward()
            grad = cast(torch.Tensor, x.grad)  # set: x requires grad and y depends on it
            total += grad.detach().abs().sum(dim=(0, 1)).double()
    finally:
        model.train(was_training)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cheb = torch.maximum((yy - c).abs(), (xx - c).abs())
    grand = float(total.sum())
    radii = torch.arange(size // 2 + 1)
    cum = torch.stack([total[cheb <= r].sum() for r in radii])
    eff = int(radii[torch.nonzero(cum >= mass * grand)[0, 0]])
    support = int(cheb[total > 0].max())
    return {
        "effective_radius": float(eff),
        "theoretical_radius": float(
            theoretical_receptive_radius(n_blocks=model.config["n_blocks"])
        ),
        "support_radius": float(support),
        "mass": float(mass),
    }
