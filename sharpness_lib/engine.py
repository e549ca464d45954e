"""Compiled (numba) training engine for the paper's two-layer nets.

The paper's 1-SAM runs (Wen, Li, Ma 2023, Figures 1-6) take 1e5-6e5 epochs with batch size 1
on n = 100 points of P_xor (d = 30) and width ~500.  A PyTorch loop (nn.Module, two
forward/backward passes per sample) spends almost all of its time in interpreter and dispatch
overhead; this module runs the same arithmetic in numba kernels.

Why it is fast
--------------
For one sample the weight gradient of a 2-layer net is rank one: grad_W1 = dz x^T and
grad_b1 = dz.  So 1-SAM's perturbed first-layer pre-activation needs no matvec:

    z_pert = (W1 + c dz x^T) x + (b1 + c dz) = z + c * dz * (||x||^2 + 1)        (O(m))

and the only O(m d) work per step is the in-place update of W1, fused with the matvec that
gives z for the next sample (one pass over W1, kept transposed (d, m) inside a call so the
inner loop runs over the width and vectorises without reassociation).  For 2-MLP-Sim-BN the
statistic s_j couples all n points: a step moves only the neurons active on its sample, and
their statistics (q_j, Mw_j) are recomputed exactly, packed, in register-blocked loops (see the
comment above ``_sbn_stats``).  Mini-batch / full-batch gradients are accumulated sample by
sample (4 samples at a time) with no (B, m) temporaries.  No kernel calls BLAS, so concurrent
runs (``run_many``) do not oversubscribe the cores.

API (what ``sharpness_lib.training`` calls)
-------------------------------------------
``supports(arch, algo, loss="mse", optimizer="sgd") -> bool``

``run_epochs(params, X, Y, orders, *, arch, algo, lr, rho=0.0, wd=0.0, batch_size=1,
eps=1e-6, project_norm=None, epochs=None) -> EngineStatus``

* ``params``: dict of C-contiguous float64 arrays, updated IN PLACE (may be views of torch
  parameters, ``p.detach().numpy()``): 'W1' (m, d); 'b1' (m,) except for arch 'nobias';
  'W2' (m,); 'gamma' (m,) for 'sbn' only.
* archs: 'nobias' (2-MLP-No-Bias), 'bias' (2-MLP-Bias), 'softplus' (softplus 2-MLP-Bias,
  torch semantics beta=1, threshold=20), 'sln' (2-MLP-Sim-LN, f = W2.h / max(||h||, eps)),
  'sbn' (2-MLP-Sim-BN, s_j = sqrt(mean_k h(X_k)_j^2) over the n training inputs under the
  current parameters; a neuron with s_j == 0 contributes 0 and gets no gradient).
* algos: 'sam1' (1-SAM), 'msam' (m-SAM, chunks of ``batch_size`` of the epoch order), 'sgd'
  (chunks of ``batch_size``), 'gd' (one full-batch step per epoch).  Loss: per-sample
  (f - y)^2, averaged over the chunk.  Update: theta <- theta - lr * (grad + wd * theta) on
  all parameters; SAM's perturbation rho * g / ||g|| uses the global 2-norm over all
  parameters (no perturbation when ||g|| == 0).
* ``orders``: int64 (epochs, n), the visiting order of every epoch (the engine draws no random
  numbers).  Number of epochs = ``len(orders)``.  For 'gd' ``orders`` may be None; then pass
  ``epochs=`` (if both are given, ``epochs`` wins and the content of ``orders`` is ignored).
* ``project_norm``: if not None, after every update W1 and b1 are rescaled jointly so that
  sqrt(||W1||_F^2 + ||b1||^2) == project_norm (Figure 6b).
* Divergence: the loss of every step (both SAM passes) is checked; if it is non-finite the
  step is NOT applied, the call stops and returns ``finite=False`` with ``fail_epoch`` /
  ``fail_step`` (indices inside this call) and ``start_params``, a copy of the parameters at the
  start of the call (the in-place parameters are then those before the failing step; they may
  already be huge).  After a call that finishes, all parameters are checked once more.

``run_many(jobs, n_threads=None) -> list[EngineStatus]`` runs independent ``run_epochs``
jobs (dicts of its arguments) on a thread pool; kernels release the GIL.

``warmup()`` compiles (or loads from numba's on-disk cache) every kernel on tiny inputs and
returns the seconds it took.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numba
import numpy as np
from numba import njit

__all__ = ["ARCHS", "ALGOS", "EngineStatus", "supports", "run_epochs", "run_many", "warmup"]

ARCHS = ("nobias", "bias", "softplus", "sln", "sbn")
ALGOS = ("sam1", "msam", "sgd", "gd")

# activation codes shared by the kernels
_RELU, _SOFTPLUS, _SLN, _SBN = 0, 1, 2, 3
_ARCH_CODE = {"nobias": _RELU, "bias": _RELU, "softplus": _SOFTPLUS, "sln": _SLN, "sbn": _SBN}

# Reassociation lets LLVM vectorise the O(m) reductions; no 'nnan'/'ninf' because the kernels
# must see non-finite losses to report divergence.
_FM = {"reassoc", "contract", "nsz"}
_JIT = dict(cache=True, nogil=True, fastmath=_FM, error_model="numpy")


@dataclass
class EngineStatus:
    """Outcome of one ``run_epochs`` call."""

    finite: bool
    epochs_done: int
    message: str = ""
    fail_epoch: int | None = None  # epoch index inside the call where divergence was seen
    fail_step: int | None = None  # step index inside that epoch (sample or chunk index)
    start_params: dict | None = field(default=None, repr=False)  # copy at call start, on failure
    seconds: float = 0.0


def supports(arch: str, algo: str, loss: str = "mse", optimizer: str = "sgd") -> bool:
    """True if the engine implements this combination (squared loss, plain SGD updates)."""
    return arch in ARCHS and algo in ALGOS and loss == "mse" and optimizer == "sgd"


# ----------------------------------------------------------------------------------------
# Activations (torch semantics: relu'(0) = 0; softplus beta=1 threshold=20)
# ----------------------------------------------------------------------------------------
_LOG2E = 1.4426950408889634
_LN2HI = 0.693147180369123816490  # Cody-Waite split of ln 2 (hi part has 32 trailing zeros)
_LN2LO = 1.90821492927058770002e-10
_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(14))
_INV_ODD = tuple(1.0 / (2 * i + 1) for i in range(18))


@njit(**_JIT)
def _softplus(z, out_a, out_da, bits):
    """softplus and its derivative (torch: beta=1, threshold=20) without libm calls.

    libm exp/log1p do not vectorise in numba and dominated the softplus 1-SAM step; here
    t = exp(-|z|) uses Cody-Waite reduction + a degree-13 Taylor polynomial (error < 1e-17 on
    |r| <= ln2/2) and log1p(t) = 2 atanh(t / (2 + t)) an 18-term odd series (t in [0, 1]), so
    both loops are straight-line arithmetic that LLVM vectorises.  Accuracy ~1 ulp.
    """
    m = z.shape[0]
    for j in range(m):
        x = max(-abs(z[j]), -700.0)  # exp(-700) ~ 1e-304 is still a normal double
        k = math.floor(x * _LOG2E + 0.5)
        r = (x - k * _LN2HI) - k * _LN2LO
        p = _INV_FACT[13]
        for q in range(12, -1, -1):
            p = p * r + _INV_FACT[q]
        out_a[j] = p
        bits[j] = (np.int64(k) + 1023) << 52  # 2**k as IEEE bits
    two_k = bits.view(np.float64)
    for j in range(m):
        zj = z[j]
        t = out_a[j] * two_k[j]
        s = t / (2.0 + t)
        s2 = s * s
        q = _INV_ODD[17]
        for i in range(16, -1, -1):
            q = q * s2 + _INV_ODD[i]
        num = 1.0 if zj >= 0.0 else t
        if zj > 20.0:
            out_a[j] = zj
            out_da[j] = 1.0
        else:
            out_a[j] = max(zj, 0.0) + 2.0 * s * q
            out_da[j] = num / (1.0 + t)


@njit(**_JIT)
def _act(z, out_a, out_da, act, bits):
    """out_a = sigma(z), out_da = sigma'(z) elementwise (relu for RELU/SLN/SBN)."""
    m = z.shape[0]
    if act == _SOFTPLUS:
        _softplus(z, out_a, out_da, bits)
    else:
        for j in range(m):
            zj = z[j]
            if zj > 0.0:
                out_a[j] = zj
                out_da[j] = 1.0
            else:
                out_a[j] = 0.0
                out_da[j] = 0.0


