"""Rank-1 kernels: 1-SAM and SGD with batch size 1 on 2-MLP-No-Bias, 2-MLP-Bias, softplus and
2-MLP-Sim-LN (see the package docstring: the perturbed pre-activation costs O(m))."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._common import _JIT, _act, _head


# ----------------------------------------------------------------------------------------
# 1-SAM / SGD(batch 1) fast path for nobias, bias, softplus, sln
# ----------------------------------------------------------------------------------------
@njit(**_JIT)
def _w1_pass(W1T, x, xnext, scale, lrx, dz, znext, has_next):
    """W1 <- scale*W1 - lr * dz x^T in place (W1 stored transposed, (d, m)); if has_next, also
    accumulate znext += W1_new @ xnext.  Returns ||W1_new||_F^2 (for the projection)."""
    d, m = W1T.shape
    ss = 0.0
    for k in range(d):
        row = W1T[k]
        lk = lrx * x[k]
        if has_next:
            xn = xnext[k]
            for j in range(m):
                w = scale * row[j] - lk * dz[j]
                row[j] = w
                znext[j] += w * xn
                ss += w * w
        else:
            for j in range(m):
                w = scale * row[j] - lk * dz[j]
                row[j] = w
                ss += w * w
    return ss


@njit(inline="always", **_JIT)
def _project(W1T, b1, z, has_bias, tfac):
    """Scale W1, b1 (the projection of Figure 6b) and the next pre-activation z by tfac."""
    d, m = W1T.shape
    for k in range(d):
        row = W1T[k]
        for j in range(m):
            row[j] *= tfac
    if has_bias:
        for j in range(m):
            b1[j] *= tfac
    for j in range(m):
        z[j] *= tfac


@njit(inline="always", **_JIT)
def _preact(W1T, b1, x, has_bias, z):
    """z = W1 x + b1 (W1 stored transposed)."""
    d, m = W1T.shape
    for j in range(m):
        z[j] = b1[j] if has_bias else 0.0
    for k in range(d):
        xk = x[k]
        row = W1T[k]
        for j in range(m):
            z[j] += row[j] * xk


@njit(inline="always", **_JIT)
def _sq_norms(X, has_bias):
    """|x'_i|^2 = |x_i|^2 + 1[bias] for every row: the rank-1 gradient dz x'^T has squared
    norm |x'|^2 |dz|^2."""
    n, d = X.shape
    hb = 1.0 if has_bias else 0.0
    sqn = np.empty(n)
    for i in range(n):
        s = hb
        for k in range(d):
            s += X[i, k] * X[i, k]
        sqn[i] = s
    return sqn


@njit(inline="always", **_JIT)
def _perturb(z, W2, gW2, dz, sq, rho, zp, W2p):
    """The perturbed point theta + rho g/||g|| of a rank-1 gradient (gW2, dz x'^T, sq =
    |x'|^2): W2p, and its pre-activation zp = z + c |x'|^2 dz (O(m), no pass over W1)."""
    m = z.shape[0]
    g2 = 0.0
    for j in range(m):
        g2 += gW2[j] * gW2[j] + sq * dz[j] * dz[j]
    c = rho / math.sqrt(g2) if g2 > 0.0 else 0.0
    cx = c * sq
    for j in range(m):
        W2p[j] = W2[j] + c * gW2[j]
        zp[j] = z[j] + cx * dz[j]


@njit(inline="always", **_JIT)
def _update_b1(b1, dz, scale, lr, has_bias, z):
    """b1 <- scale*b1 - lr*dz and z <- the new b1 (the next pre-activation starts from it;
    zero without bias).  Returns ||b1||^2 (for the projection)."""
    m = z.shape[0]
    bs = 0.0
    if has_bias:
        for j in range(m):
            bj = scale * b1[j] - lr * dz[j]
            b1[j] = bj
            z[j] = bj
            bs += bj * bj
    else:
        for j in range(m):
            z[j] = 0.0
    return bs


@njit(**_JIT)
def _sam1_fast(
    W1T,
    b1,
    W2,
    X,
    Y,
    orders,
    act,
    has_bias,
    lr,
    rho,
    wd,
    eps,
    proj,
    do_sam,
    lossc,
    ls,
    fail,
):
    """1-SAM (do_sam) or SGD with batch size 1 over ``orders`` (epochs, n).

    fail[0], fail[1] <- epoch, step of a non-finite loss (then returns early); returns the
    number of completed epochs.  The update of W1 is fused with the next sample's
    pre-activation (``_w1_pass``), so each step reads W1 once.
    """
    m = W1T.shape[1]
    n = X.shape[0]
    E = orders.shape[0]
    scale = 1.0 - lr * wd
    z = np.empty(m)
    zp = np.empty(m)
    a = np.empty(m)
    da = np.empty(m)
    gW2 = np.empty(m)
    dz = np.empty(m)
    W2p = np.empty(m)
    bits = np.empty(m, dtype=np.int64)
    sqn = _sq_norms(X, has_bias)
    if E == 0:
        return 0
    _preact(W1T, b1, X[orders[0, 0]], has_bias, z)  # z for the very first sample
    for ep in range(E):
        for t in range(n):
            i = orders[ep, t]
            y = Y[i]
            _act(z, a, da, act, bits)
            f = _head(a, da, W2, y, act, eps, gW2, dz, lossc, ls)
            if not math.isfinite(f):
                fail[0], fail[1] = ep, t
                return ep
            if do_sam:
                _perturb(z, W2, gW2, dz, sqn[i], rho, zp, W2p)
                _act(zp, a, da, act, bits)
                fp = _head(a, da, W2p, y, act, eps, gW2, dz, lossc, ls)
                if not math.isfinite(fp):
                    fail[0], fail[1] = ep, t
                    return ep
            # update W2, b1 and (fused) W1 + next pre-activation
            for j in range(m):
                W2[j] = scale * W2[j] - lr * gW2[j]
            has_next = (t + 1 < n) or (ep + 1 < E)
            if has_next:
                inext = orders[ep, t + 1] if t + 1 < n else orders[ep + 1, 0]
            else:
                inext = i
            bs = _update_b1(b1, dz, scale, lr, has_bias, z)
            ss = _w1_pass(W1T, X[i], X[inext], scale, lr, dz, z, has_next)
            if proj > 0.0:
                _project(W1T, b1, z, has_bias, proj / math.sqrt(ss + bs))
    return E
