"""The ASM low-light enhancer (Zhao et al., Remote Sens. 2025, 17(12), 2069).

Atmospheric-scattering-model initialisation of the reflectance R0 and the weight
map H0, superpixel mask Z and U, then alternating half-quadratic-splitting
updates of H, HR, R and N; the output is HR, rendered by the night-light guard
(:mod:`~geo_ntl.enhance.guard`; ``guard=False`` for the paper's method alone).
Torch on CPU or CUDA, tile by tile with an exact halo. See
:mod:`geo_ntl.enhance.api` for tiling and dtypes, :mod:`geo_ntl.enhance.params`
for the parameters, and the module docstrings of
:mod:`~geo_ntl.enhance.initial_estimate`, :mod:`~geo_ntl.enhance.superpixels` and
:mod:`~geo_ntl.enhance.solver` for the reading of each formula.

Readings of formulas the extracted paper leaves ambiguous
---------------------------------------------------------
* eq. 25: ``A_e = mean_c A + b G(max_c A)`` per pixel (channel mean and max at
  each pixel, not scene means); "Gaussian kernel size 10" is read as a 10-pixel
  window, sigma 2.5 (parameter ``ae_sigma``).
* eq. 28: ASD is the standard deviation of gray(I) on blocks of 1/50 of the
  scene's height and width, anchored at the scene origin, interpolated
  bilinearly between block centres (the paper does not say how the block
  values are spread back; bilinear avoids block seams). t is computed on the
  coarse grid because it is Gaussian-smoothed anyway.
* eq. 29 per channel pushes every channel below (1 - t) A_e to zero where t < 1,
  which shifts hues (red rings around white lamps on DICM image 06). By default
  (``keep_hue=True``) R0 is computed from gray(I) and every channel is scaled by
  the same gain; ``keep_hue=False`` is the literal per-channel formula.
* eq. 30: E_G = scene mean of max_c R0, measured on an overview of at most 512
  pixels on the long side (the only way to know it before the tiled pass).
* eq. 31: E_L = G(gray(I)) with sigma ``el_sigma`` = 10 px ("S" read as the input).
* eq. 32: ``H0 = 1 + p exp((1 - E_G) / (E_L + epsilon))`` ("the ratio between the
  global under-exposure 1 - E_G and the local exposure").
* eq. 21: ``Z = n / (sum_j R0_c(j) dR0_c)`` = 1 / (mean x range) of the superpixel,
  which is unbounded, while Assumption 1 needs 0 <= Z <= 1; it is mapped to
  ``1 / (1 + mean x range / z_scale)``. Superpixel statistics come from the 4x4
  coarse R0, so single-pixel noise does not count as "dynamic range".
  The paper's text says both that Z is high in flat dark regions (eq. 21, U)
  and, once, that it is high in textured ones (noise term); eq. 21 is followed.
* eqs. 15/17: G^T G terms make H and HR linear systems (not element-wise
  divisions); they are solved inexactly with a fixed number of local steps
  (see :mod:`~geo_ntl.enhance.solver`).
* eq. 18/20 clamps: R in [0, 1], N in [0, 1], H in [1, h_max]; the output HR is
  clipped to [0, 1] before rescaling.

Speed (CPU)
-----------
The cost is memory traffic more than arithmetic: a multi-megabyte torch tensor
allocated afresh is a fresh ``mmap`` whose pages fault in on first touch. So the
solver runs band by band in preallocated buffers with in-place updates, on the
CPU in 512-pixel pieces whose working arrays stay in the last-level cache (see
:mod:`~geo_ntl.enhance.solver`); the filters are shifted-slice sums instead of
one-channel convolutions; and the full-resolution steps of the initialisation
work in place. Time is linear in pixels. Measured figures and their commands:
``benchmarks/RESULTS.md``.

"""

from geo_ntl.enhance.api import enhance, enhance_array
from geo_ntl.enhance.core import halo_depth
from geo_ntl.enhance.params import PARAM_DOCS, ASMParams
from geo_ntl.enhance.stats import GlobalStats, global_stats

__all__ = [
    "ASMParams",
    "GlobalStats",
    "PARAM_DOCS",
    "enhance",
    "enhance_array",
    "global_stats",
    "halo_depth",
]
