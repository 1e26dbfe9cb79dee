"""The alternating HQS scheme of eqs. 11-20 (torch, one band at a time, in preallocated buffers).

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

Implementation (speed). The bands do not interact in eqs. 11-20, so the scheme
runs one band at a time, and on CPU :func:`geo_ntl.enhance.core.enhance_block`
gives it pieces of at most 512 + 2 x 27 px (its support): a band's fifteen
working arrays (1.3 MB each) then stay in the last-level cache, where an
element-wise pass is faster than one streamed from memory (against one solve
of a whole 1078^2 region, 4.6 MB per array, the pieces measured 15 % faster
alone and 28 % faster with both cores busy). Every array is allocated
once per block (:class:`_Work`) and updated in place or through ``out=``: on
Linux a fresh multi-megabyte tensor is a fresh ``mmap`` whose pages fault in on
first touch, and those page faults, not the arithmetic, took most of the time
of the former allocate-per-operation code (70% system time for a 48 MB add,
the reason 2048^2 was 6.7x slower per pixel than 1024^2). Differences and
their adjoints are computed on slices (no padded copies), the operator of the
HR system is applied without forming G^T G x separately, and constant factors
are folded into precomputed maps, so the arithmetic is the same as before, in
about a third of the passes over memory.
"""

from __future__ import annotations

import torch

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
        Initial residual ``b - A x`` (overwritten).
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

    def update(r: torch.Tensor, p: torch.Tensor, alpha: float) -> None:
        r.sub_(apply_a(p), alpha=alpha)

    return _chebyshev(update, rhs_residual, x, torch.empty_like(x), lo=lo, hi=hi, steps=steps)


def _chebyshev(update, r, x, p, *, lo: float, hi: float, steps: int) -> torch.Tensor:
    """Chebyshev iteration; ``update(r, p, alpha)`` does ``r -= alpha A p`` in place."""
    d = 0.5 * (hi + lo)
    c = 0.5 * (hi - lo)
    alpha = 0.0
    for i in range(steps):
        if i == 0:
            p.copy_(r)
            alpha = 1.0 / d
        else:
            beta = 0.5 * (c * alpha) ** 2 if i == 1 else (0.5 * c * alpha) ** 2
            alpha = 1.0 / (d - beta / alpha)
            torch.add(r, p, alpha=beta, out=p)
        x.add_(p, alpha=alpha)
        if i + 1 < steps:
            update(r, p, alpha)
    return x


