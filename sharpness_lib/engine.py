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
their statistics (q_j, Mw_j) are recomputed exactly, packed, in register-blocked loops, or --
for +-1 inputs such as P_xor -- from tables of the 8 sign patterns of every 4 columns / rows
(see the comments above ``_sbn_stats`` and ``_pm_tables``).  Mini-batch / full-batch gradients
are accumulated sample by sample (4 samples at a time) with no (B, m) temporaries.  No kernel
calls BLAS, so concurrent runs (``run_many``) do not oversubscribe the cores.  Base optimizers
other than plain SGD run on a dense path: the full gradient of the chunk, then the optimizer's
elementwise update with its state (see the comment above ``_opt_update``).

API (what ``sharpness_lib.training`` calls)
-------------------------------------------
``supports(arch, algo, loss="mse", optimizer="sgd", options=None) -> bool``

``run_epochs(params, X, Y, orders, *, arch, algo, lr, rho=0.0, wd=0.0, batch_size=1,
eps=1e-6, project_norm=None, epochs=None, loss="mse", label_smoothing=0.0, optimizer="sgd",
optimizer_options=None, opt_state=None) -> EngineStatus``

* ``params``: dict of C-contiguous float64 arrays, updated IN PLACE (may be views of torch
  parameters, ``p.detach().numpy()``): 'W1' (m, d); 'b1' (m,) except for arch 'nobias';
  'W2' (m,); 'gamma' (m,) for 'sbn' only.
* archs (``ARCHS``): 'nobias' (2-MLP-No-Bias), 'bias' (2-MLP-Bias), 'softplus' (softplus
  2-MLP-Bias, torch semantics beta=1, threshold=20), 'sln' (2-MLP-Sim-LN,
  f = W2.h / max(||h||, eps)), 'sbn' (2-MLP-Sim-BN, s_j = sqrt(mean_k h(X_k)_j^2) over the n
  training inputs under the current parameters; a neuron with s_j == 0 contributes 0 and gets
  no gradient).
* algos (``ALGOS``): 'sam1' (1-SAM), 'msam' (m-SAM, chunks of ``batch_size`` of the epoch
  order), 'sgd' (chunks of ``batch_size``), 'gd' (one full-batch step per epoch).  SAM's
  perturbation rho * g / ||g|| uses the gradient g of the chunk's loss (without weight decay)
  and the global 2-norm over all parameters (no perturbation when ||g|| == 0).
* ``loss`` (``LOSSES``), averaged over the chunk: 'mse', l = (f - y)^2; 'logistic' with label
  smoothing p = ``label_smoothing`` (Appendix B, Figures 8-10; ``sharpness_lib.losses``):
  l = -(1 - p/2) log sigma(y f) - (p/2) log sigma(-y f), dl/df = y (p/2 - sigma(-y f)).
