"""The night-light guard: what the low-light enhancer may and may not do to a scene.

The ASM method of the seed paper is a low-light *image* enhancer: it compensates non-uniform
illumination. In a night-light scene the illumination is the signal, and three things went
wrong when the bare method met one: saturated lamps came out grey (0 % of the input's
saturated pixels stayed >= 240), a scene that was not dark at all was washed out (the Jilin-1
crop's mean 128 -> 158 DN), and the sensor noise of the dim ground was lifted into colour
grain. The guard takes the method's output ``HR`` and the input ``I`` (both on [0, 1]) and
renders the result from the input, using the method only for how much to brighten:

1. **Strength from the scene.** ``k`` is 1 for scenes whose mean luminance is at most
   ``guard_mean_low``, a fifth at ``guard_mean_high`` (100 DN: not a low-light scene) and 0
   from ``guard_mean_off`` on, linear between (:func:`guard_strength`); a scene-wide quantity
   (:class:`~geo_ntl.enhance.stats.GlobalStats`), so every tile
   uses the same.
2. **Gain, not texture.** The brightening is the ratio of the Gaussian-smoothed luminances,
   ``g = G(Y(HR)) / G(Y(I))`` at ``detail_sigma`` px, damped to ``1 + k (g - 1)``. It is applied
   above the scene's black level ``b`` to the smooth luminance of the input,
   ``Y' = b + g (G(Y) - b)`` -- so unlit ground at the black level stays dark. The achieved
   local gain ``a = Y' / G(Y)`` also goes to the colour of the smooth image, ``G_c(I) -
   G_c(Y)`` at :data:`COLOUR_SIGMA_FACTOR` times ``detail_sigma``, so hue and saturation are
   kept; only ``detail_gain`` of it goes to the rest, the fine detail and the fine colour
   differences, where the sensor's and the codec's luminance and colour noise live. Noise
   grows as ``1 + detail_gain (a - 1)``, at most half as fast as the brightness with the
   default 0.25. (Until session 11 every colour difference was damped, and a dim brown wall
   came out grey. The colour's Gaussian is wider than the detail's because at 2 px the colour
   noise of dim ground came through at the full gain as coloured blotches.)
3. **Highlights kept.** Bands that would leave [0, 1] are scaled back together (hue kept), and
   where the input is lit (luminance from 96 to 128 DN, ramped) the output is never darker than
   the input: saturated lamps stay saturated, lit pixels are not dimmed.

Every step is local with support :func:`guard_support`, so tiles stay exact.
"""

from __future__ import annotations

import torch

from geo_ntl.enhance._ops import gaussian, gaussian_radius
from geo_ntl.enhance.initial_estimate import LUMA_WEIGHTS

__all__ = [
    "COLOUR_SIGMA_FACTOR",
    "HIGHLIGHT_FROM",
    "HIGHLIGHT_TO",
    "apply_guard",
    "guard_strength",
    "guard_support",
]

#: Input luminance (on [0, 1]) from which the output starts to be held at least at the input.
HIGHLIGHT_FROM = 96.0 / 255.0
#: Input luminance from which the output is never darker than the input.
HIGHLIGHT_TO = 128.0 / 255.0
#: The colour of the smooth image is taken at this many times ``detail_sigma``.
COLOUR_SIGMA_FACTOR = 3.0
#: Keeps the gain finite where the smoothed luminance is ~0.
_EPS = 1.0 / 255.0


def guard_support(detail_sigma: float) -> int:
    """Radius of support (px) of :func:`apply_guard`: its widest Gaussian, the colour's.

    Examples
    --------
    >>> guard_support(2.0)
    18
    """
    return gaussian_radius(COLOUR_SIGMA_FACTOR * detail_sigma)


