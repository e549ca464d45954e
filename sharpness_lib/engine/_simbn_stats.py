"""The 2-MLP-Sim-BN statistics q_j = sum_k relu(w_j . x'_k)^2 and Mw_j = sum_k relu(.) x'_k:
dense register-blocked loops (``_sbn_stats``) and, for +-1 inputs, tables of sign patterns
(``_sbn_stats_pm``)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._common import _JIT

# Below, every kernel except ``_sam1_fast`` works on the *augmented* first layer: WT (d', m)
# holds W1^T with b1 appended as the last row (d' = d + 1; d' = d for 'nobias') and Xp (n, d')
# holds X with a column of ones appended, so w_j . x'_k = (W1 x_k + b1)_j.  Inner loops run over
# the width (contiguous, vectorised); no BLAS is called, so threads never oversubscribe.
#
# Sim-BN: with h_kj = relu(w_j . x'_k), q_j = sum_k h_kj^2 (s_j = sqrt(q_j / n)) and
# Mw_j = sum_k h_kj x'_k, the per-sample gradient of l(f(x_i), y) w.r.t. w_j is
#
#     u_j (1[h_ij > 0] x'_i - (h_ij / q_j) Mw_j),      u_j = l'(f) W2_j gamma_j / s_j,
#
# so only neurons active on sample i (h_ij > 0) move, and a moved neuron changes all n of its
# pre-activations (any of which may change sign).  The 1-SAM kernel therefore keeps (q, Mw) of
# every neuron, and per step recomputes them *exactly* (no drift) only for the active neurons,
# packed contiguously: once at the perturbed point (which also yields the perturbed gradient)
# and once after the update.  Inactive neurons only see the weight-decay / projection factor
# t > 0, under which relu is homogeneous: q_j <- t^2 q_j, Mw_j <- t Mw_j.  Cost per step
# ~4 n d' m_active multiply-adds instead of the 4 n d' m of two full recomputations; they run
# at ~85% of the FMA peak (``_z4h`` / ``_acc4h``).  Packed blocks use a row stride that is not
# a multiple of 4 KiB (``_pstride``): rows 4 KiB apart map to the same L1 sets and halved the
# throughput of these loops.


@njit(**_JIT)
def _z4h(X4, WA, ma, Z4, qA, fuse):
    """Like ``_z4`` for d' a multiple of 4 (callers pad X with zero columns and W with zero
    rows): the first 4-column block assigns (no zeroing pass) and, if ``fuse``, the last block
    also applies relu (Z4 then holds h = relu(z)) and adds sum_r h_r^2 to qA."""
    dp = X4.shape[1]
    z0, z1, z2, z3 = Z4[0], Z4[1], Z4[2], Z4[3]
    for l in range(0, dp, 4):
        w0, w1, w2, w3 = WA[l], WA[l + 1], WA[l + 2], WA[l + 3]
        x00, x01, x02, x03 = X4[0, l], X4[0, l + 1], X4[0, l + 2], X4[0, l + 3]
        x10, x11, x12, x13 = X4[1, l], X4[1, l + 1], X4[1, l + 2], X4[1, l + 3]
        x20, x21, x22, x23 = X4[2, l], X4[2, l + 1], X4[2, l + 2], X4[2, l + 3]
        x30, x31, x32, x33 = X4[3, l], X4[3, l + 1], X4[3, l + 2], X4[3, l + 3]
        if l == 0:
            for j in range(ma):
                a0 = w0[j]
                a1 = w1[j]
                a2 = w2[j]
                a3 = w3[j]
                z0[j] = x00 * a0 + x01 * a1 + x02 * a2 + x03 * a3
                z1[j] = x10 * a0 + x11 * a1 + x12 * a2 + x13 * a3
                z2[j] = x20 * a0 + x21 * a1 + x22 * a2 + x23 * a3
                z3[j] = x30 * a0 + x31 * a1 + x32 * a2 + x33 * a3
        elif fuse and l + 4 == dp:
            for j in range(ma):
                a0 = w0[j]
                a1 = w1[j]
                a2 = w2[j]
                a3 = w3[j]
                h0 = max(z0[j] + (x00 * a0 + x01 * a1 + x02 * a2 + x03 * a3), 0.0)
                h1 = max(z1[j] + (x10 * a0 + x11 * a1 + x12 * a2 + x13 * a3), 0.0)
                h2 = max(z2[j] + (x20 * a0 + x21 * a1 + x22 * a2 + x23 * a3), 0.0)
                h3 = max(z3[j] + (x30 * a0 + x31 * a1 + x32 * a2 + x33 * a3), 0.0)
                z0[j] = h0
                z1[j] = h1
                z2[j] = h2
                z3[j] = h3
                qA[j] += h0 * h0 + h1 * h1 + h2 * h2 + h3 * h3
            return
        else:
            for j in range(ma):
                a0 = w0[j]
                a1 = w1[j]
                a2 = w2[j]
                a3 = w3[j]
                z0[j] += x00 * a0 + x01 * a1 + x02 * a2 + x03 * a3
                z1[j] += x10 * a0 + x11 * a1 + x12 * a2 + x13 * a3
                z2[j] += x20 * a0 + x21 * a1 + x22 * a2 + x23 * a3
                z3[j] += x30 * a0 + x31 * a1 + x32 * a2 + x33 * a3
    if fuse:  # (d' == 4)
        for j in range(ma):
            h0 = max(z0[j], 0.0)
            h1 = max(z1[j], 0.0)
            h2 = max(z2[j], 0.0)
            h3 = max(z3[j], 0.0)
            z0[j] = h0
            z1[j] = h1
            z2[j] = h2
            z3[j] = h3
            qA[j] += h0 * h0 + h1 * h1 + h2 * h2 + h3 * h3


@njit(**_JIT)
def _acc4h(X4, H4, ma, MA, first):
    """MA[l, :ma] (+)= sum_r X4[r, l] H4[r, :ma] (4 rows, 4x4 register-blocked, d' a multiple
    of 4; assigns if ``first``, so MA needs no zeroing pass)."""
    dp = X4.shape[1]
    h0, h1, h2, h3 = H4[0], H4[1], H4[2], H4[3]
    for l in range(0, dp, 4):
        m0, m1, m2, m3 = MA[l], MA[l + 1], MA[l + 2], MA[l + 3]
        x00, x01, x02, x03 = X4[0, l], X4[0, l + 1], X4[0, l + 2], X4[0, l + 3]
        x10, x11, x12, x13 = X4[1, l], X4[1, l + 1], X4[1, l + 2], X4[1, l + 3]
        x20, x21, x22, x23 = X4[2, l], X4[2, l + 1], X4[2, l + 2], X4[2, l + 3]
        x30, x31, x32, x33 = X4[3, l], X4[3, l + 1], X4[3, l + 2], X4[3, l + 3]
        if first:
            for j in range(ma):
                b0 = h0[j]
                b1 = h1[j]
                b2 = h2[j]
                b3 = h3[j]
                m0[j] = x00 * b0 + x10 * b1 + x20 * b2 + x30 * b3
                m1[j] = x01 * b0 + x11 * b1 + x21 * b2 + x31 * b3
                m2[j] = x02 * b0 + x12 * b1 + x22 * b2 + x32 * b3
                m3[j] = x03 * b0 + x13 * b1 + x23 * b2 + x33 * b3
        else:
            for j in range(ma):
                b0 = h0[j]
                b1 = h1[j]
                b2 = h2[j]
                b3 = h3[j]
                m0[j] += x00 * b0 + x10 * b1 + x20 * b2 + x30 * b3
                m1[j] += x01 * b0 + x11 * b1 + x21 * b2 + x31 * b3
                m2[j] += x02 * b0 + x12 * b1 + x22 * b2 + x32 * b3
                m3[j] += x03 * b0 + x13 * b1 + x23 * b2 + x33 * b3


@njit(**_JIT)
def _pad4(Xp):
    """Xp with zero rows and columns appended up to multiples of 4 (zeros add nothing; the
    weight blocks paired with it have as many rows, the pad rows zero)."""
    n, dp = Xp.shape
    Xp4 = np.zeros(((n + 3) // 4 * 4, (dp + 3) // 4 * 4))
    Xp4[:n, :dp] = Xp
    return Xp4


@njit(**_JIT)
def _sbn_stats(Xp4, WA, ma, irow, qA, MA, Z4, zi, Hall, store_all):
    """For the first ``ma`` columns w of WA (d'4, >= ma; zero rows from d' on): qA =
    sum_k relu(x'_k.w)^2 and MA[:, a] = sum_k relu(x'_k.w) x'_k (MA: d'4 rows) over the rows
    of Xp4 (``_pad4``: zero pad rows and columns).
    zi <- pre-activations of row ``irow`` (if irow >= 0); Hall[k] <- relu(pre-activations) of
    row k < len(Hall) if ``store_all``.  Z4 is a (4, >= ma) workspace; rows are processed 4 at
    a time (``_z4h`` with relu and q fused, then ``_acc4h``)."""
    n4 = Xp4.shape[0]
    for j in range(ma):
        qA[j] = 0.0
    for k0 in range(0, n4, 4):
        X4 = Xp4[k0 : k0 + 4]
        if k0 <= irow < k0 + 4:
            _z4h(X4, WA, ma, Z4, qA, False)
            zr = Z4[irow - k0]
            for j in range(ma):
                zi[j] = zr[j]
            for r in range(4):
                zr = Z4[r]
                for j in range(ma):
                    h = max(zr[j], 0.0)
                    zr[j] = h
                    qA[j] += h * h
        else:
            _z4h(X4, WA, ma, Z4, qA, True)
        if store_all:
            for r in range(min(4, Hall.shape[0] - k0)):
                hk = Hall[k0 + r]
                zr = Z4[r]
                for j in range(ma):
                    hk[j] = zr[j]
        _acc4h(X4, Z4, ma, MA, k0 == 0)


# +-1 designs (the paper's P_xor inputs): with every entry of Xp in {-1, +1} the products
# x_kl w_l are exact sign flips, so sums over 4 columns (or 4 rows) take one of 16 values, 8
# up to sign, that can be tabulated once per pass ("four Russians"):
#   T_g[p] = w_4g + s1 w_4g+1 + s2 w_4g+2 + s3 w_4g+3  (8 sign patterns p), then
#   z_k = sum_g x_k,4g T_g[p(k, g)]   -- 8 terms per row instead of 31 multiply-adds;
#   C_rg[p] = h_4rg + s1 h_4rg+1 + ...,  Mw_l = sum_rg x_4rg,l C_rg[p(rg, l)]  -- 25 instead of 100.
# The patterns depend only on Xp (``_pm_tables``, once per call).  Same sums in another order:
# results agree with ``_sbn_stats`` to rounding.  3-4x fewer multiply-adds, but one load per
# multiply-add (the tables live in L2): the 1-SAM step at d = 30, n = 100, width 512 runs ~1.5x
# faster than with the dense loops (8,300 vs 5,500 steps/s on a 2-core AMD EPYC).
@njit(**_JIT)
def _pm_tables(Xp):
    """(zidx, zsig, aidx, asig) for ``_sbn_stats_pm``: row k, column group g -> table row
    8g + p and sign x_k,4g; column l, row group rg -> table row 8rg + p and sign x_4rg,l
    (bit t-1 of p: entry t of the group differs from entry 0; pads point at a zero row)."""
    n, dp = Xp.shape
    G = (dp + 3) // 4
    GZ = (G + 7) // 8 * 8
    RG = (n + 3) // 4
    zidx = np.full((n, GZ), 8 * G, dtype=np.int64)
    zsig = np.zeros((n, GZ))
    for k in range(n):
        for g in range(G):
            s0 = Xp[k, 4 * g]
            p = 0
            for t in range(1, 4):
                l = 4 * g + t
                if l < dp and Xp[k, l] != s0:
                    p |= 1 << (t - 1)
            zidx[k, g] = 8 * g + p
            zsig[k, g] = s0
    aidx = np.empty((dp, RG), dtype=np.int64)
    asig = np.empty((dp, RG))
    for l in range(dp):
        for g in range(RG):
            s0 = Xp[4 * g, l]
            p = 0
            for t in range(1, 4):
                k = 4 * g + t
                if k < n and Xp[k, l] != s0:
                    p |= 1 << (t - 1)
            aidx[l, g] = 8 * g + p
            asig[l, g] = s0
    return zidx, zsig, aidx, asig


@njit(**_JIT)
def _combos(w0, w1, w2, w3, ma, T, base):
    """T[base + p, :ma] = w0 + s1 w1 + s2 w2 + s3 w3, s_t = -1 iff bit t-1 of p."""
    t0, t1, t2, t3 = T[base], T[base + 1], T[base + 2], T[base + 3]
    t4, t5, t6, t7 = T[base + 4], T[base + 5], T[base + 6], T[base + 7]
    for j in range(ma):
        a = w0[j]
        b = w1[j]
        c = w2[j]
        d = w3[j]
        ap = a + b
        am = a - b
        cp = c + d
        cm = c - d
        t0[j] = ap + cp
        t1[j] = am + cp
        t2[j] = ap - cm
        t3[j] = am - cm
        t4[j] = ap + cm
        t5[j] = am + cm
        t6[j] = ap - cp
        t7[j] = am - cp


@njit(inline="always", **_JIT)
def _pm_colsums(aidx, asig, C, ma, MA):
    """The column pass of ``_sbn_stats_pm``: Mw_l = sum_rg x_4rg,l C_rg[p(rg, l)] for every
    column l, from the row-group tables C (8 table rows per pass over MA[l])."""
    dp = aidx.shape[0]
    RG = aidx.shape[1]
    for l in range(dp):
        al = aidx[l]
        sl = asig[l]
        mr = MA[l]
        for j in range(ma):
            mr[j] = 0.0
        c = 0
        while c + 8 <= RG:
            u0, u1, u2, u3 = C[al[c]], C[al[c + 1]], C[al[c + 2]], C[al[c + 3]]
            u4, u5, u6, u7 = C[al[c + 4]], C[al[c + 5]], C[al[c + 6]], C[al[c + 7]]
            s0, s1, s2, s3 = sl[c], sl[c + 1], sl[c + 2], sl[c + 3]
            s4, s5, s6, s7 = sl[c + 4], sl[c + 5], sl[c + 6], sl[c + 7]
            for j in range(ma):
                mr[j] += ((s0 * u0[j] + s1 * u1[j]) + (s2 * u2[j] + s3 * u3[j])) + (
                    (s4 * u4[j] + s5 * u5[j]) + (s6 * u6[j] + s7 * u7[j])
                )
            c += 8
        while c < RG:
            u0 = C[al[c]]
            s0 = sl[c]
            for j in range(ma):
                mr[j] += s0 * u0[j]
            c += 1


@njit(**_JIT)
def _sbn_stats_pm(WA4, ma, irow, qA, MA, zi, tabs, T, C, H4, Hall, store_all):
    """``_sbn_stats`` for a +-1 design (tables ``tabs`` of ``_pm_tables``).  WA4 (4G, >= ma)
    with zero rows from d' on; workspaces T (8G + 1, >= ma), C (8 RG, >= ma), H4 (4, >= ma).
    Hall[k] <- relu(pre-activations) of row k if ``store_all``.  The row pass (z, relu, q)
    feeds the row-group tables C as it goes (4 rows at a time); ``_pm_colsums`` then forms
    Mw from C."""
    zidx, zsig, aidx, asig = tabs
    n = zidx.shape[0]
    GZ = zidx.shape[1]
    RG = aidx.shape[1]
    G = WA4.shape[0] // 4
    for g in range(G):
        _combos(
            WA4[4 * g], WA4[4 * g + 1], WA4[4 * g + 2], WA4[4 * g + 3], ma, T, 8 * g
        )
    tz = T[8 * G]
    for j in range(ma):
        tz[j] = 0.0
        qA[j] = 0.0
    for rg in range(RG):
        for r in range(4):
            k = 4 * rg + r
            hr = H4[r]
            if k >= n:
                for j in range(ma):
                    hr[j] = 0.0
                continue
            zk = zidx[k]
            sk = zsig[k]
            fused = GZ == 8 and k != irow  # the usual case (d' <= 32): relu and q fused
            if not fused:
                for j in range(ma):
                    hr[j] = 0.0
            for cz in range(0, GZ, 8):
                t0, t1, t2, t3 = T[zk[cz]], T[zk[cz + 1]], T[zk[cz + 2]], T[zk[cz + 3]]
                t4, t5, t6, t7 = (
                    T[zk[cz + 4]],
                    T[zk[cz + 5]],
                    T[zk[cz + 6]],
                    T[zk[cz + 7]],
                )
                s0, s1, s2, s3 = sk[cz], sk[cz + 1], sk[cz + 2], sk[cz + 3]
                s4, s5, s6, s7 = sk[cz + 4], sk[cz + 5], sk[cz + 6], sk[cz + 7]
                if fused:
                    for j in range(ma):
                        v = ((s0 * t0[j] + s1 * t1[j]) + (s2 * t2[j] + s3 * t3[j])) + (
                            (s4 * t4[j] + s5 * t5[j]) + (s6 * t6[j] + s7 * t7[j])
                        )
                        h = max(v, 0.0)
                        hr[j] = h
                        qA[j] += h * h
                else:
                    for j in range(ma):
                        hr[j] += (
                            (s0 * t0[j] + s1 * t1[j]) + (s2 * t2[j] + s3 * t3[j])
                        ) + ((s4 * t4[j] + s5 * t5[j]) + (s6 * t6[j] + s7 * t7[j]))
            if not fused:
                if k == irow:
                    for j in range(ma):
                        zi[j] = hr[j]
                for j in range(ma):
                    h = max(hr[j], 0.0)
                    hr[j] = h
                    qA[j] += h * h
            if store_all:
                hk = Hall[k]
                for j in range(ma):
                    hk[j] = hr[j]
        _combos(H4[0], H4[1], H4[2], H4[3], ma, C, 8 * rg)
    _pm_colsums(aidx, asig, C, ma, MA)


@njit(**_JIT)
def _pstride(k):
    """Row stride for k packed columns: k rounded up to 8, avoiding multiples of 512 doubles
    (4 KiB).  Rows exactly 4 KiB apart (e.g. a (d', 512) array) map to the same L1 sets and
    halve the throughput of ``_z4h`` / ``_acc4h``."""
    S = (k + 7) // 8 * 8
    if S % 512 == 0:
        S += 8
    return max(S, 8)
