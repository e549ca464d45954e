"""Base optimizers of the dense path: one update kernel per optimizer, their hyperparameters
and the state a caller keeps across ``run_epochs`` calls (``OptState``).

All parameters live in one flat vector P = [W1^T with b1 as last row (d', m), W2 (m),
gamma (m, Sim-BN only)]; ``segs`` holds the boundaries of the torch tensors W1, b1, W2, gamma
inside P (AdaShift reduces its second moment per tensor).  Each step of ``_dense.py`` computes
the dense gradient G of the chunk (at the perturbed point for SAM), then ``_opt_update``
applies the optimizer's update elementwise with its state S (K, len(P)) and step counter t.
Update rules: torch.optim.SGD / Adam / Adagrad (single-tensor code paths) and
``sharpness_lib.optimizers.AdaBound`` / ``AdaShift``; the hyperparameters and their defaults
come from ``sharpness_lib.optimizers.BASE_OPTIMIZERS`` (the one registry).  Weight decay wd
is the L2 term added to the gradient, at the unperturbed parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ..optimizers import BASE_OPTIMIZERS
from ._common import _JIT

_OPT_SGD, _OPT_ADAM, _OPT_ADAGRAD, _OPT_ADABOUND, _OPT_ADASHIFT = 0, 1, 2, 3, 4
# AdaShift's reduction of the second moment over a tensor
_REDUCE = {"max": 0, "mean": 1, "none": 2}

# The kernel of each registry optimizer ('sgd' and 'momentum' are both torch.optim.SGD).
_KIND = {
    "sgd": _OPT_SGD,
    "momentum": _OPT_SGD,
    "adam": _OPT_ADAM,
    "adagrad": _OPT_ADAGRAD,
    "adabound": _OPT_ADABOUND,
    "adashift": _OPT_ADASHIFT,
}
OPTIMIZERS = tuple(name for name in BASE_OPTIMIZERS if name in _KIND)


# ----------------------------------------------------------------------------------------
# One update kernel per base optimizer (inlined into the dispatcher ``_opt_update``).  Each
# takes the parameters P, the loss gradient G, the state rows S, the hyperparameters hp, lr,
# wd and the step number t (1 for the first step); P and S are updated in place.
# ----------------------------------------------------------------------------------------
@njit(inline="always", **_JIT)
def _update_sgd(P, G, S, hp, lr, wd, t):
    """torch.optim.SGD: heavy ball buf = mu buf + (1 - dampening) g (buf = g at t = 1),
    Nesterov optional; momentum 0 is plain SGD."""
    N = P.shape[0]
    mom, damp, nest = hp[0], hp[1], hp[2]
    buf = S[0]
    for i in range(N):
        g = G[i] + wd * P[i]
        if mom != 0.0:
            b = g if t == 1 else mom * buf[i] + (1.0 - damp) * g
            buf[i] = b
            g = g + mom * b if nest != 0.0 else b
        P[i] -= lr * g


@njit(inline="always", **_JIT)
def _update_adam(P, G, S, hp, lr, wd, t):
    """torch.optim.Adam: bias corrections, eps outside the sqrt, amsgrad optional."""
    N = P.shape[0]
    b1, b2, eps, ams = hp[0], hp[1], hp[2], hp[3]
    mbuf, vbuf, vmax = S[0], S[1], S[2]
    bc1 = 1.0 - b1**t
    bc2s = math.sqrt(1.0 - b2**t)
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


@njit(inline="always", **_JIT)
def _update_adagrad(P, G, S, hp, lr, wd, t):
    """torch.optim.Adagrad: lr / (1 + (t - 1) lr_decay), running sum of squared gradients."""
    N = P.shape[0]
    lr_decay, eps = hp[0], hp[2]
    ssum = S[0]
    clr = lr / (1.0 + (t - 1) * lr_decay)
    for i in range(N):
        g = G[i] + wd * P[i]
        si = ssum[i] + g * g
        ssum[i] = si
        P[i] -= clr * g / (math.sqrt(si) + eps)


@njit(inline="always", **_JIT)
def _update_adabound(P, G, S, hp, lr, wd, t):
    """``sharpness_lib.optimizers.AdaBound``: the step size clamped to bounds that scale with
    lr / base_lr (hp[6] = base_lr), amsbound optional."""
    N = P.shape[0]
    b1, b2, final_lr, gamma, eps, ams, base_lr = (
        hp[0],
        hp[1],
        hp[2],
        hp[3],
        hp[4],
        hp[5],
        hp[6],
    )
    mbuf, vbuf, vmax = S[0], S[1], S[2]
    step = lr * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
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


@njit(inline="always", **_JIT)
def _adashift_second_moment(S, segs, nk, red, b2, old):
    """AdaShift: v = b2 v + (1 - b2) phi(old^2) per tensor of ``segs`` (phi = max, mean or
    per coordinate) and the bias-correction counts k (rows nk, nk + 1 of S)."""
    vv, kk = S[nk], S[nk + 1]
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


@njit(inline="always", **_JIT)
def _update_adashift(P, G, S, segs, hp, lr, wd, aux):
    """``sharpness_lib.optimizers.AdaShift``: a ring buffer of the last keep_num gradients
    (S rows 0..nk-1; ``aux`` = queue count and head), no update while it fills; then v from
    the oldest gradient, m = sum_i w_i q_i (oldest first, w_i = b1^(nk-1-i) / sum_j b1^j)."""
    N = P.shape[0]
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
    _adashift_second_moment(S, segs, nk, red, b2, old)
    for i in range(N):
        old[i] = G[i] + wd * P[i]
    head = (head + 1) % nk
    aux[1] = head
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
            bc = 1.0 - b2**k if k > 0.0 else 1.0
            kprev = k
        bcs[i] = bc
    for i in range(N):
        u = mm[i] / (math.sqrt(vv[i] / bcs[i]) + eps) * lr
        P[i] -= u if kk[i] > 0.0 else 0.0


@njit(**_JIT)
def _opt_update(P, G, S, segs, kind, hp, lr, wd, t, aux):
    """One step of the optimizer ``kind`` on P with loss gradient G (see the update kernels
    above); t = the step number, ``aux`` (int64): AdaShift's queue count and head."""
    if kind == _OPT_SGD:
        _update_sgd(P, G, S, hp, lr, wd, t)
    elif kind == _OPT_ADAM:
        _update_adam(P, G, S, hp, lr, wd, t)
    elif kind == _OPT_ADAGRAD:
        _update_adagrad(P, G, S, hp, lr, wd, t)
    elif kind == _OPT_ADABOUND:
        _update_adabound(P, G, S, hp, lr, wd, t)
    else:
        _update_adashift(P, G, S, segs, hp, lr, wd, aux)