* ``optimizer`` (``OPTIMIZERS``, hyperparameters ``optimizer_options`` with the defaults of
  ``sharpness_lib.optimizers.BASE_OPTIMIZERS``): 'sgd' (momentum 0 by default: the update
  theta <- theta - lr (grad + wd theta), the fast kernels), 'momentum' (heavy ball,
  torch.optim.SGD: buf = mu buf + (1 - dampening) g, first step buf = g; nesterov
  optional), 'adam' (torch.optim.Adam: L2 weight decay added to the gradient, bias
  corrections, eps outside the sqrt; amsgrad optional), 'adagrad' (torch.optim.Adagrad),
  'adabound' / 'adashift' (``sharpness_lib.optimizers``; AdaBound's bounds scale with
  lr / base_lr, base_lr = the lr at construction).  Weight decay ``wd`` is always the L2 term
  added to the gradient before the optimizer's rule, at the unperturbed parameters.  Every
  optimizer but plain SGD keeps state: ``opt_state`` (an ``OptState`` from
  ``new_opt_state(params, arch=, optimizer=, options=, base_lr=)``) is updated in place; if
  None a fresh one is made (base_lr = this call's lr) and returned as ``status.opt_state`` --
  pass it to the next call, as a torch optimizer keeps its ``state``.
* ``orders``: int64 (epochs, n), the visiting order of every epoch (the engine draws no random
  numbers).  Number of epochs = ``len(orders)``.  For 'gd' ``orders`` may be None; then pass
  ``epochs=`` (if both are given, ``epochs`` wins and the content of ``orders`` is ignored).
* ``project_norm``: if not None, after every update W1 and b1 are rescaled jointly so that
  sqrt(||W1||_F^2 + ||b1||^2) == project_norm (Figure 6b).
* Divergence: the loss (the output f) of every step (both SAM passes) is checked; if it is
  non-finite the step is NOT applied (nor the optimizer's state changed), the call stops and
  returns ``finite=False`` with ``fail_epoch`` / ``fail_step`` (indices inside this call) and
  ``start_params``, a copy of the parameters at the start of the call (the in-place parameters
  are then those before the failing step; they may already be huge).  After a call that
  finishes, all parameters are checked once more.

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

__all__ = ["ARCHS", "ALGOS", "LOSSES", "OPTIMIZERS", "EngineStatus", "OptState", "supports",
           "new_opt_state", "run_epochs", "run_many", "warmup"]

ARCHS = ("nobias", "bias", "softplus", "sln", "sbn")
ALGOS = ("sam1", "msam", "sgd", "gd")

# activation codes shared by the kernels
_RELU, _SOFTPLUS, _SLN, _SBN = 0, 1, 2, 3
_ARCH_CODE = {"nobias": _RELU, "bias": _RELU, "softplus": _SOFTPLUS, "sln": _SLN, "sbn": _SBN}
# loss codes
_MSE, _LOGISTIC = 0, 1
_LOSS_CODE = {"mse": _MSE, "logistic": _LOGISTIC}

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
    opt_state: OptState | None = field(default=None, repr=False)  # dense path: pass it back


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
def _dldf(f, y, lossc, ls):
    """dl/df of the per-sample loss: (f - y)^2, or the logistic loss with label smoothing ls,
    l = -(1 - ls/2) log sigma(y f) - (ls/2) log sigma(-y f), whose derivative is
    y (ls/2 - sigma(-y f)) (``sharpness_lib.losses``)."""
    if lossc == _MSE:
        return 2.0 * (f - y)
    return y * (0.5 * ls - 1.0 / (1.0 + math.exp(y * f)))


@njit(**_JIT)
def _lval(f, y, lossc, ls):
    """The per-sample loss value (used for the divergence checks of batch gradients)."""
    if lossc == _MSE:
        r = f - y
        return r * r
    t = y * f
    sp_neg = max(-t, 0.0) + math.log1p(math.exp(-abs(t)))  # softplus(-t) = -log sigma(t)
    return (1.0 - 0.5 * ls) * sp_neg + 0.5 * ls * (sp_neg + t)


@njit(**_JIT)
def _head(a, da, W2, y, act, eps, out_gW2, out_dz, lossc, ls):
    """Output and per-sample gradients given activations.

    Returns f; fills out_gW2 = dl/dW2 and out_dz = dl/dz (pre-activation) for the loss
    ``lossc`` (see ``_dldf``).
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
        e2 = _dldf(f, y, lossc, ls)
        # d f / d h_j = (W2_j - f h_j / N) / N  when N > eps, W2_j / eps otherwise
        coef = f / N if N > eps else 0.0
        eq = e2 / q
        for j in range(m):
            out_gW2[j] = eq * a[j]
            out_dz[j] = eq * (W2[j] - coef * a[j]) * da[j]
    else:
        f = F
        e2 = _dldf(f, y, lossc, ls)
        for j in range(m):
            out_gW2[j] = e2 * a[j]
            out_dz[j] = e2 * W2[j] * da[j]
    return f


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
               lossc, ls, fail):
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
            f = _head(a, da, W2, y, act, eps, gW2, dz, lossc, ls)
            if not math.isfinite(f):
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
                fp = _head(a, da, W2p, y, act, eps, gW2, dz, lossc, ls)
                if not math.isfinite(fp):
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
        X4 = Xp4[k0:k0 + 4]
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


@njit(**_JIT)
def _sbn_stats_pm(WA4, ma, irow, qA, MA, zi, tabs, T, C, H4, Hall, store_all):
    """``_sbn_stats`` for a +-1 design (tables ``tabs`` of ``_pm_tables``).  WA4 (4G, >= ma)
    with zero rows from d' on; workspaces T (8G + 1, >= ma), C (8 RG, >= ma), H4 (4, >= ma).
    Hall[k] <- relu(pre-activations) of row k if ``store_all``."""
    zidx, zsig, aidx, asig = tabs
    n = zidx.shape[0]
    GZ = zidx.shape[1]
    dp = aidx.shape[0]
    RG = aidx.shape[1]
    G = WA4.shape[0] // 4
    for g in range(G):
        _combos(WA4[4 * g], WA4[4 * g + 1], WA4[4 * g + 2], WA4[4 * g + 3], ma, T, 8 * g)
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
                t4, t5, t6, t7 = T[zk[cz + 4]], T[zk[cz + 5]], T[zk[cz + 6]], T[zk[cz + 7]]
                s0, s1, s2, s3 = sk[cz], sk[cz + 1], sk[cz + 2], sk[cz + 3]
                s4, s5, s6, s7 = sk[cz + 4], sk[cz + 5], sk[cz + 6], sk[cz + 7]
                if fused:
                    for j in range(ma):
                        v = ((s0 * t0[j] + s1 * t1[j]) + (s2 * t2[j] + s3 * t3[j])) + \
                            ((s4 * t4[j] + s5 * t5[j]) + (s6 * t6[j] + s7 * t7[j]))
                        h = max(v, 0.0)
                        hr[j] = h
                        qA[j] += h * h
                else:
                    for j in range(ma):
                        hr[j] += ((s0 * t0[j] + s1 * t1[j]) + (s2 * t2[j] + s3 * t3[j])) + \
                                 ((s4 * t4[j] + s5 * t5[j]) + (s6 * t6[j] + s7 * t7[j]))
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
                mr[j] += ((s0 * u0[j] + s1 * u1[j]) + (s2 * u2[j] + s3 * u3[j])) + \
                         ((s4 * u4[j] + s5 * u5[j]) + (s6 * u6[j] + s7 * u7[j]))
            c += 8
        while c < RG:
            u0 = C[al[c]]
            s0 = sl[c]
            for j in range(ma):
                mr[j] += s0 * u0[j]
            c += 1


@njit(**_JIT)
def _pstride(k):
    """Row stride for k packed columns: k rounded up to 8, avoiding multiples of 512 doubles
    (4 KiB).  Rows exactly 4 KiB apart (e.g. a (d', 512) array) map to the same L1 sets and
    halve the throughput of ``_z4h`` / ``_acc4h``."""
    S = (k + 7) // 8 * 8
    if S % 512 == 0:
        S += 8
    return max(S, 8)


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


@njit(**_JIT)
def _sbn_sam1(WT, W2, gam, Xp, Y, orders, lr, rho, wd, proj, do_sam, lossc, ls, pm, fail):
    """1-SAM (do_sam) or SGD with batch size 1 on 2-MLP-Sim-BN (augmented WT, see above).

    Per step: z_i = W x'_i (all neurons), pack the active ones (data, q and Mw gathered once),
    pass 1 and the perturbation on the packed block, statistics at the perturbed point, the
    update (scattered back into WT), statistics of the moved neurons (scattered into q, MT).
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
        vec[0], vec[1], vec[2], vec[3], vec[4], vec[5], vec[6], vec[7], vec[8], vec[9], vec[10],
        vec[11])
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
            na = 0
            bad = 0.0
            for j in range(m):  # branch-free compaction of the active neurons
                idxA[na] = j
                na += (zi[j] > 0.0) & (q[j] > 0.0)
                bad += q[j] * 0.0
            if not math.isfinite(bad):  # a statistic overflowed: the output is not finite
                fail[0] = ep
                fail[1] = t
                return ep
            S = _pstride(na)
            WA0 = buf[:dp * S].reshape((dp, S))  # packed current weights
            MA = buf[blk:blk + dp4 * S].reshape((dp4, S))  # packed Mw (current, then new)
            DWA = buf[2 * blk:2 * blk + dp * S].reshape((dp, S))  # packed dl/dw
            WA = buf[3 * blk:3 * blk + dp * S].reshape((dp, S))  # perturbed, then new weights
            Z4 = buf[4 * blk:4 * blk + 4 * S].reshape((4, S))
            WA4 = buf[3 * blk:3 * blk + dp4 * S].reshape((dp4, S))  # WA with zero pad rows
            for l in range(dp, dp4):  # (the view moves with S: clear the pad rows)
                wr = WA4[l]
                for a in range(S):
                    wr[a] = 0.0
            if pm:
                Ttab = Tbuf[:(8 * G + 1) * S].reshape((8 * G + 1, S))
                Ctab = Cbuf[:8 * RG * S].reshape((8 * RG, S))
            else:
                Ttab = Tbuf[:1].reshape((1, 1))
                Ctab = Cbuf[:1].reshape((1, 1))
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
            # ---- pass 1 at theta: output and gradient of the active neurons
            F = 0.0
            for a in range(na):
                s = math.sqrt(qP[a] / n)
                F += W2P[a] * gamP[a] * ziP[a] / s
            if not math.isfinite(F):
                fail[0] = ep
                fail[1] = t
                return ep
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
                    _sbn_stats_pm(WA4, na, i, qA, MA, ziA, tabs, Ttab, Ctab, Z4, dummy, False)
                else:
                    _sbn_stats(Xp4, WA4, na, i, qA, MA, Z4, ziA, dummy, False)
                F = 0.0
                bad = 0.0
                for a in range(na):
                    if ziA[a] > 0.0 and qA[a] > 0.0:
                        F += W2A[a] * gamA[a] * ziA[a] / math.sqrt(qA[a] / n)
                    bad += qA[a] * 0.0  # a perturbed statistic overflowed
                F += bad
                if not math.isfinite(F):
                    fail[0] = ep
                    fail[1] = t
                    return ep
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
            if scale <= 0.0:  # relu is not homogeneous under a negative factor: recompute all
                WTs[:dp, :m] = WT
                _sbn_stats(Xp4, WTs, m, -1, q, MT, Zfull, zi, dummy, False)
            else:
                if pm:
                    _sbn_stats_pm(WA4, nu, -1, qA, MA, ziA, tabs, Ttab, Ctab, Z4, dummy, False)
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
# Batch gradients (GD, SGD, m-SAM and the base optimizers; every arch), sample by sample
# ----------------------------------------------------------------------------------------
@njit(**_JIT)
def _batch_grad(WT, W2, gam, Xp, Xp4, Y, idx, act, eps, lossc, ls, gWT, gW2, ggam, ws, sw):
    """Mean over idx of l(f(x_i), y_i) and its gradient (written into gWT, gW2, ggam).

    The gradient is accumulated one sample at a time (z_i = W x'_i, gWT += x'_i dz_i^T), so the
    only temporaries are O(m) (Sim-BN: plus the (n, m) activations).  For Sim-BN the
    statistic runs over all rows of Xp and the gradient flows through it:
    gw_j = sum_b u_bj 1_bj x'_b - (sum_b u_bj h_bj / q_j) Mw_j.  ``ws`` and ``sw`` are
    workspace tuples (``_workspace``, ``_sbn_workspace``); the statistics run on a copy of W
    with row stride ``_pstride(m)`` (with the +-1 tables if ``sw`` says so).
    """
    q, MT, Hall, zrow, zi, a, da, g2, dz, kappa, bits = ws
    pm, tabs, WS, Tt, Ct = sw
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
    return (np.empty(m), np.empty((dpM, mS)), np.empty((nz, m)), np.empty((4, mS)),
            np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m),
            np.empty(m, dtype=np.int64))


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


# ----------------------------------------------------------------------------------------
# Dense path: mini-batch algos and every base optimizer (SGD, heavy ball, Adam, Adagrad,
# AdaBound, AdaShift)
# ----------------------------------------------------------------------------------------
# All parameters live in one flat vector P = [W1^T with b1 as last row (d', m), W2 (m),
# gamma (m, Sim-BN only)]; ``segs`` holds the boundaries of the torch tensors W1, b1, W2,
# gamma inside P (AdaShift reduces its second moment per tensor).  Each step computes the dense
# gradient G of the chunk (at the perturbed point for SAM: eps = rho g / ||g||, g the gradient
# of the loss without weight decay, as in ``sharpness_lib.sam``), then applies the optimizer's
# update elementwise with its state S (K, len(P)) and step counter, both kept by the caller
# across calls (``OptState``).  Update rules: torch.optim.SGD / Adam / Adagrad (single-tensor
# code paths) and ``sharpness_lib.optimizers.AdaBound`` / ``AdaShift``.
_OPT_SGD, _OPT_ADAM, _OPT_ADAGRAD, _OPT_ADABOUND, _OPT_ADASHIFT = 0, 1, 2, 3, 4


@njit(**_JIT)
def _opt_update(P, G, S, segs, kind, hp, lr, wd, t, aux):
    """One optimizer step on P with loss gradient G (weight decay wd added as L2 term);
    t = the step number (1 for the first step).  ``aux`` (int64): AdaShift's queue count and
    head.  Returns nothing; P and S are updated in place."""
    N = P.shape[0]
    if kind == _OPT_SGD:
        mom, damp, nest = hp[0], hp[1], hp[2]
        buf = S[0]
        for i in range(N):
            g = G[i] + wd * P[i]
            if mom != 0.0:
                b = g if t == 1 else mom * buf[i] + (1.0 - damp) * g
                buf[i] = b
                g = g + mom * b if nest != 0.0 else b
            P[i] -= lr * g
    elif kind == _OPT_ADAM:
        b1, b2, eps, ams = hp[0], hp[1], hp[2], hp[3]
        mbuf, vbuf, vmax = S[0], S[1], S[2]
        bc1 = 1.0 - b1 ** t
        bc2s = math.sqrt(1.0 - b2 ** t)
        step = lr / bc1
        for i in range(N):
            g = G[i] + wd * P[i]
            mi = mbuf[i] + (1.0 - b1) * (g - mbuf[i])
            vi = b2 * vbuf[i] + (1.0 - b2) * g * g
            mbuf[i] = mi
            vbuf[i] = vi
            if ams != 0.0:
                vi = max(vmax[i], vi)
                vmax[i] = vi
            P[i] -= step * mi / (math.sqrt(vi) / bc2s + eps)
    elif kind == _OPT_ADAGRAD:
        lr_decay, eps = hp[0], hp[2]
        ssum = S[0]
        clr = lr / (1.0 + (t - 1) * lr_decay)
        for i in range(N):
            g = G[i] + wd * P[i]
            si = ssum[i] + g * g
            ssum[i] = si
            P[i] -= clr * g / (math.sqrt(si) + eps)
    elif kind == _OPT_ADABOUND:
        b1, b2, final_lr, gamma, eps, ams, base_lr = hp[0], hp[1], hp[2], hp[3], hp[4], hp[5], hp[6]
        mbuf, vbuf, vmax = S[0], S[1], S[2]
        step = lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        fl = final_lr * lr / base_lr
        lower = fl * (1.0 - 1.0 / (gamma * t + 1.0))
        upper = fl * (1.0 + 1.0 / (gamma * t))
        for i in range(N):
            g = G[i] + wd * P[i]
            mi = b1 * mbuf[i] + (1.0 - b1) * g
            vi = b2 * vbuf[i] + (1.0 - b2) * g * g
            mbuf[i] = mi
            vbuf[i] = vi
            if ams != 0.0:
                vi = max(vmax[i], vi)
                vmax[i] = vi
            u = min(max(step / (math.sqrt(vi) + eps), lower), upper)
            P[i] -= u * mi
    else:  # AdaShift
        b1, b2, eps, red = hp[0], hp[1], hp[2], hp[3]
        nk = S.shape[0] - 4  # keep_num queue rows, then v, k (per coordinate), m, scratch
        vv, kk, mm = S[nk], S[nk + 1], S[nk + 2]
        cnt, head = aux[0], aux[1]
        if cnt < nk:  # fill the queue, no update
            qrow = S[(head + cnt) % nk]
            for i in range(N):
                qrow[i] = G[i] + wd * P[i]
            aux[0] = cnt + 1
            return
        old = S[head]  # oldest gradient; replaced by the new one (ring buffer)
        nseg = segs.shape[0] - 1
        for sg in range(nseg):
            lo, hi = segs[sg], segs[sg + 1]
            if hi <= lo:
                continue
            if red == 2:  # per coordinate
                for i in range(lo, hi):
                    vv[i] = b2 * vv[i] + (1.0 - b2) * (old[i] * old[i])
                    kk[i] += 1.0 if (vv[i] > 0.0 or kk[i] > 0.0) else 0.0
            else:
                ph = 0.0 if red == 1 else -1.0
                for i in range(lo, hi):
                    o2 = old[i] * old[i]
                    if red == 1:
                        ph += o2
                    else:
                        ph = max(ph, o2)
                if red == 1:
                    ph /= hi - lo
                v = b2 * vv[lo] + (1.0 - b2) * ph
                k = kk[lo] + (1.0 if (v > 0.0 or kk[lo] > 0.0) else 0.0)
                for i in range(lo, hi):
                    vv[i] = v
                    kk[i] = k
        for i in range(N):
            old[i] = G[i] + wd * P[i]
        head = (head + 1) % nk
        aux[1] = head
        # m = sum_i w_i q_i, oldest first, w_i = b1^(nk-1-i) / sum_j b1^j
        tot = 0.0
        for r in range(nk):
            tot += b1 ** (nk - 1 - r)
        for i0 in range(0, N, 1024):  # blocks of m stay in L1 while the queue streams by
            i1 = min(N, i0 + 1024)
            mb = mm[i0:i1]
            for r in range(nk):
                w = b1 ** (nk - 1 - r) / tot
                qb = S[(head + r) % nk, i0:i1]
                if r == 0:
                    for i in range(i1 - i0):
                        mb[i] = qb[i] * w
                else:
                    for i in range(i1 - i0):
                        mb[i] += qb[i] * w
        bcs = S[nk + 3]  # 1 - b2^k per coordinate (1 where k = 0: no update there)
        kprev = -1.0
        bc = 1.0
        for i in range(N):
            k = kk[i]
            if k != kprev:  # k is constant per block (and in practice t - keep_num)
                bc = 1.0 - b2 ** k if k > 0.0 else 1.0
                kprev = k
            bcs[i] = bc
        for i in range(N):
            u = mm[i] / (math.sqrt(vv[i] / bcs[i]) + eps) * lr
            P[i] -= u if kk[i] > 0.0 else 0.0


@njit(**_JIT)
def _dense(P, G, PP, dp, m, has_gamma, Xp, Y, orders, act, lr, rho, wd, eps, proj, bsz,
           do_sam, full_batch, E, lossc, ls, pm, kind, hp, S, segs, tstep, aux, fail):
    """GD / SGD / 1-SAM / m-SAM with a base optimizer on the flat parameter vector P (see
    above); G, PP: gradient and perturbed-point workspaces like P; tstep[0] is the number of
    optimizer steps taken so far."""
    n = Xp.shape[0]
    Xp4 = _pad4(Xp)
    NP = P.shape[0]
    ones = np.ones(m)
    ws = _workspace(dp, m, n, act)
    sw = _sbn_workspace(Xp, m, act, pm)
    nW = dp * m
    WT = P[:nW].reshape((dp, m))
    W2 = P[nW:nW + m]
    gam = P[nW + m:nW + 2 * m] if has_gamma else ones
    gWT = G[:nW].reshape((dp, m))
    gW2 = G[nW:nW + m]
    ggam = G[nW + m:nW + 2 * m] if has_gamma else np.empty(m)
    pWT = PP[:nW].reshape((dp, m))
    pW2 = PP[nW:nW + m]
    pgam = PP[nW + m:nW + 2 * m] if has_gamma else ones
    all_idx = np.arange(n)
    for ep in range(E):
        nchunks = 1 if full_batch else (n + bsz - 1) // bsz
        for c in range(nchunks):
            if full_batch:
                idx = all_idx
            else:
                idx = orders[ep, c * bsz:min(n, (c + 1) * bsz)]
            loss = _batch_grad(WT, W2, gam, Xp, Xp4, Y, idx, act, eps, lossc, ls, gWT, gW2,
                               ggam, ws, sw)
            if not math.isfinite(loss):
                fail[0] = ep
                fail[1] = c
                return ep
            if do_sam:
                g2 = 0.0
                for i in range(NP):
                    g2 += G[i] * G[i]
                cc = rho / math.sqrt(g2) if g2 > 0.0 else 0.0
                for i in range(NP):
                    PP[i] = P[i] + cc * G[i]
                loss = _batch_grad(pWT, pW2, pgam, Xp, Xp4, Y, idx, act, eps, lossc, ls, gWT,
                                   gW2, ggam, ws, sw)
                if not math.isfinite(loss):
                    fail[0] = ep
                    fail[1] = c
                    return ep
            tstep[0] += 1
            _opt_update(P, G, S, segs, kind, hp, lr, wd, tstep[0], aux)
            if proj > 0.0:
                ss = 0.0
                for i in range(nW):
                    ss += P[i] * P[i]
                tf = proj / math.sqrt(ss)
                for i in range(nW):
                    P[i] *= tf
    return E


# ----------------------------------------------------------------------------------------
# Python entry points
# ----------------------------------------------------------------------------------------
# Base optimizers of the dense path: name -> (kernel code, hyperparameters with the defaults of
# sharpness_lib.optimizers.BASE_OPTIMIZERS; tests check that the two tables agree).
_OPTIMIZERS = {
    "sgd": (_OPT_SGD, {"momentum": 0.0, "dampening": 0.0, "nesterov": False}),
    "momentum": (_OPT_SGD, {"momentum": 0.9, "dampening": 0.0, "nesterov": False}),
    "adam": (_OPT_ADAM, {"betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False}),
    "adagrad": (_OPT_ADAGRAD, {"lr_decay": 0.0, "initial_accumulator_value": 0.0,
                               "eps": 1e-10}),
    "adabound": (_OPT_ADABOUND, {"betas": (0.9, 0.999), "final_lr": 0.1, "gamma": 1e-3,
                                 "eps": 1e-8, "amsbound": False}),
    "adashift": (_OPT_ADASHIFT, {"betas": (0.9, 0.999), "keep_num": 10, "eps": 1e-10,
                                 "reduce": "max"}),
}
OPTIMIZERS = tuple(_OPTIMIZERS)
LOSSES = tuple(_LOSS_CODE)
_REDUCE = {"max": 0, "mean": 1, "none": 2}
_NO_PM = False  # tests/benchmarks: force the dense statistics even for a +-1 design


def _opt_hparams(optimizer, options):
    """(kind, hp array, number of state rows) for ``optimizer`` with ``options`` (dict of
    hyperparameters overriding the defaults); ValueError on unknown names or values."""
    kind, defaults = _OPTIMIZERS[optimizer]
    options = dict(options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a hyperparameter of optimizer {optimizer!r}; "
                         f"valid: {', '.join(defaults)}.")
    o = {**defaults, **options}
    if kind == _OPT_SGD:
        return kind, np.array([o["momentum"], o["dampening"], float(bool(o["nesterov"]))]), 1
    if kind == _OPT_ADAM:
        b1, b2 = o["betas"]
        return kind, np.array([b1, b2, o["eps"], float(bool(o["amsgrad"]))]), 3
    if kind == _OPT_ADAGRAD:
        return kind, np.array([o["lr_decay"], o["initial_accumulator_value"], o["eps"]]), 1
    if kind == _OPT_ADABOUND:
        b1, b2 = o["betas"]
        return kind, np.array([b1, b2, o["final_lr"], o["gamma"], o["eps"],
                               float(bool(o["amsbound"])), 0.0]), 3
    b1, b2 = o["betas"]
    if o["reduce"] not in _REDUCE:
        raise ValueError(f"reduce must be one of {', '.join(_REDUCE)}; got {o['reduce']!r}.")
    keep = int(o["keep_num"])
    if keep < 1:
        raise ValueError(f"keep_num must be >= 1; got {o['keep_num']!r}.")
    return kind, np.array([b1, b2, o["eps"], float(_REDUCE[o["reduce"]])]), keep + 4


def _plain_sgd(optimizer, options):
    """True if the update is theta <- theta - lr (g + wd theta) (the fast kernels)."""
    if optimizer != "sgd" and optimizer != "momentum":
        return False
    return float({**_OPTIMIZERS[optimizer][1], **(options or {})}["momentum"]) == 0.0


@dataclass
class OptState:
    """State of a base optimizer of the dense path, kept by the caller across ``run_epochs``
    calls (like a torch optimizer's ``state``).  Layout is internal (flat augmented parameter
    vector); ``steps`` is the number of optimizer steps taken."""

    optimizer: str
    signature: tuple
    kind: int
    hp: np.ndarray
    S: np.ndarray
    size: int  # number of parameters (the rows of S are padded)
    tstep: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    aux: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))

    @property
    def steps(self) -> int:
        return int(self.tstep[0])


def _aligned(n, offset):
    """Uninitialised float64 array of n entries whose data address is offset mod 4096."""
    buf = np.empty(n + 1024)
    skip = ((offset - buf.ctypes.data) % 4096) // 8
    return buf[skip:skip + n]


def new_opt_state(params, *, arch, optimizer, options=None, base_lr=None) -> OptState:
    """Fresh state of ``optimizer`` for ``params`` (as passed to ``run_epochs``), like a new
    torch optimizer: zero moments, step 0.  ``base_lr``: the lr AdaBound's bounds are relative
    to (the lr at construction; defaults to the lr of the first ``run_epochs`` call)."""
    kind, hp, K = _opt_hparams(optimizer, options)
    m, d = params["W1"].shape
    dp = d + 1 if arch != "nobias" else d
    NP = dp * m + m + (m if arch == "sbn" else 0)
    # rows 320 bytes apart modulo 4 KiB (and from P, G, PP: ``_aligned``): with rows a multiple
    # of 4 KiB long (e.g. width 512) every stream of the update hit the same L1 sets and the
    # update ran ~50x slower
    NPs = (NP + 7) // 8 * 8
    NPs += ((40 - NPs) % 512)
    S = _aligned(K * NPs, 0).reshape(K, NPs)  # row r, entries [0, NP) used
    S[...] = 0.0
    if kind == _OPT_ADAGRAD:
        S[0] = hp[1]  # initial_accumulator_value
    if kind == _OPT_ADABOUND:
        hp[6] = float(base_lr) if base_lr is not None else math.nan
    return OptState(optimizer, (arch, m, d), kind, hp, S, NP)


def supports(arch: str, algo: str, loss: str = "mse", optimizer: str = "sgd",
             options: dict | None = None) -> bool:
    """True if the engine implements this combination: every arch of ``ARCHS`` and algo of
    ``ALGOS`` with the squared or logistic loss and a base optimizer of ``OPTIMIZERS``
    (``options``: its hyperparameters, see ``sharpness_lib.optimizers``)."""
    if arch not in ARCHS or algo not in ALGOS or loss not in LOSSES:
        return False
    if optimizer not in _OPTIMIZERS:
        return False
    try:
        _opt_hparams(optimizer, options)
    except (ValueError, TypeError, KeyError):
        return False
    return True


def _check_array(name, a, shape):
    if not isinstance(a, np.ndarray) or a.dtype != np.float64 or not a.flags.c_contiguous:
        raise TypeError(f"params[{name!r}] must be a C-contiguous float64 ndarray")
    if a.shape != shape:
        raise ValueError(f"params[{name!r}] has shape {a.shape}, expected {shape}")


def run_epochs(params, X, Y, orders, *, arch, algo, lr, rho=0.0, wd=0.0, batch_size=1, eps=1e-6,
               project_norm=None, epochs=None, loss="mse", label_smoothing=0.0,
               optimizer="sgd", optimizer_options=None, opt_state=None) -> EngineStatus:
    """Run ``len(orders)`` epochs (or ``epochs`` for 'gd') of ``algo`` on ``arch`` in place.

    See the module docstring for the exact semantics.  Cheap to call repeatedly (a few
    microseconds plus one transposed copy of W1 per call).
    """
    if not supports(arch, algo, loss, optimizer, optimizer_options):
        raise ValueError(f"engine does not support arch={arch!r} algo={algo!r} loss={loss!r} "
                         f"optimizer={optimizer!r} options={optimizer_options!r}")
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
    lossc = _LOSS_CODE[loss]
    ls = float(label_smoothing)
    start = {k: np.array(v, copy=True) for k, v in params.items()}
    fail = np.full(2, -1, dtype=np.int64)
    bsz = max(1, int(batch_size))
    sam = algo in ("sam1", "msam")
    per_sample = algo == "sam1" or (algo in ("msam", "sgd") and bsz == 1)
    dp = d + 1 if has_bias else d
    Xp = np.ones((n, dp))
    Xp[:, :d] = X
    # Sim-BN with +-1 inputs: the statistics use tables of sign patterns (``_pm_tables``)
    pm = act == _SBN and not _NO_PM and bool(np.all(np.abs(Xp) == 1.0))
    plain = _plain_sgd(optimizer, optimizer_options)
    if not plain or not per_sample:
        # dense path (mini-batch / full-batch SGD, m-SAM, and every optimizer with state):
        # flat P = [W1^T (+ b1 as last row), W2, gamma]
        signature = (arch, m, d)
        nW = dp * m
        NP = nW + m + (m if has_gamma else 0)
        if plain:  # theta <- theta - lr (g + wd theta): no state
            kind, hp = _OPT_SGD, np.zeros(3)
            S, tstep, aux = np.zeros((1, 1)), np.zeros(1, dtype=np.int64), np.zeros(2, np.int64)
            opt_state = None
        else:
            if opt_state is None:
                opt_state = new_opt_state(params, arch=arch, optimizer=optimizer,
                                          options=optimizer_options, base_lr=lr)
            elif opt_state.optimizer != optimizer or opt_state.signature != signature:
                raise ValueError(f"opt_state belongs to optimizer {opt_state.optimizer!r} with "
                                 f"(arch, width, d) = {opt_state.signature}, not "
                                 f"{optimizer!r} / {signature}")
            if opt_state.kind == _OPT_ADABOUND and math.isnan(opt_state.hp[6]):
                opt_state.hp[6] = float(lr)
            kind, hp, S = opt_state.kind, opt_state.hp, opt_state.S
            tstep, aux = opt_state.tstep, opt_state.aux
        P, G, PP = _aligned(NP, 2112), _aligned(NP, 2432), _aligned(NP, 2752)
        G[:] = 0.0
        P[:d * m] = W1.T.ravel()
        if has_bias:
            P[d * m:nW] = b1
        P[nW:nW + m] = W2
        if has_gamma:
            P[nW + m:] = gamma
        segs = np.array([0, d * m, nW, nW + m, P.shape[0]], dtype=np.int64)
        done = _dense(P, G, PP, dp, m, has_gamma, Xp, Y, orders_arr, act, float(lr),
                      float(rho), float(wd), float(eps), proj, bsz, sam, algo == "gd", E, lossc,
                      ls, pm, kind, hp, S, segs, tstep, aux, fail)
        W1[...] = P[:d * m].reshape(d, m).T
        if has_bias:
            b1[...] = P[d * m:nW]
        W2[...] = P[nW:nW + m]
        if has_gamma:
            gamma[...] = P[nW + m:]
    elif act != _SBN and per_sample:
        W1T = np.ascontiguousarray(W1.T)
        done = _sam1_fast(W1T, b1, W2, X, Y, orders_arr, act, has_bias, float(lr), float(rho),
                          float(wd), float(eps), proj, sam, lossc, ls, fail)
        W1[...] = W1T.T
    else:
        # Sim-BN, batch size 1: augmented first layer (b1 as the last row of WT)
        WT = np.empty((dp, m))
        WT[:d] = W1.T
        if has_bias:
            WT[d] = b1
        done = _sbn_sam1(WT, W2, gamma, Xp, Y, orders_arr, float(lr), float(rho), float(wd),
                         proj, sam, lossc, ls, pm, fail)
        W1[...] = WT[:d].T
        if has_bias:
            b1[...] = WT[d]
    dt = time.perf_counter() - t0
    if fail[0] >= 0:
        return EngineStatus(False, int(done), f"non-finite loss at epoch {int(fail[0])} "
                            f"(of this call), step {int(fail[1])}", int(fail[0]), int(fail[1]),
                            start, dt, opt_state)
    if not all(np.isfinite(v).all() for v in params.values()):
        return EngineStatus(False, int(done), "non-finite parameters after the last step",
                            int(done) - 1, n - 1, start, dt, opt_state)
    return EngineStatus(True, int(done), "ok", seconds=dt, opt_state=opt_state)


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

    def params(arch):
        p = {"W1": rng.standard_normal((m, d)) * 0.1, "W2": rng.standard_normal(m) * 0.1}
        if arch != "nobias":
            p["b1"] = np.zeros(m)
        if arch == "sbn":
            p["gamma"] = np.ones(m)
        return p

    for arch in ARCHS:
        for algo, bs in (("sam1", 1), ("sgd", 2), ("gd", n), ("msam", 2)):
            run_epochs(params(arch), X, Y, orders, arch=arch, algo=algo, lr=1e-3, rho=0.1,
                       wd=1e-3, batch_size=bs, project_norm=1.0 if arch == "sln" else None)
    # the dense optimizer path: one kernel for every optimizer (the code is an argument)
    for arch in ("bias", "sbn"):
        run_epochs(params(arch), X, Y, orders, arch=arch, algo="sam1", lr=1e-3, rho=0.1,
                   wd=1e-3, optimizer="adam")
    return time.perf_counter() - t0