@njit(**_JIT)
def _head(a, da, W2, y, act, eps, out_gW2, out_dz):
    """Output, residual and per-sample gradients given activations.

    Returns (r, gnorm2_without_W1_factor) where r = f - y; fills out_gW2 = dl/dW2 and
    out_dz = dl/dz (pre-activation), for l = (f - y)^2.
    """
    m = a.shape[0]
    F = 0.0
    for j in range(m):
        F += W2[j] * a[j]
    if act == _SLN:
        N2 = 0.0
        for j in range(m):
            N2 += a[j] * a[j]
        N = math.sqrt(N2)
        q = N if N > eps else eps
        f = F / q
        r = f - y
        e2 = 2.0 * r
        # d f / d h_j = (W2_j - f h_j / N) / N  when N > eps, W2_j / eps otherwise
        coef = f / N if N > eps else 0.0
        eq = e2 / q
        for j in range(m):
            out_gW2[j] = eq * a[j]
            out_dz[j] = eq * (W2[j] - coef * a[j]) * da[j]
    else:
        r = F - y
        e2 = 2.0 * r
        for j in range(m):
            out_gW2[j] = e2 * a[j]
            out_dz[j] = e2 * W2[j] * da[j]
    return r


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


@njit(**_JIT)
def _sam1_fast(W1T, b1, W2, X, Y, orders, act, has_bias, lr, rho, wd, eps, proj, do_sam,
               fail):
    """1-SAM (do_sam) or SGD with batch size 1 over ``orders`` (epochs, n).

    fail[0], fail[1] <- epoch, step of a non-finite loss (then returns early); returns the
    number of completed epochs.
    """
    d, m = W1T.shape
    n = X.shape[0]
    E = orders.shape[0]
    hb = 1.0 if has_bias else 0.0
    scale = 1.0 - lr * wd
    z = np.empty(m)
    zp = np.empty(m)
    a = np.empty(m)
    da = np.empty(m)
    gW2 = np.empty(m)
    dz = np.empty(m)
    W2p = np.empty(m)
    bits = np.empty(m, dtype=np.int64)
    sqn = np.empty(n)
    for i in range(n):
        s = hb
        for k in range(d):
            s += X[i, k] * X[i, k]
        sqn[i] = s
    if E == 0:
        return 0
    # z for the very first sample
    i0 = orders[0, 0]
    for j in range(m):
        z[j] = b1[j] if has_bias else 0.0
    for k in range(d):
        xk = X[i0, k]
        row = W1T[k]
        for j in range(m):
            z[j] += row[j] * xk
    for ep in range(E):
        for t in range(n):
            i = orders[ep, t]
            y = Y[i]
            _act(z, a, da, act, bits)
            r = _head(a, da, W2, y, act, eps, gW2, dz)
            if not math.isfinite(r):
                fail[0] = ep
                fail[1] = t
                return ep
            if do_sam:
                g2 = 0.0
                for j in range(m):
                    g2 += gW2[j] * gW2[j] + sqn[i] * dz[j] * dz[j]
                c = rho / math.sqrt(g2) if g2 > 0.0 else 0.0
                cx = c * sqn[i]
                for j in range(m):
                    W2p[j] = W2[j] + c * gW2[j]
                    zp[j] = z[j] + cx * dz[j]
                _act(zp, a, da, act, bits)
                rp = _head(a, da, W2p, y, act, eps, gW2, dz)
                if not math.isfinite(rp):
                    fail[0] = ep
                    fail[1] = t
                    return ep
            # update W2, b1 and (fused) W1 + next pre-activation
            for j in range(m):
                W2[j] = scale * W2[j] - lr * gW2[j]
            has_next = (t + 1 < n) or (ep + 1 < E)
            if has_next:
                inext = orders[ep, t + 1] if t + 1 < n else orders[ep + 1, 0]
            else:
                inext = i
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
            ss = _w1_pass(W1T, X[i], X[inext], scale, lr, dz, z, has_next)
            if proj > 0.0:
                tfac = proj / math.sqrt(ss + bs)
                for k in range(d):
                    row = W1T[k]
                    for j in range(m):
                        row[j] *= tfac
                if has_bias:
                    for j in range(m):
                        b1[j] *= tfac
                for j in range(m):
                    z[j] *= tfac
    return E


