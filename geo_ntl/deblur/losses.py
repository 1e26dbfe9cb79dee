"""Training losses of NTL-Db-Net: WGAN-GP, HSI, L1, perceptual (VGG-13) or its substitute.

All image tensors are ``(N, 3, H, W)`` in the generator's range [-1, 1] unless
a function says otherwise.

Generator loss (paper weights)::

    L_G = L_adv + 100 * (L_perc + L_1) + 200 * L_HSI

``L_perc`` is the MSE between VGG-13 block-3 features when the user gives
local VGG weights; otherwise :class:`PerceptualSubstitute` is used:
``(1 - SSIM) + L1 of image gradients``, both computed on intensity. SSIM
rewards the local structure (contrast and correlation) that VGG features
capture at this depth, and the gradient term rewards sharp lamp edges; neither
needs pretrained weights.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GP_WEIGHT",
    "N_CRITIC",
    "CONTENT_WEIGHT",
    "HSI_WEIGHT",
    "HSI_EPS",
    "rgb_to_hsi",
    "hsi_loss",
    "gradient_penalty",
    "critic_loss",
    "generator_adversarial_loss",
    "ssim",
    "gradient_l1",
    "flux_loss",
    "lamp_loss",
    "PerceptualLoss",
    "PerceptualSubstitute",
    "make_perceptual",
]

#: Weight of the WGAN gradient penalty.
GP_WEIGHT = 10.0
#: Critic updates per generator update.
N_CRITIC = 5
#: Weight of (perceptual + L1) in the generator loss.
CONTENT_WEIGHT = 100.0
#: Weight of the HSI loss in the generator loss.
HSI_WEIGHT = 200.0
#: Intensity offset (on the [0, 1] scale) that damps saturation in the dark.
HSI_EPS = 0.01
#: Gaussian window of the SSIM (as Wang et al. 2004).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
#: Side (px) of the cells over which :func:`flux_loss` compares total light.
FLUX_CELL = 24
#: Intensity (0..1) from which a target pixel counts as a lamp for :func:`lamp_loss`.
LAMP_LEVEL = 0.35
#: Max-pool window that grows the target's lamps into the region :func:`lamp_loss` compares.
LAMP_POOL = 15


def _to01(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) * 0.5


def rgb_to_hsi(x01: torch.Tensor, *, eps: float = HSI_EPS) -> dict[str, torch.Tensor]:
    """Convert an RGB batch in [0, 1] to intensity, saturation and hue vectors.

    Parameters
    ----------
    x01 : (N, 3, H, W) torch.Tensor
        RGB in [0, 1].
    eps : float, default 0.01
        Intensity offset in the saturation denominator.

    Returns
    -------
    dict
        ``"i"``: intensity ``(R+G+B)/3``; ``"s"``: saturation
        ``(I - min(R,G,B)) / (I + eps)``; ``"hx"``, ``"hy"``: the chroma vector
        ``(2R-G-B, sqrt(3)(G-B)) / 2`` whose angle is the HSI hue; ``"c"``: its
        length. Each is ``(N, 1, H, W)``.

    Notes
    -----
    The textbook saturation ``1 - min/I`` jumps between 0 and 1 on the dark,
    noisy pixels that make up most of a night scene; the ``eps`` offset sends
    it smoothly to 0 as ``I -> 0``. Hue is kept as a vector rather than an
    angle so that it is circular and differentiable (see :func:`hsi_loss`).
    """
    r, g, b = x01[:, 0:1], x01[:, 1:2], x01[:, 2:3]
    i = (r + g + b) / 3.0
    mn = torch.minimum(torch.minimum(r, g), b)
    s = (i - mn) / (i + eps)
    hx = (2.0 * r - g - b) * 0.5
    hy = (g - b) * (math.sqrt(3.0) * 0.5)
    c = torch.sqrt(hx * hx + hy * hy + 1e-12)
    return {"i": i, "s": s, "hx": hx, "hy": hy, "c": c}


def hsi_loss(pred: torch.Tensor, target: torch.Tensor, *, eps: float = HSI_EPS) -> torch.Tensor:
    """Mean squared error in hue, saturation and intensity.

    Parameters
    ----------
    pred, target : (N, 3, H, W) torch.Tensor
        Images in [-1, 1].
    eps : float, default 0.01
        See :func:`rgb_to_hsi`.

    Returns
    -------
    torch.Tensor
        Scalar ``MSE(I) + MSE(S) + mean(w * sin^2(dH / 2))``.

    Notes
    -----
    Hue is an angle, so its error is ``sin^2(dH/2) = (1 - cos dH) / 2``: zero
    for equal hues, one for opposite hues, 2-pi periodic and smooth (a plain
    difference of angles would count 359 deg vs 1 deg as a large error).
    Hue is undefined for grey and black pixels, so the term is weighted by
    ``w = S_pred * S_target``: it vanishes wherever either pixel is achromatic.
    ``cos dH`` comes from the dot product of the chroma vectors, which avoids
    ``atan2`` and its discontinuity.
    """
    a = rgb_to_hsi(_to01(pred), eps=eps)
    b = rgb_to_hsi(_to01(target), eps=eps)
    mse_i = F.mse_loss(a["i"], b["i"])
    mse_s = F.mse_loss(a["s"], b["s"])
    cos_dh = (a["hx"] * b["hx"] + a["hy"] * b["hy"]) / (a["c"] * b["c"])
    cos_dh = cos_dh.clamp(-1.0, 1.0)
    hue = (a["s"] * b["s"] * (1.0 - cos_dh) * 0.5).mean()
    return mse_i + mse_s + hue


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = GP_WEIGHT,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP gradient penalty (Gulrajani et al., 2017).

    Parameters
    ----------
    critic : torch.nn.Module
        The critic.
    real, fake : (N, C, H, W) torch.Tensor
        Real and generated batches (``fake`` detached).
    weight : float, default 10
        Penalty weight lambda.
    generator : torch.Generator, optional
        RNG for the interpolation coefficients (reproducibility).

    Returns
    -------
    torch.Tensor
        ``weight * mean((||grad critic(x_hat)||_2 - 1)^2)`` over random
        interpolates ``x_hat = e * real + (1 - e) * fake``.
    """
    n = real.shape[0]
    e = torch.rand(n, 1, 1, 1, generator=generator, device="cpu").to(real.device, real.dtype)
    x_hat = (e * real + (1.0 - e) * fake).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return weight * ((norms - 1.0) ** 2).mean()


