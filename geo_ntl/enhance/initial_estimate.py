"""Initial reflectance R0 from the atmospheric scattering model and initial weight map H0.

Implements eqs. 23-32 of the seed paper on a ``(band, y, x)`` torch tensor in [0, 1]:

* A = GF(gray(I), I + alpha): a guided filter guided by gray(I) (eq. 23);
* A_e = mean_c A + b * G(max_c A) (eq. 25), per pixel, shared by all channels;
* t = G(max(min((1 - gray(I) / A_e) / (sigma + ASD(I)), 1), alpha1)) (eq. 28);
* R0 = 1 - (A_e - I) / (A_e * t), clipped to [0, 1] (eq. 29);
* E_L = G(gray(I)) and H0 = 1 + p * exp((1 - E_G) / (E_L + epsilon)) (eqs. 31-32).

The smooth maps (the guided filter's linear coefficients, the Gaussians, t,
E_L and H0) are computed on a coarse grid of ``cell x cell`` pixel means and
interpolated bilinearly back (the "fast guided filter" of He & Sun 2015), while
A_e and R0 are evaluated at full resolution with the full-resolution gray image
as guide, so edges stay sharp. The coarse grid is anchored at the scene origin.
The full-resolution steps are written in place (three interpolated maps,
then A_e, the gain and R0), because on CPU their cost is memory traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from geo_ntl.enhance._ops import box, cell_mean, gaussian, upsample
from geo_ntl.enhance.params import ASMParams

__all__ = ["LUMA_WEIGHTS", "InitMaps", "to_gray", "initial_reflectance", "initial_weight"]

#: ITU-R BT.601 luma weights, used as gray() for three-band images.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Smallest atmospheric light allowed (avoids division by ~0 on black input).
MIN_AE = 1e-3


def to_gray(image: torch.Tensor) -> torch.Tensor:
    """Gray image of a ``(band, y, x)`` tensor: BT.601 luma for 3 bands, the band mean otherwise."""
    if image.shape[0] == 3:
        gray = torch.mul(image[0], LUMA_WEIGHTS[0])
        gray.add_(image[1], alpha=LUMA_WEIGHTS[1])
        return gray.add_(image[2], alpha=LUMA_WEIGHTS[2])
    return image.mean(0)


@dataclass
class InitMaps:
    """Outputs of the ASM initialisation on one (padded) block."""

    gray: torch.Tensor  # (h, w)
    gray_low: torch.Tensor  # (hl, wl)
    r0: torch.Tensor  # (c, h, w)
    t_low: torch.Tensor  # (hl, wl)


def initial_reflectance(
    image: torch.Tensor, asd_low: torch.Tensor, params: ASMParams, *, cell: int, pixel: float = 1.0
) -> InitMaps:
    """Compute R0 (eq. 29) for a ``(band, y, x)`` tensor in [0, 1].

    Parameters
    ----------
    image : (c, h, w) torch.Tensor
        Image in [0, 1]; h and w multiples of ``cell``.
    asd_low : (h / cell, w / cell) torch.Tensor
        Adaptive standard deviation at the coarse-grid centres.
    params : ASMParams
        Parameters.
    cell : int, keyword-only
        Coarse-grid side in pixels of ``image``.
    pixel : float, default 1.0
        Size of one pixel of ``image`` in full-resolution pixels (> 1 on an overview).

    Returns
    -------
    InitMaps
    """
    step = cell * pixel
    gray = to_gray(image)
    g_low = cell_mean(gray[None], cell)[0]
    i_low = cell_mean(image, cell)
    # Guided filter (He et al.) at coarse resolution: q = a * gray + b, per channel.
    r = int(round(params.gf_radius / step))
    src = i_low + params.alpha
    mean_g = box(g_low, r)
    mean_s = box(src, r)
    var_g = box(g_low * g_low, r) - mean_g * mean_g
    cov = box(src * g_low, r) - mean_s * mean_g
    a = cov / (var_g.clamp_min(0.0) + params.gf_eps)
    bcoef = mean_s - a * mean_g
    mean_a = box(a, r)
    mean_b = box(bcoef, r)
    a_low = mean_a * g_low + mean_b  # A on the coarse grid, (c, hl, wl)
    blur_max = gaussian(a_low.amax(0), params.ae_sigma / step)
    ae_low = (a_low.mean(0) + params.b * blur_max).clamp_min(MIN_AE)
    ratio = (1.0 - g_low / ae_low) / (params.sigma + asd_low)
    t_low = gaussian(ratio.clamp(params.alpha1, 1.0), params.t_sigma / step).clamp(
        params.alpha1, 1.0
    )
    # Full resolution: mean_c A = mean_c(a) * gray + mean_c(b) keeps the guide's edges
    # (bilinear interpolation is linear, so the b-term is added on the coarse grid).
    coarse = torch.stack((mean_a.mean(0), mean_b.mean(0).add_(blur_max, alpha=params.b), t_low))
    fine = upsample(coarse, cell)
    ae = fine[0].mul_(gray).add_(fine[1]).clamp_min_(MIN_AE)
    t = fine[2]
    # R0 = 1 - (A_e - I) / (A_e t) = 1 - (1 - I / A_e) / t
    if params.keep_hue and image.shape[0] > 1:
        # Apply eq. 29 to the gray level and scale every channel by the same factor: the
        # per-channel form pushes channels below (1 - t) A_e to 0 where t < 1 (hue shifts,
        # coloured rings around lamps).
        q = torch.div(gray, ae)
        gain = (q - 1.0).div_(t).add_(1.0).clamp_(0.0, 1.0)
        gain.div_(q.clamp_min_(1e-4)).div_(ae)
        r0 = torch.mul(image, gain).clamp_(0.0, 1.0)
    else:
        r0 = torch.div(image, ae).sub_(1.0).div_(t).add_(1.0).clamp_(0.0, 1.0)
    return InitMaps(gray=gray, gray_low=g_low, r0=r0, t_low=t_low)


def initial_weight(
    gray_low: torch.Tensor, e_g: float, params: ASMParams, *, cell: int, pixel: float = 1.0
) -> torch.Tensor:
    """H0 = 1 + p exp((1 - E_G) / (E_L + epsilon)) with E_L = G(gray) (eqs. 30-32).

    Parameters
    ----------
    gray_low : (hl, wl) torch.Tensor
        Coarse-grid gray image.
    e_g : float
        Global exposure: the scene mean of max_c R0 (eq. 30).
    params : ASMParams
        Parameters.
    cell : int, keyword-only
        Coarse-grid side in pixels.
    pixel : float, default 1.0
        Pixel size in full-resolution pixels.

    Returns
    -------
    (hl * cell, wl * cell) torch.Tensor
    """
    e_l = gaussian(gray_low, params.el_sigma / (cell * pixel))
    h0 = 1.0 + params.p * torch.exp((1.0 - e_g) / (e_l + params.epsilon))
    return upsample(h0[None], cell)[0].clamp_(1.0, params.h_max)