# ----------------------------------------------------------------------------------------
# 2-MLP-Sim-BN: the normalisation statistics
# ----------------------------------------------------------------------------------------
# Below, every kernel except ``_sam1_fast`` works on the *augmented* first layer: WT (d', m)
# holds W1^T with b1 appended as the last row (d' = d + 1; d' = d for 'nobias') and Xp (n, d')
# holds X with a column of ones appended, so w_j . x'_k = (W1 x_k + b1)_j.  Inner loops run over
# the width (contiguous, vectorised); no BLAS is called, so threads never oversubscribe.
#
# Sim-BN: with h_kj = relu(w_j . x'_k), q_j = sum_k h_kj^2 (s_j = sqrt(q_j / n)) and
# Mw_j = sum_k h_kj x'_k, the per-sample gradient of l = (f(x_i) - y)^2 w.r.t. w_j is
#
#     u_j (1[h_ij > 0] x'_i - (h_ij / q_j) Mw_j),      u_j = 2 r W2_j gamma_j / s_j,
#
# so only neurons active on sample i (h_ij > 0) move, and a moved neuron changes all n of its
# pre-activations (any of which may change sign).  The 1-SAM kernel therefore keeps (q, Mw) of
# every neuron, and per step recomputes them *exactly* (no drift) only for the active neurons,
# packed contiguously: once at the perturbed point (which also yields the perturbed gradient)
# and once after the update.  Inactive neurons only see the weight-decay / projection factor
# t > 0, under which relu is homogeneous: q_j <- t^2 q_j, Mw_j <- t Mw_j.  Cost per step
# ~4 n d' m_active multiply-adds instead of the 4 n d' m of two full recomputations.
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