def critic_loss(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    gp_weight: float = GP_WEIGHT,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """WGAN-GP critic loss ``D(fake) - D(real) + GP``.

    Returns
    -------
    loss : torch.Tensor
        Scalar to minimise.
    parts : dict
        ``{"wasserstein": D(real) - D(fake), "gp": penalty}`` as floats.
    """
    d_real = critic(real).mean()
    d_fake = critic(fake).mean()
    gp = gradient_penalty(critic, real, fake, weight=gp_weight, generator=generator)
    loss = d_fake - d_real + gp
    return loss, {"wasserstein": float((d_real - d_fake).detach()), "gp": float(gp.detach())}


def generator_adversarial_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss ``-mean(D(fake))``."""
    return -critic(fake).mean()


def _gaussian_window(
    size: int, sigma: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    ax = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x01: torch.Tensor, y01: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity of two single-channel batches (Gaussian window 11, sigma 1.5).

    Parameters
    ----------
    x01, y01 : (N, 1, H, W) torch.Tensor
        Images on a scale of ``data_range``.
    data_range : float, default 1
        Dynamic range of the images.

    Returns
    -------
    torch.Tensor
        Scalar mean SSIM over the valid (unpadded) window positions.
    """
    w = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, x01.device, x01.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = F.conv2d(x01, w), F.conv2d(y01, w)
    sxx = F.conv2d(x01 * x01, w) - mx * mx
    syy = F.conv2d(y01 * y01, w) - my * my
    sxy = F.conv2d(x01 * y01, w) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return (num / den).mean()


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance between the finite-difference gradients of two batches."""
    dxp, dyp = pred[..., :, 1:] - pred[..., :, :-1], pred[..., 1:, :] - pred[..., :-1, :]
    dxt, dyt = target[..., :, 1:] - target[..., :, :-1], target[..., 1:, :] - target[..., :-1, :]
    return (dxp - dxt).abs().mean() + (dyp - dyt).abs().mean()


def flux_loss(pred: torch.Tensor, target: torch.Tensor, *, cell: int = FLUX_CELL) -> torch.Tensor:
    """L1 distance between the mean light of two batches over ``cell`` x ``cell`` blocks.

    Blooming moves light, it does not create it: a deblooming network should
    put a halo's light back into its lamp, not delete or add it. Pixel losses
    barely see a faint halo spread over hundreds of pixels; block means do.
    Not part of the paper's loss (a geo_ntl addition, off unless
    ``TrainConfig.flux_weight > 0``).

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)`` batches in [-1, 1].
    cell : int, default 24
        Block side in pixels; a partial last row/column of blocks is ignored.

    Returns
    -------
    torch.Tensor
        Scalar mean absolute difference of the block means on the [0, 1] scale.
    """
    if min(pred.shape[-2:]) < cell:
        raise ValueError(f"flux_loss: image {tuple(pred.shape[-2:])} smaller than cell {cell}")
    return (F.avg_pool2d(_to01(pred), cell) - F.avg_pool2d(_to01(target), cell)).abs().mean()


def lamp_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    level: float = LAMP_LEVEL,
    pool: int = LAMP_POOL,
) -> torch.Tensor:
    """L1 distance inside the lamps of the target and the ring around them.

    Lamps cover well under 1 % of a night scene, so the mean L1 over a crop hardly changes
    when a lamp is left twice as wide as the truth. This loss averages only over the pixels
    within ``pool // 2`` px of a target pixel brighter than ``level``: there a lamp left wide,
    a halo left in place and a dark ring dug around a lamp all cost as much as elsewhere a
    wrong background would. Not part of the paper's loss (a geo_ntl addition, off unless
    ``TrainConfig.lamp_weight > 0``).

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)`` batches in [-1, 1].
    level : float, default 0.35
        Intensity (mean of the channels, [0, 1] scale) of a lamp pixel.
    pool : int, default 15
        Odd max-pool window that grows the lamp mask into its surroundings.

    Returns
    -------
    torch.Tensor
        Scalar mean absolute difference over the masked pixels on the [0, 1] scale; zero
        when the target has no lamp.
    """
    t01 = _to01(target)
    lamps = (t01.mean(dim=1, keepdim=True) >= level).to(t01.dtype)
    mask = F.max_pool2d(lamps, pool, stride=1, padding=pool // 2)
    diff = (_to01(pred) - t01).abs() * mask
    return diff.sum() / (mask.sum() * pred.shape[1]).clamp_min(1.0)


class PerceptualSubstitute(nn.Module):
    """Weight-free stand-in for the VGG perceptual loss: ``(1 - SSIM) + L1(grad)``.

    Both terms use intensity in [0, 1]. Documented in the module docstring.
    """

    name = "ssim+gradient"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the substitute loss of two [-1, 1] batches."""
        pi = _to01(pred).mean(dim=1, keepdim=True)
        ti = _to01(target).mean(dim=1, keepdim=True)
        return (1.0 - ssim(pi, ti)) + gradient_l1(pi, ti)


