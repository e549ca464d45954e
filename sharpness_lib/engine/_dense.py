"""The dense path: GD / SGD / 1-SAM / m-SAM with any base optimizer on the flat parameter
vector P (layout: ``_optimizers``), one dense chunk gradient per step (``_batch``)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._batch import _batch_grad, _sbn_workspace, _workspace
from ._common import _JIT
from ._optimizers import _opt_update
from ._simbn_stats import _pad4


@njit(inline="always", **_JIT)
def _flat_views(P, dp, m, has_gamma, no_gamma):
    """(W1^T with b1 as last row (d', m), W2, gamma) as views of the flat vector P (layout:
    ``_optimizers``); ``no_gamma`` stands in for gamma on the archs without one."""
    nW = dp * m
    gam = P[nW + m : nW + 2 * m] if has_gamma else no_gamma
    return P[:nW].reshape((dp, m)), P[nW : nW + m], gam


@njit(inline="always", **_JIT)
def _ascend(P, G, PP, rho):
    """The SAM ascent step PP = P + rho G / ||G|| (PP = P if G = 0)."""
    NP = P.shape[0]
    g2 = 0.0
    for i in range(NP):
        g2 += G[i] * G[i]
    cc = rho / math.sqrt(g2) if g2 > 0.0 else 0.0
    for i in range(NP):
        PP[i] = P[i] + cc * G[i]


@njit(inline="always", **_JIT)
def _project_first_layer(P, nW, proj):
    """Rescale the first nW entries of P (W1 and b1) to norm ``proj`` (Figure 6b)."""
    ss = 0.0
    for i in range(nW):
        ss += P[i] * P[i]
    tf = proj / math.sqrt(ss)
    for i in range(nW):
        P[i] *= tf


@njit(**_JIT)
def _dense(
    P,
    G,
    PP,
    dp,
    m,
    has_gamma,
    Xp,
    Y,
    orders,
    act,
    lr,
    rho,
    wd,
    eps,
    proj,
    bsz,
    do_sam,
    full_batch,
    E,
    lossc,
    ls,
    pm,
    kind,
    hp,
    S,
    segs,
    tstep,
    aux,
    fail,
):
    """GD / SGD / 1-SAM / m-SAM with a base optimizer on the flat parameter vector P (see
    above); G, PP: gradient and perturbed-point workspaces like P; tstep[0] is the number of
    optimizer steps taken so far.  fail[0], fail[1] <- epoch, chunk of a non-finite loss;
    returns the epochs completed."""
    n = Xp.shape[0]
    Xp4 = _pad4(Xp)
    ws = _workspace(dp, m, n, act)
    sw = _sbn_workspace(Xp, m, act, pm)
    ones = np.ones(m)  # gamma of the archs without one
    th = _flat_views(P, dp, m, has_gamma, ones)
    grad = _flat_views(G, dp, m, has_gamma, np.empty(m))
    pth = _flat_views(PP, dp, m, has_gamma, ones)
    all_idx = np.arange(n)
    for ep in range(E):
        nchunks = 1 if full_batch else (n + bsz - 1) // bsz
        for c in range(nchunks):
            if full_batch:
                idx = all_idx
            else:
                idx = orders[ep, c * bsz : min(n, (c + 1) * bsz)]
            loss = _batch_grad(th, Xp, Xp4, Y, idx, act, eps, lossc, ls, grad, ws, sw)
            if do_sam and math.isfinite(loss):
                _ascend(P, G, PP, rho)
                loss = _batch_grad(
                    pth, Xp, Xp4, Y, idx, act, eps, lossc, ls, grad, ws, sw
                )
            if not math.isfinite(loss):
                fail[0], fail[1] = ep, c
                return ep
            tstep[0] += 1
            _opt_update(P, G, S, segs, kind, hp, lr, wd, tstep[0], aux)
            if proj > 0.0:
                _project_first_layer(P, dp * m, proj)
    return E