@njit(**_JIT)
def _sbn_stats(Xp, WA, ma, irow, qA, MA, Z4, zi, Zall, store_all):
    """For the first ``ma`` columns w of WA (d', >= ma): qA = sum_k relu(x'_k.w)^2 and
    MA[:, a] = sum_k relu(x'_k.w) x'_k over all rows of Xp.  zi <- pre-activations of row
    ``irow`` (if irow >= 0); Zall[k] <- pre-activations of row k if ``store_all``.
    Z4 is a (4, >= ma) workspace; rows are processed 4 at a time (see ``_z4``)."""
    n, dp = Xp.shape
    X4 = np.empty((4, dp))
    rows = np.arange(n)
    for j in range(ma):
        qA[j] = 0.0
    for l in range(dp):
        mr = MA[l]
        for j in range(ma):
            mr[j] = 0.0
    for k0 in range(0, n, 4):
        cnt = min(4, n - k0)
        _gather4(Xp, rows, k0, cnt, X4)
        _z4(X4, WA, ma, Z4)
        for r in range(cnt):
            k = k0 + r
            zr = Z4[r]
            if k == irow:
                for j in range(ma):
                    zi[j] = zr[j]
            if store_all:
                zk = Zall[k]
                for j in range(ma):
                    zk[j] = zr[j]
            for j in range(ma):
                h = zr[j] if zr[j] > 0.0 else 0.0
                zr[j] = h
                qA[j] += h * h
        _acc4(X4, Z4, ma, MA)