class PerceptualLoss(nn.Module):
    """MSE between VGG-13 block-3 features of two batches (DeblurGAN-style content loss).

    Parameters
    ----------
    features : torch.nn.Sequential
        Frozen VGG-13 ``features[:14]`` from :func:`geo_ntl.deblur.vgg.load_vgg_features`.
    """

    name = "vgg13-conv3"

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the feature MSE of two [-1, 1] batches."""
        from geo_ntl.deblur.vgg import imagenet_normalise

        fp = self.features(imagenet_normalise(_to01(pred)))
        with torch.no_grad():
            ft = self.features(imagenet_normalise(_to01(target)))
        return F.mse_loss(fp, ft)


def make_perceptual(vgg_weights: str | os.PathLike[str] | None) -> nn.Module:
    """Return :class:`PerceptualLoss` from local VGG-13 weights, else the substitute.

    Parameters
    ----------
    vgg_weights : str or os.PathLike or None
        Path to a torchvision VGG-13 state dict, or None.

    Returns
    -------
    torch.nn.Module
        Callable ``loss(pred, target)``.
    """
    if vgg_weights is None:
        return PerceptualSubstitute()
    from geo_ntl.deblur.vgg import PERCEPTUAL_LAYER, load_vgg_features

    return PerceptualLoss(load_vgg_features(vgg_weights, "vgg13", end=PERCEPTUAL_LAYER))
