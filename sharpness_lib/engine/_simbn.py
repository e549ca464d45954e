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


# The phases of one Sim-BN step, inlined into ``_sbn_sam1`` (numba IR inlining: the compiled
# loop is the one a single function would give).  "Packed" arrays hold the active neurons in
# columns 0..na-1 (``idxA`` maps them back to neuron indices).
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
def _sbn_pack(idxA, na, dp, zi, q, W2, gam, WT, MT, ziP, qP, W2P, gamP, WA0, MA):
    """Gather the active neurons' z, q, W2, gamma, weights and Mw into packed arrays."""
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
def _sbn_grad_at_theta(
    na, n, dp, x, y, lossc, ls, ziP, qP, W2P, gamP, MA, gW2A, ggA, uA, cA, DWA
):
    """Pass 1 at theta: the output and the gradient of the active neurons (packed: gW2A, ggA,
    DWA); returns ||g||^2, or -1 if the output is not finite."""
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
def _sbn_grad_perturbed(
    na, n, dp, x, y, lossc, ls, ziA, qA, W2A, gamA, MA, gW2A, ggA, uA, cA, DWA, idxU
):
    """Pass 2 at the perturbed point (statistics qA, MA, ziA already computed there): the
    gradient of the active neurons; those dead at the perturbed point get none.  idxU <- the
    packed indices of the neurons that move; returns their number, or -1 if the output is
    not finite."""
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
def _sbn_update(
    na,
    nu,
    m,
    dp,
    scale,
    lr,
    idxA,
    idxU,
    jU,
    W2,
    gam,
    q,
    WT,
    MT,
    gW2A,
    ggA,
    WA0,
    DWA,
    WA,
):
    """theta <- scale * theta - lr * g: every neuron scaled (q by scale^2, Mw by scale), the
    moved ones' new weights computed packed in WA and scattered into WT (jU <- their neuron
    indices)."""
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
def _sbn_project(m, dp, proj, WT, MT, q):
    """Rescale the augmented first layer to norm ``proj`` (q by the factor squared, Mw by
    the factor: relu is homogeneous)."""
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
    Its length is the set-up of the workspaces (one allocation for the whole call, views
    re-cut every step for the packed row stride) and the sequence of the phases above.
    """
    dp, m = WT.shape
    n = Xp.shape[0]
    E = orders.shape[0]
    scale = 1.0 - lr * wd
    Xp4 = _pad4(Xp)
    dp4 = Xp4.shape[1]
    q = np.empty(m)
    MT = np.empty((dp4, m))
    zi = np.empty(m)
    idxA = np.empty(m, dtype=np.int64)
    idxU = np.empty(m, dtype=np.int64)
    jU = np.empty(m, dtype=np.int64)
    # one buffer for the packed (d', S) blocks and the Z4 workspace (fixed relative layout);
    # S = _pstride(number of packed columns), re-viewed every step
    mS = _pstride(m)
    blk = dp4 * mS + 8
    buf = np.zeros(4 * blk + 4 * mS + 8)
    # +-1 design (``pm``): tables of the sign patterns and the workspaces of _sbn_stats_pm
    tabs = _pm_tables(Xp if pm else np.ones((4, 4)))
    G = dp4 // 4
    RG = (n + 3) // 4
    Tbuf = np.zeros((8 * G + 1) * mS if pm else 1)
    Cbuf = np.zeros(8 * RG * mS if pm else 1)
    vec = np.empty((12, m))
    ziP, qP, W2P, gamP, gW2A, ggA, uA, cA, qA, ziA, W2A, gamA = (
        vec[0],
        vec[1],
        vec[2],
        vec[3],
        vec[4],
        vec[5],
        vec[6],
        vec[7],
        vec[8],
        vec[9],
        vec[10],
        vec[11],
    )
    Zfull = np.empty((4, mS))
    WTs = np.zeros((dp4, mS))  # padded copy of WT for the full statistics
    dummy = np.empty((1, 1))
    WTs[:dp, :m] = WT
    _sbn_stats(Xp4, WTs, m, -1, q, MT, Zfull, zi, dummy, False)
    for ep in range(E):
        for t in range(n):
            i = orders[ep, t]
            x = Xp[i]
            y = Y[i]
            _matvec_t(x, WT, zi)
            na = _sbn_active(zi, q, m, idxA)
            if na < 0:
                fail[0] = ep
                fail[1] = t
                return ep
            S = _pstride(na)
            WA0 = buf[: dp * S].reshape((dp, S))  # packed current weights
            MA = buf[blk : blk + dp4 * S].reshape(
                (dp4, S)
            )  # packed Mw (current, then new)
            DWA = buf[2 * blk : 2 * blk + dp * S].reshape((dp, S))  # packed dl/dw
            WA = buf[3 * blk : 3 * blk + dp * S].reshape(
                (dp, S)
            )  # perturbed, then new weights
            Z4 = buf[4 * blk : 4 * blk + 4 * S].reshape((4, S))
            WA4 = buf[3 * blk : 3 * blk + dp4 * S].reshape(
                (dp4, S)
            )  # WA with zero pad rows
            for l in range(dp, dp4):  # (the view moves with S: clear the pad rows)
                wr = WA4[l]
                for a in range(S):
                    wr[a] = 0.0
            if pm:
                Ttab = Tbuf[: (8 * G + 1) * S].reshape((8 * G + 1, S))
                Ctab = Cbuf[: 8 * RG * S].reshape((8 * RG, S))
            else:
                Ttab = Tbuf[:1].reshape((1, 1))
                Ctab = Cbuf[:1].reshape((1, 1))
            _sbn_pack(idxA, na, dp, zi, q, W2, gam, WT, MT, ziP, qP, W2P, gamP, WA0, MA)
            # ---- pass 1 at theta: output and gradient of the active neurons
            g2 = _sbn_grad_at_theta(
                na,
                n,
                dp,
                x,
                y,
                lossc,
                ls,
                ziP,
                qP,
                W2P,
                gamP,
                MA,
                gW2A,
                ggA,
                uA,
                cA,
                DWA,
            )
            if g2 < 0.0:
                fail[0] = ep
                fail[1] = t
                return ep
            nu = na
            if do_sam:
                # ---- pass 2 at theta + rho g/||g|| (only active neurons are perturbed)
                c = rho / math.sqrt(g2) if g2 > 0.0 else 0.0
                for l in range(dp):
                    w0 = WA0[l]
                    war = WA[l]
                    dr = DWA[l]
                    for a in range(na):
                        war[a] = w0[a] + c * dr[a]
                for a in range(na):
                    W2A[a] = W2P[a] + c * gW2A[a]
                    gamA[a] = gamP[a] + c * ggA[a]
                if pm:
                    _sbn_stats_pm(
                        WA4, na, i, qA, MA, ziA, tabs, Ttab, Ctab, Z4, dummy, False
                    )
                else:
                    _sbn_stats(Xp4, WA4, na, i, qA, MA, Z4, ziA, dummy, False)
                nu = _sbn_grad_perturbed(
                    na,
                    n,
                    dp,
                    x,
                    y,
                    lossc,
                    ls,
                    ziA,
                    qA,
                    W2A,
                    gamA,
                    MA,
                    gW2A,
                    ggA,
                    uA,
                    cA,
                    DWA,
                    idxU,
                )
                if nu < 0:
                    fail[0] = ep
                    fail[1] = t
                    return ep
            else:
                for a in range(na):
                    idxU[a] = a
            # ---- update: theta <- scale * theta - lr * g
            _sbn_update(
                na,
                nu,
                m,
                dp,
                scale,
                lr,
                idxA,
                idxU,
                jU,
                W2,
                gam,
                q,
                WT,
                MT,
                gW2A,
                ggA,
                WA0,
                DWA,
                WA,
            )
            if (
                scale <= 0.0
            ):  # relu is not homogeneous under a negative factor: recompute all
                WTs[:dp, :m] = WT
                _sbn_stats(Xp4, WTs, m, -1, q, MT, Zfull, zi, dummy, False)
            else:
                if pm:
                    _sbn_stats_pm(
                        WA4, nu, -1, qA, MA, ziA, tabs, Ttab, Ctab, Z4, dummy, False
                    )
                else:
                    _sbn_stats(Xp4, WA4, nu, -1, qA, MA, Z4, ziA, dummy, False)
                for u in range(nu):
                    q[jU[u]] = qA[u]
                for l in range(dp):
                    mr = MT[l]
                    mar = MA[l]
                    for u in range(nu):
                        mr[jU[u]] = mar[u]
            if proj > 0.0:
                _sbn_project(m, dp, proj, WT, MT, q)
    return E
