"""The alternating HQS scheme of eqs. 11-20 (torch, per channel, vectorised over bands).

Each outer iteration updates, as in Algorithm 1 of the paper:

1. H (eqs. 13-15): the HQS normal equations
   ``[lambda1 (R+N)^2 + mu1 G^T Z^2 G + mu2 R G^T G R] H = lambda1 (R+N) T + mu1 G^T Z Q1
   + mu2 R G^T (G U + Q2)`` with ``Q1 = shrink(Z G H, lambda2 / 2 mu1)`` and
   ``Q2 = shrink(G (R H - U), lambda3 / 2 mu2)``. Because ``Q - x = -clip(x, tau)`` for
   ``Q = shrink(x, tau)``, the residual at the current H is
   ``lambda1 (R+N)(T - (R+N) H) - mu1 G^T Z clip(Z G H) - mu2 R G^T clip(G(RH - U))``;
   ``h_sweeps`` damped-Jacobi steps with the exact diagonal are taken, then H is
   clipped to [1, K].
2. HR (eqs. 16-17): ``(lambda1 E + mu3 G^T G) M = lambda1 (T - H N) + mu3 G^T (G U + Q3)``,
   ``Q3 = shrink(G (M - U), lambda3 / 2 mu3)``, a constant-coefficient SPD system
   whose spectrum lies in ``[lambda1, lambda1 + 8 mu3]``; ``m_sweeps`` Chebyshev
   iterations warm-started from the previous M are taken.
3. R = min(max(HR / H, 0), 1) (eq. 18).
4. N = max(lambda1 H (T - H R) / (lambda1 H^2 + lambda4 Z^2), 0) (eq. 20).

The output is HR. G is the forward difference with a zero last difference
(Neumann boundary); products and quotients are element-wise.

Why Chebyshev and Jacobi rather than conjugate gradients: CG's step lengths are
inner products over the whole array, so an unconverged CG on a tile differs from
one on the whole scene everywhere; a fixed number of Chebyshev or Jacobi steps
is a fixed local stencil (one pixel of support per step), so tiles with a halo
reproduce the whole-scene result exactly. With known eigenvalue bounds Chebyshev
converges at CG's worst-case rate, ``(sqrt(k) - 1) / (sqrt(k) + 1)`` = 2/3 per
step for the default k = 25. Nothing is factorised.
"""

from __future__ import annotations

import torch

from geo_ntl.enhance._ops import degree, grad, grad_t, laplacian
from geo_ntl.enhance.params import ASMParams

__all__ = ["chebyshev", "hqs"]


def chebyshev(
    apply_a, rhs_residual: torch.Tensor, x: torch.Tensor, *, lo: float, hi: float, steps: int
) -> torch.Tensor:
    """Chebyshev iteration for an SPD system with spectrum in ``[lo, hi]``.

    Parameters
    ----------
    apply_a : callable
        ``x -> A x``.
    rhs_residual : torch.Tensor
        Initial residual ``b - A x``.
    x : torch.Tensor
        Starting point (updated in place and returned).
    lo, hi : float, keyword-only
        Eigenvalue bounds.
    steps : int, keyword-only
        Iterations.

    Returns
    -------
    torch.Tensor
    """
    d = 0.5 * (hi + lo)
    c = 0.5 * (hi - lo)
    r = rhs_residual
    p = torch.empty_like(x)
    alpha = 0.0
    for i in range(steps):
        if i == 0:
            p.copy_(r)
            alpha = 1.0 / d
        else:
            beta = 0.5 * (c * alpha) ** 2 if i == 1 else (0.5 * c * alpha) ** 2
            alpha = 1.0 / (d - beta / alpha)
            p.mul_(beta).add_(r)
        x.add_(p, alpha=alpha)
        if i + 1 < steps:
            r = r - alpha * apply_a(p)
    return x


