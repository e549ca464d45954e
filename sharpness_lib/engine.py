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
statistic s_j couples all n points; see ``_sbn_batch_grad`` for how it is handled.

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
# Generic mini-batch path (GD, SGD, m-SAM; every arch incl. Sim-BN) -- BLAS via np.dot
# ----------------------------------------------------------------------------------------
@njit(**_JIT)
def _batch_grad(W1, b1, W2, gamma, X, Y, idx, act, has_bias, eps, gW1, gb1, gW2, ggam):
    """Mean over idx of (f(x_i) - y_i)^2 and its gradient (written into g*).

    For Sim-BN (act == _SBN) the statistic s_j = sqrt(mean_k relu(W1 X_k + b1)_j^2) runs over
    all rows of X and the gradient flows through it.
    """
    m, d = W1.shape
    B = idx.shape[0]
    n = X.shape[0]
    for j in range(m):
        gW2[j] = 0.0
        gb1[j] = 0.0
        ggam[j] = 0.0
    if act == _SBN:
        Z = np.dot(X, W1.T)  # (n, m), all training points for the statistic
        if has_bias:
            for k in range(n):
                for j in range(m):
                    Z[k, j] += b1[j]
        s = np.zeros(m)
        for k in range(n):
            for j in range(m):
                zk = Z[k, j]
                if zk > 0.0:
                    s[j] += zk * zk
        for j in range(m):
            s[j] = math.sqrt(s[j] / n)
        dH = np.zeros((n, m))
        ds = np.zeros(m)
        loss = 0.0
        for b in range(B):
            i = idx[b]
            f = 0.0
            for j in range(m):
                if s[j] > 0.0 and Z[i, j] > 0.0:
                    f += W2[j] * gamma[j] * Z[i, j] / s[j]
            r = f - Y[i]
            loss += r * r
            e = 2.0 * r / B
            for j in range(m):
                if s[j] > 0.0 and Z[i, j] > 0.0:
                    hs = Z[i, j] / s[j]
                    gW2[j] += e * gamma[j] * hs
                    ggam[j] += e * W2[j] * hs
                    u = e * W2[j] * gamma[j] / s[j]
                    dH[i, j] += u
                    ds[j] -= u * hs
        # s_j = sqrt(mean_k h_kj^2): d s_j / d h_kj = h_kj / (n s_j)
        for j in range(m):
            if s[j] > 0.0:
                ds[j] /= n * s[j]
        for k in range(n):
            for j in range(m):
                zk = Z[k, j]
                if zk > 0.0 and s[j] > 0.0:
                    dH[k, j] += ds[j] * zk
                else:
                    dH[k, j] = 0.0
        gW1[:, :] = np.dot(dH.T, X)
        if has_bias:
            for k in range(n):
                for j in range(m):
                    gb1[j] += dH[k, j]
        return loss / B
    Xb = np.empty((B, d))
    for b in range(B):
        Xb[b, :] = X[idx[b]]
    Z = np.dot(Xb, W1.T)  # (B, m)
    if has_bias:
        for b in range(B):
            for j in range(m):
                Z[b, j] += b1[j]
    a = np.empty(m)
    da = np.empty(m)
    g2 = np.empty(m)
    dz = np.empty(m)
    dZ = np.empty((B, m))
    bits = np.empty(m, dtype=np.int64)
    loss = 0.0
    for b in range(B):
        _act(Z[b], a, da, act, bits)
        r = _head(a, da, W2, Y[idx[b]], act, eps, g2, dz)
        loss += r * r
        for j in range(m):
            gW2[j] += g2[j] / B
            dZ[b, j] = dz[j] / B
            gb1[j] += dz[j] / B
    gW1[:, :] = np.dot(dZ.T, Xb)
    if not has_bias:
        for j in range(m):
            gb1[j] = 0.0
    return loss / B


@njit(**_JIT)
def _apply(P, G, lr, scale):
    for j in range(P.size):
        P.flat[j] = scale * P.flat[j] - lr * G.flat[j]


@njit(**_JIT)
def _project(W1, b1, proj):
    ss = 0.0
    for v in W1.flat:
        ss += v * v
    for v in b1:
        ss += v * v
    t = proj / math.sqrt(ss)
    for j in range(W1.size):
        W1.flat[j] *= t
    for j in range(b1.size):
        b1[j] *= t


@njit(**_JIT)
def _minibatch(W1, b1, W2, gamma, X, Y, orders, act, has_bias, has_gamma, lr, rho, wd, eps,
               proj, bsz, do_sam, full_batch, E, fail):
    """GD (full_batch), SGD or m-SAM (do_sam) with chunks of size bsz of every epoch order."""
    m, d = W1.shape
    n = X.shape[0]
    scale = 1.0 - lr * wd
    gW1 = np.empty((m, d))
    gb1 = np.empty(m)
    gW2 = np.empty(m)
    ggam = np.empty(m)
    pW1 = np.empty((m, d))
    pb1 = np.empty(m)
    pW2 = np.empty(m)
    pgam = np.empty(m)
    all_idx = np.arange(n)
    for ep in range(E):
        nchunks = 1 if full_batch else (n + bsz - 1) // bsz
        for c in range(nchunks):
            if full_batch:
                idx = all_idx
            else:
                idx = orders[ep, c * bsz:min(n, (c + 1) * bsz)]
            loss = _batch_grad(W1, b1, W2, gamma, X, Y, idx, act, has_bias, eps, gW1, gb1, gW2,
                               ggam)
            if not math.isfinite(loss):
                fail[0] = ep
                fail[1] = c
                return ep
            if do_sam:
                g2 = 0.0
                for v in gW1.flat:
                    g2 += v * v
                for j in range(m):
                    g2 += gW2[j] * gW2[j]
                    if has_bias:
                        g2 += gb1[j] * gb1[j]
                    if has_gamma:
                        g2 += ggam[j] * ggam[j]
                cc = rho / math.sqrt(g2) if g2 > 0.0 else 0.0
                for j in range(m):
                    pW2[j] = W2[j] + cc * gW2[j]
                    pb1[j] = b1[j] + cc * gb1[j]
                    pgam[j] = gamma[j] + cc * ggam[j]
                    for k in range(d):
                        pW1[j, k] = W1[j, k] + cc * gW1[j, k]
                loss = _batch_grad(pW1, pb1, pW2, pgam, X, Y, idx, act, has_bias, eps, gW1, gb1,
                                   gW2, ggam)
                if not math.isfinite(loss):
                    fail[0] = ep
                    fail[1] = c
                    return ep
            _apply(W1, gW1, lr, scale)
            _apply(W2, gW2, lr, scale)
            if has_bias:
                _apply(b1, gb1, lr, scale)
            if has_gamma:
                _apply(gamma, ggam, lr, scale)
            if proj > 0.0:
                _project(W1, b1, proj)
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
    if act != _SBN and (algo == "sam1" or (algo in ("msam", "sgd") and bsz == 1)):
        W1T = np.ascontiguousarray(W1.T)
        done = _sam1_fast(W1T, b1, W2, X, Y, orders_arr, act, has_bias, float(lr), float(rho),
                          float(wd), float(eps), proj, sam, fail)
        W1[...] = W1T.T
    else:
        if algo == "sam1":
            bsz = 1
        done = _minibatch(W1, b1, W2, gamma, X, Y, orders_arr, act, has_bias, has_gamma,
                          float(lr), float(rho), float(wd), float(eps), proj, bsz, sam,
                          algo == "gd", E, fail)
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
