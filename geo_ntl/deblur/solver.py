"""NTL-Db-Net inside a PSF-explicit, clip-aware solver: the unrolled network (PyTorch).

The solver alternates two steps for a fixed number of stages (deep unfolding, as
USRNet [1]_ does with a closed-form data step):

data step
    :func:`geo_ntl.deblur.clip_rl.clip_rl`: Richardson-Lucy updates with the
    scene's own PSF and a clip-aware likelihood. The blur is *given*, measured on
    the scene (:func:`geo_ntl.psf.estimate_psf`), so a PSF the network never saw
    in training is still undone by the physics.
prior step
    :class:`SolverPrior`: NTL-Db-Net's generator blocks (a 7x7 head, two stride-2
    convolutions, multi-path residual blocks with dilations 1, 2 and 3, two
    transposed convolutions, a 7x7 tail), slimmed and without norm layers,
    refining the current estimate. It sees the estimate and the data on a
    square-root scale of full scale (which makes photon noise about even), where
    the data are clipped, and three constants: the noise level, the PSF's FWHM
    and the stage. Its last convolution starts at zero, so an untrained prior is
    the identity and the solver is clip-aware Richardson-Lucy.

Everything here is light *above the black level*, in units where the clip level
is ``level`` (per band). The estimate may exceed the clip level (lamps brighter
than full scale); :mod:`geo_ntl.deblur.psf_gan` clips, holds saturated cores and
projects the flux when it writes an image.

References
----------
.. [1] Zhang, K., Van Gool, L. and Timofte, R. (2020). Deep unfolding network for
   image super-resolution. CVPR, 3217-3226.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from geo_ntl.deblur.clip_rl import PSFOperator, clip_rl, pad_for_psf, unpad
from geo_ntl.deblur.model import MultiPathResBlock

__all__ = [
    "SOLVER_ARCH",
    "FWHM_UNIT",
    "SolverInputs",
    "SolverPrior",
    "UnrolledSolver",
]

#: Architecture tag stored with the solver's weights; loading checks it.
SOLVER_ARCH = "ntl-db-net-psf-solver-v1"
#: PSF FWHM (px) that the prior's FWHM channel shows as 1.
FWHM_UNIT = 8.0
#: Input channels of the prior: estimate (3), data (3), clipped mask, noise, FWHM, stage.
PRIOR_IN_CHANNELS = 10
#: Where the first data step may start (:class:`UnrolledSolver`'s ``start``).
START_CHOICES = ("data", "flat")


def _clipped_mask(y: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)``: 1 where any band of the data is at its clip level, else 0."""
    return (y >= level * (1 - 1e-6)).any(dim=1, keepdim=True).to(y.dtype)