def hqs(
    t: torch.Tensor,
    u: torch.Tensor,
    z: torch.Tensor,
    h0: torch.Tensor,
    r0: torch.Tensor,
    params: ASMParams,
) -> torch.Tensor:
    """Run the alternating scheme and return HR.

    Parameters
    ----------
    t : (c, h, w) torch.Tensor
        T = H0 o R0.
    u : (c, h, w) torch.Tensor
        U = exp(-Z) o H0 R0 (eq. 22).
    z : (c, h, w) torch.Tensor
        Mask Z (eq. 21).
    h0 : (h, w) torch.Tensor
        Initial weight map.
    r0 : (c, h, w) torch.Tensor
        Initial reflectance.
    params : ASMParams
        Parameters.

    Returns
    -------
    (c, h, w) torch.Tensor
        The enhanced image HR, in [0, 1].
    """
    pr = params
    m = t.clone()
    if pr.iterations == 0:
        return m.clamp_(0.0, 1.0)
    c, h, w = t.shape
    z2 = z * z
    deg = degree(h, w, t.device)
    deg_z = torch.zeros_like(z2)
    deg_z[..., :, :-1] += z2[..., :, :-1]
    deg_z[..., :, 1:] += z2[..., :, :-1]
    deg_z[..., :-1, :] += z2[..., :-1, :]
    deg_z[..., 1:, :] += z2[..., :-1, :]
    tau1 = pr.lambda2 / (2 * pr.mu1)
    tau2 = pr.lambda3 / (2 * pr.mu2)
    tau3 = pr.lambda3 / (2 * pr.mu3)
    gux, guy = grad(u)
    hmap = h0.expand(c, h, w).clone()
    r = r0.clone()
    n = torch.zeros_like(t)

    def apply_m(x: torch.Tensor) -> torch.Tensor:
        return laplacian(x).mul_(pr.mu3).add_(x, alpha=pr.lambda1)

    for _ in range(pr.iterations):
        # H-subproblem (eqs. 13-15), damped Jacobi on the HQS normal equations.
        if pr.h_sweeps:
            rn = r + n
            diag = (
                (rn * rn).mul_(pr.lambda1).add_(deg_z, alpha=pr.mu1).add_(r * r * deg, alpha=pr.mu2)
            )
            diag.clamp_min_(1e-6)
            for _sweep in range(pr.h_sweeps):
                gx, gy = grad(hmap)
                res = grad_t(z * (z * gx).clamp_(-tau1, tau1), z * (z * gy).clamp_(-tau1, tau1))
                res.mul_(-pr.mu1)
                vx, vy = grad(r * hmap - u)
                res.addcmul_(
                    r, grad_t(vx.clamp_(-tau2, tau2), vy.clamp_(-tau2, tau2)), value=-pr.mu2
                )
                res.addcmul_(rn, t - rn * hmap, value=pr.lambda1)
                hmap.addcdiv_(res, diag).clamp_(1.0, pr.h_max)
        # HR-subproblem (eqs. 16-17), Chebyshev from the previous HR.
        gx, gy = grad(m)
        res0 = grad_t((gx - gux).clamp_(-tau3, tau3), (gy - guy).clamp_(-tau3, tau3)).mul_(-pr.mu3)
        res0.add_((t - hmap * n).sub_(m), alpha=pr.lambda1)
        m = chebyshev(
            apply_m, res0, m, lo=pr.lambda1, hi=pr.lambda1 + 8 * pr.mu3, steps=pr.m_sweeps
        )
        # R (eq. 18) and N (eq. 20).
        r = (m / hmap).clamp_(0.0, 1.0)
        hh = hmap * hmap
        n = (
            (t - hmap * r)
            .mul_(hmap)
            .mul_(pr.lambda1)
            .div_(hh.mul_(pr.lambda1).add_(z2, alpha=pr.lambda4))
        )
        n.clamp_(0.0, 1.0)
    return m.clamp_(0.0, 1.0)