@njit(**_JIT)
def _sbn_sam1(WT, W2, gam, Xp, Y, orders, lr, rho, wd, proj, do_sam, fail):
    """1-SAM (do_sam) or SGD with batch size 1 on 2-MLP-Sim-BN (augmented WT, see above)."""
    dp, m = WT.shape
    n = Xp.shape[0]
    E = orders.shape[0]
    scale = 1.0 - lr * wd
    q = np.empty(m)
    MT = np.empty((dp, m))
    zrow = np.empty((4, m))
    zi = np.empty(m)
    dummy = np.empty((1, 1))
    idxA = np.empty(m, dtype=np.int64)
    idxU = np.empty(m, dtype=np.int64)
    WA = np.empty((dp, m))
    MA = np.empty((dp, m))
    DWA = np.empty((dp, m))
    qA = np.empty(m)
    ziA = np.empty(m)
    W2A = np.empty(m)
    gamA = np.empty(m)
    gW2A = np.empty(m)
    ggA = np.empty(m)
    uA = np.empty(m)
    cA = np.empty(m)
    _sbn_stats(Xp, WT, m, -1, q, MT, zrow, zi, dummy, False)
    for ep in range(E):
        for t in range(n):
            i = orders[ep, t]
            x = Xp[i]
            y = Y[i]
            for j in range(m):
                zi[j] = 0.0
            for l in range(dp):
                xl = x[l]
                w = WT[l]
                for j in range(m):
                    zi[j] += xl * w[j]
            na = 0
            qbad = False
            for j in range(m):
                if zi[j] > 0.0 and q[j] > 0.0:
                    idxA[na] = j
                    na += 1
                qbad |= not math.isfinite(q[j])
            if qbad:  # the statistic overflowed: the output is no longer a finite number
                fail[0] = ep
                fail[1] = t
                return ep
            # ---- pass 1 at theta: output and gradient of the active neurons (packed)
            F = 0.0
            for a in range(na):
                j = idxA[a]
                s = math.sqrt(q[j] / n)
                F += W2[j] * gam[j] * zi[j] / s
            r = F - y
            if not math.isfinite(r):
                fail[0] = ep
                fail[1] = t
                return ep
            e = 2.0 * r
            g2 = 0.0
            for a in range(na):
                j = idxA[a]
                s = math.sqrt(q[j] / n)
                hs = zi[j] / s
                gw = e * gam[j] * hs
                gg = e * W2[j] * hs
                gW2A[a] = gw
                ggA[a] = gg
                uA[a] = e * W2[j] * gam[j] / s
                cA[a] = zi[j] / q[j]
                g2 += gw * gw + gg * gg
            for l in range(dp):
                xl = x[l]
                mr = MT[l]
                dr = DWA[l]
                for a in range(na):
                    v = uA[a] * (xl - cA[a] * mr[idxA[a]])
                    dr[a] = v
                    g2 += v * v
            nu = na
            if do_sam:
                # ---- pass 2 at theta + rho g/||g|| (only active neurons are perturbed)
                c = rho / math.sqrt(g2) if g2 > 0.0 else 0.0
                for l in range(dp):
                    wr = WT[l]
                    war = WA[l]
                    dr = DWA[l]
                    for a in range(na):
                        war[a] = wr[idxA[a]] + c * dr[a]
                for a in range(na):
                    j = idxA[a]
                    W2A[a] = W2[j] + c * gW2A[a]
                    gamA[a] = gam[j] + c * ggA[a]
                _sbn_stats(Xp, WA, na, i, qA, MA, zrow, ziA, dummy, False)
                F = 0.0
                for a in range(na):
                    if ziA[a] > 0.0 and qA[a] > 0.0:
                        F += W2A[a] * gamA[a] * ziA[a] / math.sqrt(qA[a] / n)
                    if not math.isfinite(qA[a]):  # a perturbed statistic overflowed
                        F = math.nan
                rp = F - y
                if not math.isfinite(rp):
                    fail[0] = ep
                    fail[1] = t
                    return ep
                e = 2.0 * rp
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
            else:
                for a in range(na):
                    idxU[a] = a
            # ---- update: theta <- scale * theta - lr * g
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
            for l in range(dp):
                wr = WT[l]
                dr = DWA[l]
                war = WA[l]
                for u in range(nu):
                    a = idxU[u]
                    j = idxA[a]
                    v = wr[j] - lr * dr[a]
                    wr[j] = v
                    war[u] = v
            if scale <= 0.0:  # relu is not homogeneous under a negative factor: recompute all
                _sbn_stats(Xp, WT, m, -1, q, MT, zrow, zi, dummy, False)
            else:
                _sbn_stats(Xp, WA, nu, -1, qA, MA, zrow, ziA, dummy, False)
                for u in range(nu):
                    q[idxA[idxU[u]]] = qA[u]
                for l in range(dp):
                    mr = MT[l]
                    mar = MA[l]
                    for u in range(nu):
                        mr[idxA[idxU[u]]] = mar[u]
            if proj > 0.0:
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
    return E


