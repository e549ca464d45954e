"""Batch gradients (GD, SGD, m-SAM and the base optimizers; every arch), accumulated sample
by sample, 4 samples per pass over the weights."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._common import _JIT, _SBN, _act, _dldf, _head, _lval
from ._simbn_stats import _pm_tables, _pstride, _sbn_stats, _sbn_stats_pm


@njit(**_JIT)
def _z4(X4, WA, ma, Z4):
    """Z4[r, :ma] = sum_l X4[r, l] WA[l, :ma] for the 4 rows of X4 (register-blocked 4x4: each
    loaded weight feeds 4 rows and each accumulator load/store 4 multiply-adds)."""
    dp = X4.shape[1]
    z0, z1, z2, z3 = Z4[0], Z4[1], Z4[2], Z4[3]
    for j in range(ma):
        z0[j] = 0.0
        z1[j] = 0.0
        z2[j] = 0.0
        z3[j] = 0.0
    l = 0
    while l + 4 <= dp:
        w0, w1, w2, w3 = WA[l], WA[l + 1], WA[l + 2], WA[l + 3]
        x00, x01, x02, x03 = X4[0, l], X4[0, l + 1], X4[0, l + 2], X4[0, l + 3]
        x10, x11, x12, x13 = X4[1, l], X4[1, l + 1], X4[1, l + 2], X4[1, l + 3]
        x20, x21, x22, x23 = X4[2, l], X4[2, l + 1], X4[2, l + 2], X4[2, l + 3]
        x30, x31, x32, x33 = X4[3, l], X4[3, l + 1], X4[3, l + 2], X4[3, l + 3]
        for j in range(ma):
            a0 = w0[j]
            a1 = w1[j]
            a2 = w2[j]
            a3 = w3[j]
            z0[j] += x00 * a0 + x01 * a1 + x02 * a2 + x03 * a3
            z1[j] += x10 * a0 + x11 * a1 + x12 * a2 + x13 * a3
            z2[j] += x20 * a0 + x21 * a1 + x22 * a2 + x23 * a3
            z3[j] += x30 * a0 + x31 * a1 + x32 * a2 + x33 * a3
        l += 4
    while l < dp:
        w0 = WA[l]
        x0, x1, x2, x3 = X4[0, l], X4[1, l], X4[2, l], X4[3, l]
        for j in range(ma):
            a0 = w0[j]
            z0[j] += x0 * a0
            z1[j] += x1 * a0
            z2[j] += x2 * a0
            z3[j] += x3 * a0
        l += 1


@njit(**_JIT)
def _acc4(X4, H4, ma, MA):
    """MA[l, :ma] += sum_r X4[r, l] H4[r, :ma] (4 rows, 4x4 register-blocked)."""
    dp = X4.shape[1]
    h0, h1, h2, h3 = H4[0], H4[1], H4[2], H4[3]
    l = 0
    while l + 4 <= dp:
        m0, m1, m2, m3 = MA[l], MA[l + 1], MA[l + 2], MA[l + 3]
        x00, x01, x02, x03 = X4[0, l], X4[0, l + 1], X4[0, l + 2], X4[0, l + 3]
        x10, x11, x12, x13 = X4[1, l], X4[1, l + 1], X4[1, l + 2], X4[1, l + 3]
        x20, x21, x22, x23 = X4[2, l], X4[2, l + 1], X4[2, l + 2], X4[2, l + 3]
        x30, x31, x32, x33 = X4[3, l], X4[3, l + 1], X4[3, l + 2], X4[3, l + 3]
        for j in range(ma):
            b0 = h0[j]
            b1 = h1[j]
            b2 = h2[j]
            b3 = h3[j]
            m0[j] += x00 * b0 + x10 * b1 + x20 * b2 + x30 * b3
            m1[j] += x01 * b0 + x11 * b1 + x21 * b2 + x31 * b3
            m2[j] += x02 * b0 + x12 * b1 + x22 * b2 + x32 * b3
            m3[j] += x03 * b0 + x13 * b1 + x23 * b2 + x33 * b3
        l += 4
    while l < dp:
        m0 = MA[l]
        x0, x1, x2, x3 = X4[0, l], X4[1, l], X4[2, l], X4[3, l]
        for j in range(ma):
            m0[j] += x0 * h0[j] + x1 * h1[j] + x2 * h2[j] + x3 * h3[j]
        l += 1


@njit(**_JIT)
def _gather4(Xp, rows, k0, cnt, X4):
    """X4[r] = Xp[rows[k0 + r]] for r < cnt, zero rows after (they contribute nothing)."""
    dp = Xp.shape[1]
    for r in range(4):
        for l in range(dp):
            X4[r, l] = Xp[rows[k0 + r], l] if r < cnt else 0.0


@njit(inline="always", **_JIT)
def _batch_grad_sbn(th, Xp, Xp4, Y, idx, lossc, ls, grad, ws, sw):
    """The Sim-BN part of ``_batch_grad`` (gradients zeroed by the caller): the statistics
    over all rows of Xp, then the samples of idx 4 at a time; returns the mean loss, or NaN if
    a statistic overflowed."""
    WT, W2, gam = th
    gWT, gW2, ggam = grad
    dp, m = WT.shape
    B = idx.shape[0]
    n = Xp.shape[0]
    invB = 1.0 / B
    q, MT, Hall, zrow, zi, a, da, g2, dz, kappa, bits = ws
    pm, tabs, WS, Tt, Ct = sw
    loss = 0.0
    for l in range(dp):
        wr = WT[l]
        sr = WS[l]
        for j in range(m):
            sr[j] = wr[j]
    if pm:
        _sbn_stats_pm(WS, m, -1, q, MT, zi, tabs, Tt, Ct, zrow, Hall, True)
    else:
        _sbn_stats(Xp4, WS, m, -1, q, MT, zrow, zi, Hall, True)
    invs = a  # 1 / s_j (0 for a dead neuron), 1 / q_j: once per gradient
    invq = da
    bad = 0.0
    for j in range(m):
        kappa[j] = 0.0
        qj = q[j]
        bad += qj * 0.0
        invs[j] = 1.0 / math.sqrt(qj / n) if qj > 0.0 else 0.0
        invq[j] = 1.0 / qj if qj > 0.0 else 0.0
    if not math.isfinite(bad):
        return math.nan  # the statistic overflowed
    X4 = np.empty((4, dp))
    for b0 in range(0, B, 4):  # 4 samples per pass over gWT (``_acc4``)
        cnt = min(4, B - b0)
        _gather4(Xp, idx, b0, cnt, X4)
        for r in range(4):
            dzr = zrow[r]
            if r >= cnt:
                for j in range(m):
                    dzr[j] = 0.0
                continue
            i = idx[b0 + r]
            h = Hall[i]  # relu(z) >= 0; a dead neuron has invs = 0
            F = 0.0
            for j in range(m):
                F += W2[j] * gam[j] * h[j] * invs[j]
            loss += _lval(F, Y[i], lossc, ls)
            e = _dldf(F, Y[i], lossc, ls) * invB
            for j in range(m):
                hs = h[j] * invs[j]
                gW2[j] += e * gam[j] * hs
                ggam[j] += e * W2[j] * hs
                u = e * W2[j] * gam[j] * invs[j]
                dzr[j] = u if h[j] > 0.0 else 0.0
                kappa[j] += u * h[j] * invq[j]
        _acc4(X4, zrow, m, gWT)
    for l in range(dp):
        gr = gWT[l]
        mr = MT[l]
        for j in range(m):
            gr[j] -= kappa[j] * mr[j]
    return loss * invB


@njit(**_JIT)
def _batch_grad(th, Xp, Xp4, Y, idx, act, eps, lossc, ls, grad, ws, sw):
    """Mean over idx of l(f(x_i), y_i) at th = (WT, W2, gamma) and its gradient (written into
    grad = (gWT, gW2, ggam)).

    The gradient is accumulated one sample at a time (z_i = W x'_i, gWT += x'_i dz_i^T), so the
    only temporaries are O(m) (Sim-BN: plus the (n, m) activations).  For Sim-BN the
    statistic runs over all rows of Xp and the gradient flows through it:
    gw_j = sum_b u_bj 1_bj x'_b - (sum_b u_bj h_bj / q_j) Mw_j.  ``ws`` and ``sw`` are
    workspace tuples (``_workspace``, ``_sbn_workspace``); the statistics run on a copy of W
    with row stride ``_pstride(m)`` (with the +-1 tables if ``sw`` says so).
    """
    _, _, _, zrow, _, a, da, g2, dz, _, bits = ws
    WT, W2, _ = th
    gWT, gW2, ggam = grad
    dp, m = WT.shape
    B = idx.shape[0]
    for l in range(dp):
        gr = gWT[l]
        for j in range(m):
            gr[j] = 0.0
    for j in range(m):
        gW2[j] = 0.0
        ggam[j] = 0.0
    invB = 1.0 / B
    loss = 0.0
    if act == _SBN:
        return _batch_grad_sbn(th, Xp, Xp4, Y, idx, lossc, ls, grad, ws, sw)
    X4 = np.empty((4, dp))
    for b0 in range(0, B, 4):
        cnt = min(4, B - b0)
        _gather4(Xp, idx, b0, cnt, X4)
        _z4(X4, WT, m, zrow)
        for r in range(4):
            zr = zrow[r]
            if r < cnt:
                _act(zr, a, da, act, bits)
                yb = Y[idx[b0 + r]]
                f = _head(a, da, W2, yb, act, eps, g2, dz, lossc, ls)
                loss += _lval(f, yb, lossc, ls)
                for j in range(m):
                    gW2[j] += g2[j] * invB
                    zr[j] = dz[j] * invB
            else:
                for j in range(m):
                    zr[j] = 0.0
        _acc4(X4, zrow, m, gWT)
    return loss * invB


@njit(**_JIT)
def _workspace(dp, m, n, act):
    nz = n if act == _SBN else 1
    mS = _pstride(m) if act == _SBN else m  # Sim-BN statistics: no 4 KiB row stride
    dpM = (dp + 3) // 4 * 4 if act == _SBN else dp  # (d' padded to a multiple of 4)
    return (
        np.empty(m),
        np.empty((dpM, mS)),
        np.empty((nz, m)),
        np.empty((4, mS)),
        np.empty(m),
        np.empty(m),
        np.empty(m),
        np.empty(m),
        np.empty(m),
        np.empty(m),
        np.empty(m, dtype=np.int64),
    )


@njit(**_JIT)
def _sbn_workspace(Xp, m, act, pm):
    """(pm, tables, W copy (d'4, S) with zero pad rows, T, C) for the Sim-BN statistics of
    ``_batch_grad``; pm: all inputs are +-1 (``_sbn_stats_pm``)."""
    n, dp = Xp.shape
    sbn = act == _SBN
    pm = pm and sbn
    tabs = _pm_tables(Xp if pm else np.ones((4, 4)))
    dp4 = (dp + 3) // 4 * 4
    mS = _pstride(m) if sbn else 1
    WS = np.zeros((dp4 if sbn else 1, mS))
    Tt = np.zeros((2 * dp4 + 1, mS) if pm else (1, 1))
    Ct = np.zeros((8 * ((n + 3) // 4), mS) if pm else (1, 1))
    return pm, tabs, WS, Tt, Ct
