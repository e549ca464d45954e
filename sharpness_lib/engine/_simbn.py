"""1-SAM and SGD with batch size 1 on 2-MLP-Sim-BN: packed active neurons, exact statistics
(``_simbn_stats``)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._common import _JIT, _dldf
from ._simbn_stats import _pad4, _pm_tables, _pstride, _sbn_stats, _sbn_stats_pm


@njit(**_JIT)
def _matvec_t(x, WT, out):
    """out[:m] = sum_l x[l] WT[l, :m] (4 rows of WT per pass over out)."""
    dp, m = WT.shape
    for j in range(m):
        out[j] = 0.0
    l = 0
    while l + 4 <= dp:
        w0, w1, w2, w3 = WT[l], WT[l + 1], WT[l + 2], WT[l + 3]
        x0, x1, x2, x3 = x[l], x[l + 1], x[l + 2], x[l + 3]
        for j in range(m):
            out[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j]
        l += 4
    while l < dp:
        w0 = WT[l]
        x0 = x[l]
        for j in range(m):
            out[j] += x0 * w0[j]
        l += 1


# The workspaces of ``_sbn_sam1`` and the phases of one step, inlined into it (numba IR
# inlining: the compiled loop is the one a single function would give, bit for bit).
# "Packed" arrays hold the active neurons in columns 0..na-1 (``idxA`` maps them back to
# neuron indices).  Tuples group what the phases share: the parameters th = (WT, W2, gamma),
# the statistics of every neuron st = (q, MT), the index lists ix = (idxA, idxU, jU), the
# packed neurons P = (z, q, W2, gamma) at theta and A (same fields) at the perturbed point,
# and the packed gradient g = (dl/dW2, dl/dgamma, u, c), dl/dw_a = u_a (x' - c_a Mw_a) (see
# ``_simbn_stats``).
@njit(**_JIT)
def _sbn_workspace(Xp, m, pm):
    """The workspaces of ``_sbn_sam1``, allocated once per call: Xp4 (``_pad4``), the +-1
    tables (``pm``), the buffers that ``_sbn_views`` re-cuts every step, 12 packed vectors,
    the index lists, the statistics st = (q, MT) and what ``_sbn_all_stats`` needs."""
    n = Xp.shape[0]
    Xp4 = _pad4(Xp)
    dp4 = Xp4.shape[1]
    mS = _pstride(m)  # the largest packed row stride
    blk = dp4 * mS + 8
    nT = 8 * (dp4 // 4) + 1
    nC = 8 * ((n + 3) // 4)
    tabs = _pm_tables(Xp if pm else np.ones((4, 4)))
    Tbuf = np.zeros(nT * mS if pm else 1)
    Cbuf = np.zeros(nC * mS if pm else 1)
    bufs = (np.zeros(4 * blk + 4 * mS + 8), blk, Tbuf, nT, Cbuf, nC)
    ix = (np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64))
    st = (np.empty(m), np.empty((dp4, m)))
    full = (np.zeros((dp4, mS)), np.empty((4, mS)), np.empty(m), np.empty((1, 1)))
    return Xp4, tabs, bufs, np.empty((12, m)), ix, st, full


@njit(inline="always", **_JIT)
def _sbn_all_stats(Xp4, WT, st, full):
    """(q, Mw) of every neuron: ``_sbn_stats`` on WTs, the copy of WT with row stride
    ``_pstride(m)`` and zero pad rows (``full`` = (WTs, Z4, zi, dummy) workspaces)."""
    dp, m = WT.shape
    q, MT = st
    WTs, Zfull, zi, dummy = full
    WTs[:dp, :m] = WT
    _sbn_stats(Xp4, WTs, m, -1, q, MT, Zfull, zi, dummy, False)


@njit(inline="always", **_JIT)
def _sbn_views(bufs, pm, dp, dp4, S):
    """The packed blocks for the row stride S, cut from the buffers of ``_sbn_workspace``
    (fixed offsets): current weights WA0, Mw MA (current, then new), dl/dw DWA, perturbed then
    new weights WA (WA4: the same with zero pad rows up to d'4), Z4, and the +-1 tables T, C."""
    buf, blk, Tbuf, nT, Cbuf, nC = bufs
    WA0 = buf[: dp * S].reshape((dp, S))
    MA = buf[blk : blk + dp4 * S].reshape((dp4, S))
    DWA = buf[2 * blk : 2 * blk + dp * S].reshape((dp, S))
    WA = buf[3 * blk : 3 * blk + dp * S].reshape((dp, S))
    Z4 = buf[4 * blk : 4 * blk + 4 * S].reshape((4, S))
    WA4 = buf[3 * blk : 3 * blk + dp4 * S].reshape((dp4, S))
    for l in range(dp, dp4):  # (the view moves with S: clear the pad rows)
        wr = WA4[l]
        for a in range(S):
            wr[a] = 0.0
    if pm:
        Ttab = Tbuf[: nT * S].reshape((nT, S))
        Ctab = Cbuf[: nC * S].reshape((nC, S))
    else:
        Ttab = Tbuf[:1].reshape((1, 1))
        Ctab = Cbuf[:1].reshape((1, 1))
    return WA0, MA, DWA, WA, WA4, Z4, Ttab, Ctab


@njit(inline="always", **_JIT)
def _sbn_packed_stats(sx, WA4, ma, irow, qA, MA, ziA):
    """(q, Mw) of the first ma packed columns of WA4, z of row irow: ``_sbn_stats``, or its
    +-1 tables ``_sbn_stats_pm``; sx = (pm, Xp4, tabs, T, C, Z4, dummy)."""
    pm, Xp4, tabs, Ttab, Ctab, Z4, dummy = sx
    if pm:
        _sbn_stats_pm(WA4, ma, irow, qA, MA, ziA, tabs, Ttab, Ctab, Z4, dummy, False)
    else:
        _sbn_stats(Xp4, WA4, ma, irow, qA, MA, Z4, ziA, dummy, False)


@njit(inline="always", **_JIT)
def _sbn_active(zi, q, m, idxA):
    """Branch-free compaction of the neurons active on the sample (z_ij > 0, q_j > 0) into
    idxA; returns their number, or -1 if a statistic overflowed (the output is not finite)."""
    na = 0
    bad = 0.0
    for j in range(m):
        idxA[na] = j
        na += (zi[j] > 0.0) & (q[j] > 0.0)
        bad += q[j] * 0.0
    if not math.isfinite(bad):
        return -1
    return na


@njit(inline="always", **_JIT)
def _sbn_pack(idxA, na, dp, zi, th, st, P, WA0, MA):
    """Gather the active neurons' z, q, W2, gamma (into P), weights and Mw (WA0, MA)."""
    WT, W2, gam = th
    q, MT = st
    ziP, qP, W2P, gamP = P
    for a in range(na):
        j = idxA[a]
        ziP[a] = zi[j]
        qP[a] = q[j]
        W2P[a] = W2[j]
        gamP[a] = gam[j]
    for l in range(dp):
        wr = WT[l]
        mr = MT[l]
        w0 = WA0[l]
        m0 = MA[l]
        for a in range(na):
            j = idxA[a]
            w0[a] = wr[j]
            m0[a] = mr[j]


@njit(inline="always", **_JIT)
def _sbn_grad_at_theta(na, n, dp, x, y, lossc, ls, P, MA, g, DWA):
    """Pass 1 at theta: the output and the gradient of the active neurons (packed: g, DWA);
    returns ||g||^2, or -1 if the output is not finite."""
    ziP, qP, W2P, gamP = P
    gW2A, ggA, uA, cA = g
    F = 0.0
    for a in range(na):
        s = math.sqrt(qP[a] / n)
        F += W2P[a] * gamP[a] * ziP[a] / s
    if not math.isfinite(F):
        return -1.0
    e = _dldf(F, y, lossc, ls)
    g2 = 0.0
    for a in range(na):
        s = math.sqrt(qP[a] / n)
        hs = ziP[a] / s
        gw = e * gamP[a] * hs
        gg = e * W2P[a] * hs
        gW2A[a] = gw
        ggA[a] = gg
        uA[a] = e * W2P[a] * gamP[a] / s
        cA[a] = ziP[a] / qP[a]
        g2 += gw * gw + gg * gg
    for l in range(dp):
        xl = x[l]
        m0 = MA[l]
        dr = DWA[l]
        for a in range(na):
            v = uA[a] * (xl - cA[a] * m0[a])
            dr[a] = v
            g2 += v * v
    return g2


@njit(inline="always", **_JIT)
def _sbn_perturb(na, dp, c, P, g, WA0, DWA, WA, A):
    """The perturbed point theta + c g of the active neurons (weights WA, W2 and gamma in A):
    only active neurons have a gradient."""
    _, _, W2P, gamP = P
    gW2A, ggA, _, _ = g
    _, _, W2A, gamA = A
    for l in range(dp):
        w0 = WA0[l]
        war = WA[l]
        dr = DWA[l]
        for a in range(na):
            war[a] = w0[a] + c * dr[a]
    for a in range(na):
        W2A[a] = W2P[a] + c * gW2A[a]
        gamA[a] = gamP[a] + c * ggA[a]


@njit(inline="always", **_JIT)
def _sbn_grad_perturbed(na, n, dp, x, y, lossc, ls, A, MA, g, DWA, idxU):
    """Pass 2 at the perturbed point (statistics in A and MA already computed there): the
    gradient of the active neurons; those dead at the perturbed point get none.  idxU <- the
    packed indices of the neurons that move; returns their number, or -1 if the output is
    not finite."""
    ziA, qA, W2A, gamA = A
    gW2A, ggA, uA, cA = g
    F = 0.0
    bad = 0.0
    for a in range(na):
        if ziA[a] > 0.0 and qA[a] > 0.0:
            F += W2A[a] * gamA[a] * ziA[a] / math.sqrt(qA[a] / n)
        bad += qA[a] * 0.0  # a perturbed statistic overflowed
    F += bad
    if not math.isfinite(F):
        return -1
    e = _dldf(F, y, lossc, ls)
    nu = 0
    for a in range(na):
        if ziA[a] > 0.0 and qA[a] > 0.0:
            s = math.sqrt(qA[a] / n)
            hs = ziA[a] / s
            gW2A[a] = e * gamA[a] * hs
            ggA[a] = e * W2A[a] * hs
            uA[a] = e * W2A[a] * gamA[a] / s
            cA[a] = ziA[a] / qA[a]
            idxU[nu] = a
            nu += 1
        else:
            gW2A[a] = 0.0
            ggA[a] = 0.0
            uA[a] = 0.0
            cA[a] = 0.0
    for l in range(dp):
        xl = x[l]
        mr = MA[l]
        dr = DWA[l]
        for a in range(na):
            dr[a] = uA[a] * (xl - cA[a] * mr[a])
    return nu


@njit(inline="always", **_JIT)
def _sbn_update(na, nu, dp, scale, lr, ix, th, st, g, WA0, DWA, WA):
    """theta <- scale * theta - lr * g: every neuron scaled (q by scale^2, Mw by scale), the
    moved ones' new weights computed packed in WA and scattered into WT (jU <- their neuron
    indices)."""
    idxA, idxU, jU = ix
    WT, W2, gam = th
    q, MT = st
    gW2A, ggA, _, _ = g
    m = W2.shape[0]
    if scale != 1.0:
        s2 = scale * scale
        for j in range(m):
            W2[j] *= scale
            gam[j] *= scale
            q[j] *= s2
        for l in range(dp):
            wr = WT[l]
            mr = MT[l]
            for j in range(m):
                wr[j] *= scale
                mr[j] *= scale
    for a in range(na):
        j = idxA[a]
        W2[j] -= lr * gW2A[a]
        gam[j] -= lr * ggA[a]
    for u in range(nu):
        jU[u] = idxA[idxU[u]]
    if nu == na:
        for l in range(dp):
            w0 = WA0[l]
            dr = DWA[l]
            war = WA[l]
            for a in range(na):
                war[a] = scale * w0[a] - lr * dr[a]
    else:
        for l in range(dp):
            w0 = WA0[l]
            dr = DWA[l]
            war = WA[l]
            for u in range(nu):
                a = idxU[u]
                war[u] = scale * w0[a] - lr * dr[a]
    for l in range(dp):
        wr = WT[l]
        war = WA[l]
        for u in range(nu):
            wr[jU[u]] = war[u]


@njit(inline="always", **_JIT)
def _sbn_scatter(nu, dp, jU, qA, MA, st):
    """The moved neurons' new statistics (packed qA, MA) into q and MT."""
    q, MT = st
    for u in range(nu):
        q[jU[u]] = qA[u]
    for l in range(dp):
        mr = MT[l]
        mar = MA[l]
        for u in range(nu):
            mr[jU[u]] = mar[u]


@njit(inline="always", **_JIT)
def _sbn_project(m, dp, proj, WT, st):
    """Rescale the augmented first layer to norm ``proj`` (q by the factor squared, Mw by
    the factor: relu is homogeneous)."""
    q, MT = st
    ss = 0.0
    for l in range(dp):
        wr = WT[l]
        for j in range(m):
            ss += wr[j] * wr[j]
    tf = proj / math.sqrt(ss)
    for j in range(m):
        q[j] *= tf * tf
    for l in range(dp):
        wr = WT[l]
        mr = MT[l]
        for j in range(m):
            wr[j] *= tf
            mr[j] *= tf


@njit(**_JIT)
def _sbn_sam1(
    WT, W2, gam, Xp, Y, orders, lr, rho, wd, proj, do_sam, lossc, ls, pm, fail
):
    """1-SAM (do_sam) or SGD with batch size 1 on 2-MLP-Sim-BN (augmented WT, see above).

    Per step: z_i = W x'_i (all neurons), pack the active ones (data, q and Mw gathered once),
    pass 1 and the perturbation on the packed block, statistics at the perturbed point, the
    update (scattered back into WT), statistics of the moved neurons (scattered into q, MT).
    fail[0], fail[1] <- epoch, step of a non-finite output; returns the epochs completed.
    """
    dp, m = WT.shape
    n = Xp.shape[0]
    scale = 1.0 - lr * wd
    Xp4, tabs, bufs, vec, ix, st, full = _sbn_workspace(Xp, m, pm)
    dp4 = Xp4.shape[1]
    idxA, idxU, jU = ix
    _, _, zi, dummy = full
    th = (WT, W2, gam)
    P = (vec[0], vec[1], vec[2], vec[3])
    g = (vec[4], vec[5], vec[6], vec[7])
    A = (vec[9], vec[8], vec[10], vec[11])
    _sbn_all_stats(Xp4, WT, st, full)
    for ep in range(orders.shape[0]):
        for t in range(n):
            i = orders[ep, t]
            x = Xp[i]
            y = Y[i]
            _matvec_t(x, WT, zi)
            na = _sbn_active(zi, st[0], m, idxA)
            if na < 0:
                fail[0], fail[1] = ep, t
                return ep
            S = _pstride(na)
            WA0, MA, DWA, WA, WA4, Z4, Tt, Ct = _sbn_views(bufs, pm, dp, dp4, S)
            sx = (pm, Xp4, tabs, Tt, Ct, Z4, dummy)
            _sbn_pack(idxA, na, dp, zi, th, st, P, WA0, MA)
            g2 = _sbn_grad_at_theta(na, n, dp, x, y, lossc, ls, P, MA, g, DWA)
            if g2 < 0.0:
                fail[0], fail[1] = ep, t
                return ep
            nu = na
            if do_sam:
                # pass 2 at theta + rho g/||g|| (only active neurons are perturbed)
                c = rho / math.sqrt(g2) if g2 > 0.0 else 0.0
                _sbn_perturb(na, dp, c, P, g, WA0, DWA, WA, A)
                _sbn_packed_stats(sx, WA4, na, i, A[1], MA, A[0])
                nu = _sbn_grad_perturbed(
                    na, n, dp, x, y, lossc, ls, A, MA, g, DWA, idxU
                )
                if nu < 0:
                    fail[0], fail[1] = ep, t
                    return ep
            else:
                for a in range(na):
                    idxU[a] = a
            _sbn_update(na, nu, dp, scale, lr, ix, th, st, g, WA0, DWA, WA)
            if scale <= 0.0:
                # relu is not homogeneous under a factor <= 0: recompute every neuron
                _sbn_all_stats(Xp4, WT, st, full)
            else:
                _sbn_packed_stats(sx, WA4, nu, -1, A[1], MA, A[0])
                _sbn_scatter(nu, dp, jU, A[1], MA, st)
            if proj > 0.0:
                _sbn_project(m, dp, proj, WT, st)
    return orders.shape[0]