# ----------------------------------------------------------------------------------------
# Hyperparameters and state (Python side)
# ----------------------------------------------------------------------------------------
def _defaults(optimizer):
    return dict(BASE_OPTIMIZERS[optimizer].hyper)


def _opt_hparams(optimizer, options):
    """(kind, hp array, number of state rows) for ``optimizer`` with ``options`` (dict of
    hyperparameters overriding the registry's defaults); ValueError on unknown names or
    values."""
    kind, defaults = _KIND[optimizer], _defaults(optimizer)
    options = dict(options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(
            f"{unknown[0]!r} is not a hyperparameter of optimizer {optimizer!r}; "
            f"valid: {', '.join(defaults)}."
        )
    o = {**defaults, **options}
    if kind == _OPT_SGD:
        return (
            kind,
            np.array([o["momentum"], o["dampening"], float(bool(o["nesterov"]))]),
            1,
        )
    if kind == _OPT_ADAM:
        b1, b2 = o["betas"]
        return kind, np.array([b1, b2, o["eps"], float(bool(o["amsgrad"]))]), 3
    if kind == _OPT_ADAGRAD:
        return (
            kind,
            np.array([o["lr_decay"], o["initial_accumulator_value"], o["eps"]]),
            1,
        )
    if kind == _OPT_ADABOUND:
        b1, b2 = o["betas"]
        return (
            kind,
            np.array(
                [
                    b1,
                    b2,
                    o["final_lr"],
                    o["gamma"],
                    o["eps"],
                    float(bool(o["amsbound"])),
                    0.0,
                ]
            ),
            3,
        )
    b1, b2 = o["betas"]
    if o["reduce"] not in _REDUCE:
        raise ValueError(
            f"reduce must be one of {', '.join(_REDUCE)}; got {o['reduce']!r}."
        )
    keep = int(o["keep_num"])
    if keep < 1:
        raise ValueError(f"keep_num must be >= 1; got {o['keep_num']!r}.")
    return kind, np.array([b1, b2, o["eps"], float(_REDUCE[o["reduce"]])]), keep + 4


def _plain_sgd(optimizer, options):
    """True if the update is theta <- theta - lr (g + wd theta) (the fast kernels)."""
    if optimizer != "sgd" and optimizer != "momentum":
        return False
    return float({**_defaults(optimizer), **(options or {})}["momentum"]) == 0.0


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
    return buf[skip : skip + n]


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
    NPs += (40 - NPs) % 512
    S = _aligned(K * NPs, 0).reshape(K, NPs)  # row r, entries [0, NP) used
    S[...] = 0.0
    if kind == _OPT_ADAGRAD:
        S[0] = hp[1]  # initial_accumulator_value
    if kind == _OPT_ADABOUND:
        hp[6] = float(base_lr) if base_lr is not None else math.nan
    return OptState(optimizer, (arch, m, d), kind, hp, S, NP)
