"""What every engine kernel shares: the JIT options, the codes of the activations and losses,
and the per-sample forward/backward pieces (activations, dl/df, the output layer).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# activation codes shared by the kernels
_RELU, _SOFTPLUS, _SLN, _SBN = 0, 1, 2, 3
_ARCH_CODE = {
    "nobias": _RELU,
    "bias": _RELU,
    "softplus": _SOFTPLUS,
    "sln": _SLN,
    "sbn": _SBN,
}
# loss codes
_MSE, _LOGISTIC = 0, 1
_LOSS_CODE = {"mse": _MSE, "logistic": _LOGISTIC}

# Reassociation lets LLVM vectorise the O(m) reductions; no 'nnan'/'ninf' because the kernels
# must see non-finite losses to report divergence.
_FM = {"reassoc", "contract", "nsz"}
_JIT = dict(cache=True, nogil=True, fastmath=_FM, error_model="numpy")


# ----------------------------------------------------------------------------------------
# Activations (torch semantics: relu'(0) = 0; softplus beta=1 threshold=20)
# ----------------------------------------------------------------------------------------
_LOG2E = 1.4426950408889634
_LN2HI = (
    0.693147180369123816490  # Cody-Waite split of ln 2 (hi part has 32 trailing zeros)
)
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
    sp_neg = max(-t, 0.0) + math.log1p(
        math.exp(-abs(t))
    )  # softplus(-t) = -log sigma(t)
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