# ----------------------------------------------------------------------------------------
# Generic mini-batch path (GD, SGD, m-SAM; every arch incl. Sim-BN), sample by sample
# ----------------------------------------------------------------------------------------
@njit(**_JIT)
def _batch_grad(WT, W2, gam, Xp, Y, idx, act, eps, gWT, gW2, ggam, ws):
    """Mean over idx of (f(x_i) - y_i)^2 and its gradient (written into gWT, gW2, ggam).

    The gradient is accumulated one sample at a time (z_i = W x'_i, gWT += x'_i dz_i^T), so the
    only temporaries are O(m) (Sim-BN: plus the (n, m) pre-activations).  For Sim-BN the
    statistic runs over all rows of Xp and the gradient flows through it:
    gw_j = sum_b u_bj 1_bj x'_b - (sum_b u_bj h_bj / q_j) Mw_j.  ``ws`` is a workspace tuple.
    """
    q, MT, Zall, zrow, zi, a, da, g2, dz, kappa, bits = ws
    dp, m = WT.shape
    B = idx.shape[0]
    n = Xp.shape[0]
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
        _sbn_stats(Xp, WT, m, -1, q, MT, zrow, zi, Zall, True)
        for j in range(m):
            kappa[j] = 0.0
            if not math.isfinite(q[j]):
                return math.nan  # the statistic overflowed
        for b in range(B):
            i = idx[b]
            z = Zall[i]
            F = 0.0
            for j in range(m):
                if z[j] > 0.0 and q[j] > 0.0:
                    F += W2[j] * gam[j] * z[j] / math.sqrt(q[j] / n)
            r = F - Y[i]
            loss += r * r
            e = 2.0 * r * invB
            for j in range(m):
                if z[j] > 0.0 and q[j] > 0.0:
                    s = math.sqrt(q[j] / n)
                    hs = z[j] / s
                    gW2[j] += e * gam[j] * hs
                    ggam[j] += e * W2[j] * hs
                    u = e * W2[j] * gam[j] / s
                    dz[j] = u
                    kappa[j] += u * z[j] / q[j]
                else:
                    dz[j] = 0.0
            xi = Xp[i]
            for l in range(dp):
                xl = xi[l]
                gr = gWT[l]
                for j in range(m):
                    gr[j] += xl * dz[j]
        for l in range(dp):
            gr = gWT[l]
            mr = MT[l]
            for j in range(m):
                gr[j] -= kappa[j] * mr[j]
        return loss * invB
    X4 = np.empty((4, dp))
    for b0 in range(0, B, 4):
        cnt = min(4, B - b0)
        _gather4(Xp, idx, b0, cnt, X4)
        _z4(X4, WT, m, zrow)
        for r in range(4):
            zr = zrow[r]
            if r < cnt:
                _act(zr, a, da, act, bits)
                rr = _head(a, da, W2, Y[idx[b0 + r]], act, eps, g2, dz)
                loss += rr * rr
                for j in range(m):
                    gW2[j] += g2[j] * invB
                    zr[j] = dz[j] * invB
            else:
                for j in range(m):
                    zr[j] = 0.0
        _acc4(X4, zrow, m, gWT)
    return loss * invB


@njit(**_JIT)
def _apply(P, G, lr, scale):
    for j in range(P.size):
        P.flat[j] = scale * P.flat[j] - lr * G.flat[j]