def _grad(x: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> None:
    """Forward differences of a 2-D ``x`` into ``gx``, ``gy`` (zero last difference)."""
    torch.sub(x[:, 1:], x[:, :-1], out=gx[:, :-1])
    gx[:, -1] = 0.0
    torch.sub(x[1:], x[:-1], out=gy[:-1])
    gy[-1] = 0.0


def _div(px: torch.Tensor, py: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``-G^T (px, py)`` (the discrete divergence) into ``out``; last differences must be 0."""
    out[:, 0] = px[:, 0]
    torch.sub(px[:, 1:], px[:, :-1], out=out[:, 1:])
    out.add_(py)
    out[1:].sub_(py[:-1])
    return out


class _Work:
    """Per-band state and scratch arrays of the solver, allocated once per block."""

    def __init__(self, h: int, w: int, device: torch.device) -> None:
        def new() -> torch.Tensor:
            return torch.empty((h, w), dtype=torch.float32, device=device)

        self.hmap, self.r, self.n, self.p = new(), new(), new(), new()
        self.gx, self.gy, self.gux, self.guy = new(), new(), new(), new()
        self.res, self.tmp, self.rn, self.diag = new(), new(), new(), new()
        self.zm1, self.mu1_deg_z, self.l4z2 = new(), new(), new()


def _edges_add_(dst: torch.Tensor, src: torch.Tensor, alpha: float) -> None:
    """``dst += alpha * src`` on the first and last row and column (corner pixels twice)."""
    for sl in ((0, slice(None)), (-1, slice(None)), (slice(None), 0), (slice(None), -1)):
        dst[sl].add_(src[sl], alpha=alpha)


def _apply_m_update(r: torch.Tensor, p: torch.Tensor, alpha: float, pr: ASMParams) -> None:
    """``r -= alpha (lambda1 E + mu3 G^T G) p`` in place (no temporary).

    The Neumann diagonal ``lambda1 + mu3 * degree`` is applied as the interior value
    ``lambda1 + 4 mu3`` plus a correction on the edge rows and columns, so no
    diagonal array is read.
    """
    s = alpha * pr.mu3
    r.add_(p, alpha=-alpha * (pr.lambda1 + 4.0 * pr.mu3))
    _edges_add_(r, p, s)
    r[:, 1:].add_(p[:, :-1], alpha=s)
    r[:, :-1].add_(p[:, 1:], alpha=s)
    r[1:].add_(p[:-1], alpha=s)
    r[:-1].add_(p[1:], alpha=s)


def _band(t, u, z, h0, r0, pr: ASMParams, w: _Work, out: torch.Tensor) -> None:
    """Run the scheme on one ``(h, w)`` band; ``out`` holds HR while solving, clipped at the end."""
    lam1, lam4, mu1, mu2, mu3 = pr.lambda1, pr.lambda4, pr.mu1, pr.mu2, pr.mu3
    tau1 = pr.lambda2 / (2 * mu1)
    tau2 = pr.lambda3 / (2 * mu2)
    tau3 = pr.lambda3 / (2 * mu3)
    m, hmap, r, n = out, w.hmap, w.r, w.n
    gx, gy, res, tmp, rn, diag = w.gx, w.gy, w.res, w.tmp, w.rn, w.diag
    m.copy_(t)
    hmap.copy_(h0)
    r.copy_(r0)
    n.zero_()
    torch.mul(z, mu1, out=w.zm1)
    # mu1 * (diagonal of G^T Z^2 G) = mu1 * sum over the 4 edges of z^2 at the edge's start.
    torch.mul(z, z, out=tmp)
    tmp.mul_(mu1)
    dz = w.mu1_deg_z
    dz.zero_()
    dz[:, :-1] += tmp[:, :-1]
    dz[:, 1:] += tmp[:, :-1]
    dz[:-1, :] += tmp[:-1, :]
    dz[1:, :] += tmp[:-1, :]
    torch.mul(z, z, out=w.l4z2).mul_(lam4 / lam1)
    _grad(u, w.gux, w.guy)
    for it in range(pr.iterations):
        if pr.h_sweeps:
            # H-subproblem (eqs. 13-15), damped Jacobi on the HQS normal equations.
            if it == 0:
                rn.copy_(r)  # N = 0
            else:
                torch.add(r, n, out=rn)
            torch.addcmul(dz, rn, rn, value=lam1, out=diag)
            # + mu2 R^2 * degree (4 inside, fewer neighbours on the edges)
            torch.mul(r, r, out=tmp)
            diag.add_(tmp, alpha=4.0 * mu2)
            _edges_add_(diag, tmp, -mu2)
            diag.clamp_min_(1e-6)
            for _sweep in range(pr.h_sweeps):
                # -mu1 G^T Z clip(Z G H)
                _grad(hmap, gx, gy)
                gx.mul_(z).clamp_(-tau1, tau1).mul_(w.zm1)
                gy.mul_(z).clamp_(-tau1, tau1).mul_(w.zm1)
                _div(gx, gy, res)
                # -mu2 R G^T clip(G(R H - U))
                torch.mul(r, hmap, out=tmp).sub_(u)
                _grad(tmp, gx, gy)
                gx.clamp_(-tau2, tau2)
                gy.clamp_(-tau2, tau2)
                res.addcmul_(r, _div(gx, gy, tmp), value=mu2)
                # lambda1 (R + N)(T - (R + N) H)
                torch.addcmul(t, rn, hmap, value=-1.0, out=tmp)
                res.addcmul_(rn, tmp, value=lam1)
                hmap.addcdiv_(res, diag).clamp_(1.0, pr.h_max)
        # HR-subproblem (eqs. 16-17): residual b - A M, then Chebyshev from the previous HR.
        _grad(m, gx, gy)
        gx.sub_(w.gux).clamp_(-tau3, tau3)
        gy.sub_(w.guy).clamp_(-tau3, tau3)
        _div(gx, gy, res).mul_(mu3)
        torch.addcmul(t, hmap, n, value=-1.0, out=tmp).sub_(m)
        res.add_(tmp, alpha=lam1)
        _chebyshev(
            lambda rr, pp, a: _apply_m_update(rr, pp, a, pr),
            res,
            m,
            w.p,
            lo=lam1,
            hi=lam1 + 8 * mu3,
            steps=pr.m_sweeps,
        )
        # R (eq. 18) and N (eq. 20).
        torch.div(m, hmap, out=r).clamp_(0.0, 1.0)
        torch.addcmul(t, hmap, r, value=-1.0, out=tmp).mul_(hmap)
        torch.addcmul(w.l4z2, hmap, hmap, out=diag)
        torch.div(tmp, diag, out=n).clamp_(0.0, 1.0)
    m.clamp_(0.0, 1.0)


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
        The enhanced image HR, in [0, 1] (a new tensor).
    """
    if params.iterations == 0:
        return t.clamp(0.0, 1.0)
    c, h, w = t.shape
    out = torch.empty_like(t)
    work = _Work(h, w, t.device)
    for k in range(c):
        _band(t[k], u[k], z[k], h0, r0[k], params, work, out[k])
    return out