def guard_strength(
    mean_luma: float, low: float, high: float, off: float, bright: float = 0.2
) -> float:
    """Scene-wide strength ``k`` in [0, 1] from the scene's mean luminance.

    Piecewise linear through ``(low, 1)``, ``(high, bright)`` and ``(off, 0)``: a low-light
    scene gets the method in full, a scene of normal brightness (from ``high``, 100 DN by
    default) a fifth of it -- enough to lift its shadows, too little to wash it out (its mean
    changes by at most ~10 %) -- and a bright one nothing.

    Parameters
    ----------
    mean_luma : float
        Mean luminance of the scene on [0, 1].
    low, high, off : float
        Breakpoints, ``low < high < off``.
    bright : float, default 0.2
        Strength at ``high``.

    Returns
    -------
    float

    Examples
    --------
    >>> [guard_strength(m, 0.3, 0.4, 0.6) for m in (0.1, 0.35, 0.4, 0.5, 0.7)]
    [1.0, 0.6, 0.2, 0.1, 0.0]
    """
    if mean_luma <= low:
        return 1.0
    if mean_luma >= off:
        return 0.0
    if mean_luma <= high:
        k = 1.0 + (bright - 1.0) * (mean_luma - low) / (high - low)
    else:
        k = bright * (off - mean_luma) / (off - high)
    return round(float(k), 12)


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[0] == 3:
        w = LUMA_WEIGHTS
        return x[0] * w[0] + x[1] * w[1] + x[2] * w[2]
    return x.mean(0)


def apply_guard(
    image: torch.Tensor,
    enhanced: torch.Tensor,
    *,
    strength: float,
    black: float,
    detail_sigma: float,
    detail_gain: float,
) -> torch.Tensor:
    """Render the guarded enhancement of ``image`` from the method's output ``enhanced``.

    Parameters
    ----------
    image : (band, h, w) torch.Tensor
        Input on [0, 1].
    enhanced : (band, h, w) torch.Tensor
        The ASM method's output on [0, 1] (same shape).
    strength : float
        Scene-wide strength ``k`` (:func:`guard_strength`); 0 returns ``image``.
    black : float
        The scene's black level on [0, 1]; light at or below it is not brightened.
    detail_sigma : float
        Scale (px) separating the smooth part of the image from its detail and noise.
    detail_gain : float
        Fraction of the local brightening the detail gets (0: none, 1: all).

    Returns
    -------
    (band, h, w) torch.Tensor
        On [0, 1]; exact inside the block minus :func:`guard_support` px at each side.
    """
    if strength <= 0.0:
        return image.clone()
    # The smooth luminance is brightened, and the smooth image's colour with it; the rest --
    # fine detail, fine colour differences, and with them the sensor's and the codec's
    # luminance and colour noise -- gets only detail_gain of that brightening.
    luma = _luma(image)
    base = gaussian(luma, detail_sigma)
    luma_in = base.clamp_min(0.0)
    luma_out = gaussian(_luma(enhanced), detail_sigma).clamp_min(0.0)
    gain = 1.0 + strength * ((luma_out + _EPS) / (luma_in + _EPS) - 1.0)
    # Light above the black level is brightened; at or below it, nothing changes.
    lifted = torch.where(base > black, black + gain * (base - black), base)
    achieved = (lifted + _EPS) / (base + _EPS)
    smooth = gaussian(image, COLOUR_SIGMA_FACTOR * detail_sigma)
    colour = smooth - _luma(smooth)  # the smooth image's colour differences (luminance-free)
    rest = image - base - colour  # detail of the luminance and of the colour
    out = lifted + achieved * colour + (1.0 + detail_gain * (achieved - 1.0)) * rest
    # Bands beyond full scale are scaled back together: the hue stays.
    peak = out.amax(0, keepdim=True).clamp_min(1.0)
    out = (out / peak).clamp_min_(0.0)
    # Lit input is never darkened: saturated lamps stay saturated.
    lit = ((luma - HIGHLIGHT_FROM) / (HIGHLIGHT_TO - HIGHLIGHT_FROM)).clamp(0.0, 1.0)
    return out + lit * (image - out).clamp_min(0.0)