class SolverPrior(nn.Module):
    """The learned prior: NTL-Db-Net generator blocks refining a square-root-scaled estimate.

    Parameters
    ----------
    width : int, default 8
        Channels after the head (doubled by each of the two down-samplings).
    n_blocks : int, default 2
        Multi-path residual blocks at quarter resolution.

    Notes
    -----
    Returns a correction of the estimate on the square-root scale. Inputs must have
    sides that are multiples of 4.
    """

    def __init__(self, *, width: int = 8, n_blocks: int = 2) -> None:
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        relu = nn.ReLU
        self.net = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(PRIOR_IN_CHANNELS, c1, 7),
            relu(inplace=True),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            relu(inplace=True),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1),
            relu(inplace=True),
            *[MultiPathResBlock(c3, dropout=0.0, norm=False) for _ in range(n_blocks)],
            nn.ConvTranspose2d(c3, c2, 3, stride=2, padding=1, output_padding=1),
            relu(inplace=True),
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1),
            relu(inplace=True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(c1, 3, 7),
        )
        for m in self.net.modules():  # residual branches start small, so the blocks start stable
            if isinstance(m, MultiPathResBlock):
                for branch in m.branches:
                    last = [c for c in branch.modules() if isinstance(c, nn.Conv2d)][-1]
                    last.weight.data.mul_(0.1)
        tail = self.net[-1]
        assert isinstance(tail, nn.Conv2d)
        nn.init.zeros_(tail.weight)
        if tail.bias is not None:
            nn.init.zeros_(tail.bias)
        self.config = {"width": width, "n_blocks": n_blocks}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return the correction ``(N, 3, H, W)`` for ``(N, 10, H, W)`` features.

        Outside autograd the features go channels-last: the same convolutions, 1.6 times
        faster on a CPU (2048² on one thread: 4.2 -> 2.6 s a pass, measured). Training keeps
        the default layout, so that a run resumes bit for bit.
        """
        if not torch.is_grad_enabled():
            features = features.contiguous(memory_format=torch.channels_last)
        return self.net(features).contiguous()


@dataclass
class SolverInputs:
    """What the solver is told about one batch of windows (all tensors float32).

    Attributes
    ----------
    data : (N, 3, H, W)
        Light above black (``>= 0``), the clipped pixels at ``level``.
    kernels : (N or 1, 3 or 1, k, k)
        The scene's PSF per band, each summing to 1.
    level : (N or 1, 3 or 1, 1, 1)
        Clip level above black per band (``inf`` where nothing clips).
    full_scale : (N or 1, 3 or 1, 1, 1)
        Full scale above black per band: the unit of the prior's square-root scale.
    noise : (N or 1, 1, 1, 1)
        Noise sigma as a fraction of full scale.
    fwhm : (N or 1, 1, 1, 1)
        PSF FWHM in pixels.
    valid : (N, 1, H, W), optional
        1 where measured, 0 at nodata.
    """

    data: torch.Tensor
    kernels: torch.Tensor
    level: torch.Tensor
    full_scale: torch.Tensor
    noise: torch.Tensor
    fwhm: torch.Tensor
    valid: torch.Tensor | None = None


class UnrolledSolver(nn.Module):
    """Stages of clip-aware Richardson-Lucy, each followed by the learned prior.

    Parameters
    ----------
    stages : int, default 3
        Data step + prior pairs.
    iterations : int, default 7
        Richardson-Lucy updates per data step.
    width, n_blocks : int, default 8 and 1
        See :class:`SolverPrior` (one prior shared by all stages, told the stage).
    clip_sharpness : float, default 0.2
        ``a`` of the smooth clip per 1/255 of full scale.
    prior_weight : float, default 1.0
        Scale of the prior's correction (1: as trained; 0: the data steps alone).
    accelerate : bool, default False
        Biggs-Andrews extrapolation of the data steps (:func:`~geo_ntl.deblur.clip_rl.clip_rl`).
    start : {"data", "flat"}, default "data"
        Where the first data step starts: the data, or a flat image (Richardson-Lucy's
        classic start, whose first update is ``K^T y``; it counts as one of the updates).
    prior_reach : float, optional
        Where the prior may act, in PSF widths (FWHM) from a pixel the sensor clipped, with
        a feathered edge (:meth:`_near_clipped`; 0: at clipped pixels only); default
        everywhere.
    """

    arch = SOLVER_ARCH

    def __init__(
        self,
        *,
        stages: int = 3,
        iterations: int = 7,
        width: int = 8,
        n_blocks: int = 1,
        clip_sharpness: float = 0.2,
        prior_weight: float = 1.0,
        accelerate: bool = False,
        start: str = "data",
        prior_reach: float | None = None,
    ) -> None:
        super().__init__()
        self.prior_weight = prior_weight
        self.stages = stages
        self.iterations = iterations
        self.clip_sharpness = clip_sharpness
        self.accelerate = accelerate
        if start not in START_CHOICES:
            raise ValueError(f"start must be one of {START_CHOICES}, got {start!r}")
        self.start = start
        self.prior_reach = prior_reach
        self.prior = SolverPrior(width=width, n_blocks=n_blocks)
        self.config = {
            "stages": stages,
            "iterations": iterations,
            "width": width,
            "n_blocks": n_blocks,
            "clip_sharpness": clip_sharpness,
            "prior_weight": prior_weight,
            "accelerate": accelerate,
            "start": start,
            "prior_reach": prior_reach,
        }

    def prior_is_identity(self) -> bool:
        """Return True when the prior's correction is 0 for every input.

        That is when its last convolution is all zeros or ``prior_weight`` is 0: the untrained
        solver, which is clip-aware Richardson-Lucy alone.
        """
        tail = self.prior.net[-1]
        assert isinstance(tail, nn.Conv2d)
        if self.prior_weight == 0:
            return True
        return not (bool(tail.weight.any()) or (tail.bias is not None and bool(tail.bias.any())))

    def _near_clipped(self, y: torch.Tensor, inputs: SolverInputs) -> torch.Tensor:
        """Weight of the prior: 1 near clipped pixels, fading to 0 around ``prior_reach`` FWHM.

        The square of Chebyshev radius ``r = ceil(prior_reach * FWHM)`` around each clipped
        pixel (any band), averaged over a window of side ``r`` (odd): 1 within ``r / 2`` of a
        clipped pixel, 0 beyond ``1.5 r``, linear between. A hard edge left a visible square
        step where the prior's correction stopped (Prague, the sample AOI; session 15); the
        averaged one gained 0.07 dB on the AOI with the same weights. Two 1-D passes each,
        so every operation is local (tiles agree with the whole). ``prior_reach`` 0: the
        clipped pixels alone.
        """
        assert self.prior_reach is not None
        clipped = _clipped_mask(y, inputs.level)
        radius = math.ceil(self.prior_reach * float(inputs.fwhm.max()))
        if radius == 0:
            return clipped
        # a square window's maximum is the maximum along rows of the maximum along columns:
        # two 1-D passes instead of one 2-D one (2048², 31 px: 3.7 s -> 0.2 s, same result)
        near = F.max_pool2d(clipped, (1, 2 * radius + 1), stride=1, padding=(0, radius))
        near = F.max_pool2d(near, (2 * radius + 1, 1), stride=1, padding=(radius, 0))
        side = radius | 1
        near = F.avg_pool2d(
            near, (1, side), stride=1, padding=(0, side // 2), count_include_pad=False
        )
        return F.avg_pool2d(
            near, (side, 1), stride=1, padding=(side // 2, 0), count_include_pad=False
        )

    def margin(self, kernel_size: int) -> int:
        """Reflected margin (px) around a window: two kernel radii, rounded up to 4."""
        return 4 * -(-(2 * (kernel_size // 2)) // 4)

    def _features(
        self, u: torch.Tensor, y: torch.Tensor, inputs: SolverInputs, stage: int
    ) -> torch.Tensor:
        unit = inputs.full_scale
        n, _, h, w = u.shape
        clipped = _clipped_mask(y, inputs.level)

        def const(v: torch.Tensor) -> torch.Tensor:
            return v.expand(n, 1, h, w)

        return torch.cat(
            [
                torch.sqrt(u / unit + 1e-6),
                torch.sqrt(y / unit + 1e-6),
                clipped,
                const(inputs.noise * 10.0),
                const(inputs.fwhm / FWHM_UNIT),
                const(torch.full_like(inputs.noise, (stage + 1) / self.stages)),
            ],
            dim=1,
        )

    def forward(self, inputs: SolverInputs, *, every_stage: bool = False) -> list[torch.Tensor]:
        """Solve; return the final estimate (or every stage's, ``every_stage=True``).

        Returns
        -------
        list of torch.Tensor
            ``(N, 3, H, W)`` light above black, unpadded; one entry, or one per stage.
        """
        k = inputs.kernels.shape[-1]
        margin = self.margin(k)
        y, widths = pad_for_psf(inputs.data, margin, multiple=4)  # 4: the prior's stride-4 grid
        valid = None if inputs.valid is None else pad_for_psf(inputs.valid, margin, multiple=4)[0]
        op = PSFOperator(inputs.kernels, (y.shape[-2], y.shape[-1]))
        sharpness = self.clip_sharpness * 255.0 / inputs.full_scale
        floor = 1e-6 * inputs.full_scale
        first = 0  # updates already done by the start
        if self.start == "flat":
            # one update from a flat image c is c K^T(y / c) = K^T y for any c below the clip
            # level: Richardson-Lucy's classic start, taken without a tile-dependent level
            u = op.adjoint(y).clamp_min(floor)
            first = 1
        else:
            u = y
        outputs = []
        if not every_stage and not torch.is_grad_enabled() and self.prior_is_identity():
            # the data steps alone: one run of every update, so the extrapolation keeps its pace
            u = clip_rl(
                u, y, op, level=inputs.level, sharpness=sharpness, valid=valid,
                iterations=self.stages * self.iterations - first, accelerate=self.accelerate,
            )  # fmt: skip
            return [unpad((u + floor).clamp_min(floor), widths)]
        for stage in range(self.stages):
            u = clip_rl(
                u,
                y,
                op,
                level=inputs.level,
                sharpness=sharpness,
                iterations=self.iterations - (first if stage == 0 else 0),
                valid=valid,
                accelerate=self.accelerate,
            )
            reach = None if self.prior_reach is None else self._near_clipped(y, inputs)
            if not torch.is_grad_enabled() and (
                self.prior_is_identity() or (reach is not None and not bool(reach.any()))
            ):
                # a zero prior (or one confined where no pixel is clipped) leaves
                # sqrt(u + 1e-6)^2: skip its cost (not in training, where the
                # zero-initialised last conv must get its gradient)
                u = (u + floor).clamp_min(floor)
            else:
                root = torch.sqrt(u / inputs.full_scale + 1e-6)
                correction = self.prior(self._features(u, y, inputs, stage))
                if reach is not None:
                    correction = correction * reach
                root = torch.relu(root + self.prior_weight * correction)
                u = (root * root * inputs.full_scale).clamp_min(floor)
            if every_stage or stage == self.stages - 1:
                outputs.append(unpad(u, widths))
        return outputs