@njit(**_JIT)
def _minibatch(WT, W2, gam, Xp, Y, orders, act, has_gamma, lr, rho, wd, eps, proj, bsz, do_sam,
               full_batch, E, fail):
    """GD (full_batch), SGD or m-SAM (do_sam) with chunks of size bsz of every epoch order
    (augmented WT, see above)."""
    dp, m = WT.shape
    n = Xp.shape[0]
    scale = 1.0 - lr * wd
    gWT = np.empty((dp, m))
    gW2 = np.empty(m)
    ggam = np.empty(m)
    pWT = np.empty((dp, m))
    pW2 = np.empty(m)
    pgam = np.empty(m)
    nz = n if act == _SBN else 1
    ws = (np.empty(m), np.empty((dp, m)), np.empty((nz, m)), np.empty((4, m)), np.empty(m),
          np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m),
          np.empty(m, dtype=np.int64))
    all_idx = np.arange(n)
    for ep in range(E):
        nchunks = 1 if full_batch else (n + bsz - 1) // bsz
        for c in range(nchunks):
            if full_batch:
                idx = all_idx
            else:
                idx = orders[ep, c * bsz:min(n, (c + 1) * bsz)]
            loss = _batch_grad(WT, W2, gam, Xp, Y, idx, act, eps, gWT, gW2, ggam, ws)
            if not math.isfinite(loss):
                fail[0] = ep
                fail[1] = c
                return ep
            if do_sam:
                g2 = 0.0
                for v in gWT.flat:
                    g2 += v * v
                for j in range(m):
                    g2 += gW2[j] * gW2[j] + ggam[j] * ggam[j]
                cc = rho / math.sqrt(g2) if g2 > 0.0 else 0.0
                for j in range(m):
                    pW2[j] = W2[j] + cc * gW2[j]
                    pgam[j] = gam[j] + cc * ggam[j]
                for l in range(dp):
                    for j in range(m):
                        pWT[l, j] = WT[l, j] + cc * gWT[l, j]
                loss = _batch_grad(pWT, pW2, pgam, Xp, Y, idx, act, eps, gWT, gW2, ggam, ws)
                if not math.isfinite(loss):
                    fail[0] = ep
                    fail[1] = c
                    return ep
            _apply(WT, gWT, lr, scale)
            _apply(W2, gW2, lr, scale)
            if has_gamma:
                _apply(gam, ggam, lr, scale)
            if proj > 0.0:
                ss = 0.0
                for v in WT.flat:
                    ss += v * v
                tf = proj / math.sqrt(ss)
                for k in range(WT.size):
                    WT.flat[k] *= tf
    return E


# ----------------------------------------------------------------------------------------
# Python entry points
# ----------------------------------------------------------------------------------------
def _check_array(name, a, shape):
    if not isinstance(a, np.ndarray) or a.dtype != np.float64 or not a.flags.c_contiguous:
        raise TypeError(f"params[{name!r}] must be a C-contiguous float64 ndarray")
    if a.shape != shape:
        raise ValueError(f"params[{name!r}] has shape {a.shape}, expected {shape}")


