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
    optimizer steps taken so far."""
    n = Xp.shape[0]
    Xp4 = _pad4(Xp)
    NP = P.shape[0]
    ones = np.ones(m)
    ws = _workspace(dp, m, n, act)
    sw = _sbn_workspace(Xp, m, act, pm)
    nW = dp * m
    WT = P[:nW].reshape((dp, m))
    W2 = P[nW : nW + m]
    gam = P[nW + m : nW + 2 * m] if has_gamma else ones
    gWT = G[:nW].reshape((dp, m))
    gW2 = G[nW : nW + m]
    ggam = G[nW + m : nW + 2 * m] if has_gamma else np.empty(m)
    pWT = PP[:nW].reshape((dp, m))
    pW2 = PP[nW : nW + m]
    pgam = PP[nW + m : nW + 2 * m] if has_gamma else ones
    all_idx = np.arange(n)
    for ep in range(E):
        nchunks = 1 if full_batch else (n + bsz - 1) // bsz
        for c in range(nchunks):
            if full_batch:
                idx = all_idx
            else:
                idx = orders[ep, c * bsz : min(n, (c + 1) * bsz)]
            loss = _batch_grad(
                WT,
                W2,
                gam,
                Xp,
                Xp4,
                Y,
                idx,
                act,
                eps,
                lossc,
                ls,
                gWT,
                gW2,
                ggam,
                ws,
                sw,
            )
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
                loss = _batch_grad(
                    pWT,
                    pW2,
                    pgam,
                    Xp,
                    Xp4,
                    Y,
                    idx,
                    act,
                    eps,
                    lossc,
                    ls,
                    gWT,
                    gW2,
                    ggam,
                    ws,
                    sw,
                )
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