def run_epochs(params, X, Y, orders, *, arch, algo, lr, rho=0.0, wd=0.0, batch_size=1, eps=1e-6,
               project_norm=None, epochs=None) -> EngineStatus:
    """Run ``len(orders)`` epochs (or ``epochs`` for 'gd') of ``algo`` on ``arch`` in place.

    See the module docstring for the exact semantics.  Cheap to call repeatedly (a few
    microseconds plus one transposed copy of W1 per call).
    """
    if not supports(arch, algo):
        raise ValueError(f"engine does not support arch={arch!r} algo={algo!r}")
    t0 = time.perf_counter()
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    n, d = X.shape
    W1 = params["W1"]
    m = W1.shape[0]
    _check_array("W1", W1, (m, d))
    _check_array("W2", params["W2"], (m,))
    has_bias = arch != "nobias"
    has_gamma = arch == "sbn"
    if has_bias:
        _check_array("b1", params["b1"], (m,))
    if has_gamma:
        _check_array("gamma", params["gamma"], (m,))
    W2 = params["W2"]
    b1 = params["b1"] if has_bias else np.zeros(m)
    gamma = params["gamma"] if has_gamma else np.ones(m)
    if algo == "gd":
        E = int(epochs) if epochs is not None else len(orders)
        orders_arr = np.zeros((E, n), dtype=np.int64)  # unused by the kernel
    else:
        orders_arr = np.ascontiguousarray(orders, dtype=np.int64)
        if orders_arr.ndim != 2 or orders_arr.shape[1] != n:
            raise ValueError(f"orders must have shape (epochs, {n}), got {orders_arr.shape}")
        if orders_arr.size and (orders_arr.min() < 0 or orders_arr.max() >= n):
            raise ValueError("orders contains indices outside [0, n)")
        E = orders_arr.shape[0]
    proj = float(project_norm) if project_norm is not None else -1.0
    act = _ARCH_CODE[arch]
    start = {k: np.array(v, copy=True) for k, v in params.items()}
    fail = np.full(2, -1, dtype=np.int64)
    bsz = max(1, int(batch_size))
    sam = algo in ("sam1", "msam")
    per_sample = algo == "sam1" or (algo in ("msam", "sgd") and bsz == 1)
    if act != _SBN and per_sample:
        W1T = np.ascontiguousarray(W1.T)
        done = _sam1_fast(W1T, b1, W2, X, Y, orders_arr, act, has_bias, float(lr), float(rho),
                          float(wd), float(eps), proj, sam, fail)
        W1[...] = W1T.T
    else:
        # augmented first layer (b1 as the last row of WT, ones appended to X)
        dp = d + 1 if has_bias else d
        WT = np.empty((dp, m))
        WT[:d] = W1.T
        Xp = np.ones((n, dp))
        Xp[:, :d] = X
        if has_bias:
            WT[d] = b1
        if act == _SBN and per_sample:
            done = _sbn_sam1(WT, W2, gamma, Xp, Y, orders_arr, float(lr), float(rho), float(wd),
                             proj, sam, fail)
        else:
            done = _minibatch(WT, W2, gamma, Xp, Y, orders_arr, act, has_gamma, float(lr),
                              float(rho), float(wd), float(eps), proj, bsz, sam, algo == "gd",
                              E, fail)
        W1[...] = WT[:d].T
        if has_bias:
            b1[...] = WT[d]
    dt = time.perf_counter() - t0
    if fail[0] >= 0:
        return EngineStatus(False, int(done), f"non-finite loss at epoch {int(fail[0])} "
                            f"(of this call), step {int(fail[1])}", int(fail[0]), int(fail[1]),
                            start, dt)
    if not all(np.isfinite(v).all() for v in params.values()):
        return EngineStatus(False, int(done), "non-finite parameters after the last step",
                            int(done) - 1, n - 1, start, dt)
    return EngineStatus(True, int(done), "ok", seconds=dt)


def run_many(jobs, n_threads=None):
    """Run independent ``run_epochs`` jobs concurrently; ``jobs`` are dicts of its keyword
    arguments (plus 'params', 'X', 'Y', 'orders').  The kernels release the GIL, so threads
    scale over cores; ``n_threads`` defaults to numba's thread count."""
    n_threads = n_threads or numba.config.NUMBA_NUM_THREADS
    if n_threads <= 1:
        return [run_epochs(**j) for j in jobs]
    with ThreadPoolExecutor(max_workers=n_threads) as ex:
        return list(ex.map(lambda j: run_epochs(**j), jobs))


def warmup():
    """Compile (first use) or load from cache every kernel; returns the seconds it took."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    n, d, m = 4, 3, 5
    X = rng.choice([-1.0, 1.0], size=(n, d))
    Y = X[:, 0] * X[:, 1]
    orders = np.stack([rng.permutation(n) for _ in range(2)])
    for arch in ARCHS:
        for algo, bs in (("sam1", 1), ("sgd", 2), ("gd", n), ("msam", 2)):
            p = {"W1": rng.standard_normal((m, d)) * 0.1, "W2": rng.standard_normal(m) * 0.1}
            if arch != "nobias":
                p["b1"] = np.zeros(m)
            if arch == "sbn":
                p["gamma"] = np.ones(m)
            run_epochs(p, X, Y, orders, arch=arch, algo=algo, lr=1e-3, rho=0.1, wd=1e-3,
                       batch_size=bs, project_norm=1.0 if arch == "sln" else None)
    return time.perf_counter() - t0
