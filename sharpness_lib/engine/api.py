"""The engine's Python entry points: ``supports``, ``run_epochs``, ``run_many``, ``warmup``
(semantics in the package docstring of ``sharpness_lib.engine``).

``run_epochs`` checks and packs the arguments, then hands them to one of three kernels:
``_rank1._sam1_fast`` (1-SAM / SGD with batch size 1, plain SGD, every arch but Sim-BN),
``_simbn._sbn_sam1`` (the same on Sim-BN) or ``_dense._dense`` (mini-batches, full batch and
every base optimizer with state).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numba
import numpy as np

from .. import _validation
from ._common import _ARCH_CODE, _LOSS_CODE, _SBN
from ._dense import _dense
from ._optimizers import (
    _KIND,
    _OPT_ADABOUND,
    _OPT_SGD,
    OPTIMIZERS,
    OptState,
    _aligned,
    _opt_hparams,
    _plain_sgd,
    new_opt_state,
)
from ._rank1 import _sam1_fast
from ._simbn import _sbn_sam1

# The names come from ``sharpness_lib._validation`` (one source); the engine covers the
# 2-layer architectures that have an activation code, every algorithm and every loss.
ARCHS = tuple(a for a in _validation.ARCHS if a in _ARCH_CODE)
ALGOS = _validation.ALGOS
LOSSES = _validation.LOSSES
assert set(_LOSS_CODE) == set(LOSSES), "every loss of _validation needs a kernel code"


@dataclass
class EngineStatus:
    """Outcome of one ``run_epochs`` call."""

    finite: bool
    epochs_done: int
    message: str = ""
    fail_epoch: int | None = (
        None  # epoch index inside the call where divergence was seen
    )
    fail_step: int | None = None  # step index inside that epoch (sample or chunk index)
    start_params: dict | None = field(
        default=None, repr=False
    )  # copy at call start, on failure
    seconds: float = 0.0
    opt_state: OptState | None = field(
        default=None, repr=False
    )  # dense path: pass it back


def supports(
    arch: str,
    algo: str,
    loss: str = "mse",
    optimizer: str = "sgd",
    options: dict | None = None,
) -> bool:
    """True if the engine implements this combination: every arch of ``ARCHS`` and algo of
    ``ALGOS`` with the squared or logistic loss and a base optimizer of ``OPTIMIZERS``
    (``options``: its hyperparameters, see ``sharpness_lib.optimizers``)."""
    if arch not in ARCHS or algo not in ALGOS or loss not in LOSSES:
        return False
    if optimizer not in _KIND:
        return False
    try:
        _opt_hparams(optimizer, options)
    except (ValueError, TypeError, KeyError):
        return False
    return True


def _check_array(name, a, shape):
    if (
        not isinstance(a, np.ndarray)
        or a.dtype != np.float64
        or not a.flags.c_contiguous
    ):
        raise TypeError(f"params[{name!r}] must be a C-contiguous float64 ndarray")
    if a.shape != shape:
        raise ValueError(f"params[{name!r}] has shape {a.shape}, expected {shape}")


def _check_params(params, arch, d):
    """(W1, b1, W2, gamma) of ``params`` after the shape/dtype checks (b1 zeros for 'nobias',
    gamma ones except for 'sbn')."""
    W1 = params["W1"]
    m = W1.shape[0]
    _check_array("W1", W1, (m, d))
    _check_array("W2", params["W2"], (m,))
    if arch != "nobias":
        _check_array("b1", params["b1"], (m,))
    if arch == "sbn":
        _check_array("gamma", params["gamma"], (m,))
    b1 = params["b1"] if arch != "nobias" else np.zeros(m)
    gamma = params["gamma"] if arch == "sbn" else np.ones(m)
    return W1, b1, params["W2"], gamma


def _epoch_orders(orders, algo, epochs, n):
    """(orders as int64 (E, n), E); for 'gd' a dummy array the kernel does not read."""
    if algo == "gd":
        E = int(epochs) if epochs is not None else len(orders)
        return np.zeros((E, n), dtype=np.int64), E
    orders_arr = np.ascontiguousarray(orders, dtype=np.int64)
    if orders_arr.ndim != 2 or orders_arr.shape[1] != n:
        raise ValueError(
            f"orders must have shape (epochs, {n}), got {orders_arr.shape}"
        )
    if orders_arr.size and (orders_arr.min() < 0 or orders_arr.max() >= n):
        raise ValueError("orders contains indices outside [0, n)")
    return orders_arr, orders_arr.shape[0]


def _dense_state(params, arch, signature, optimizer, options, opt_state, lr):
    """(kind, hp, S, tstep, aux, opt_state) for the dense kernel: no state for plain SGD, else
    ``opt_state`` (checked against this run) or a fresh one."""
    if _plain_sgd(optimizer, options):  # theta <- theta - lr (g + wd theta): no state
        return (
            _OPT_SGD,
            np.zeros(3),
            np.zeros((1, 1)),
            np.zeros(1, dtype=np.int64),
            np.zeros(2, np.int64),
            None,
        )
    if opt_state is None:
        opt_state = new_opt_state(
            params, arch=arch, optimizer=optimizer, options=options, base_lr=lr
        )
    elif opt_state.optimizer != optimizer or opt_state.signature != signature:
        raise ValueError(
            f"opt_state belongs to optimizer {opt_state.optimizer!r} with "
            f"(arch, width, d) = {opt_state.signature}, not "
            f"{optimizer!r} / {signature}"
        )
    if opt_state.kind == _OPT_ADABOUND and math.isnan(opt_state.hp[6]):
        opt_state.hp[6] = float(lr)
    return (
        opt_state.kind,
        opt_state.hp,
        opt_state.S,
        opt_state.tstep,
        opt_state.aux,
        opt_state,
    )


def _run_dense(a, W1, b1, W2, gamma, kind, hp, S, tstep, aux):
    """Pack the flat P = [W1^T (+ b1 as last row), W2, gamma], run ``_dense``, unpack."""
    d, m, dp = a["d"], a["m"], a["dp"]
    has_bias, has_gamma = a["arch"] != "nobias", a["arch"] == "sbn"
    nW = dp * m
    NP = nW + m + (m if has_gamma else 0)
    P, G, PP = _aligned(NP, 2112), _aligned(NP, 2432), _aligned(NP, 2752)
    G[:] = 0.0
    P[: d * m] = W1.T.ravel()
    if has_bias:
        P[d * m : nW] = b1
    P[nW : nW + m] = W2
    if has_gamma:
        P[nW + m :] = gamma
    segs = np.array([0, d * m, nW, nW + m, P.shape[0]], dtype=np.int64)
    done = _dense(
        P,
        G,
        PP,
        dp,
        m,
        has_gamma,
        a["Xp"],
        a["Y"],
        a["orders"],
        a["act"],
        a["lr"],
        a["rho"],
        a["wd"],
        a["eps"],
        a["proj"],
        a["bsz"],
        a["sam"],
        a["algo"] == "gd",
        a["E"],
        a["lossc"],
        a["ls"],
        a["pm"],
        kind,
        hp,
        S,
        segs,
        tstep,
        aux,
        a["fail"],
    )
    W1[...] = P[: d * m].reshape(d, m).T
    if has_bias:
        b1[...] = P[d * m : nW]
    W2[...] = P[nW : nW + m]
    if has_gamma:
        gamma[...] = P[nW + m :]
    return done


def _run_rank1(a, W1, b1, W2):
    """1-SAM / SGD with batch size 1 and plain SGD on a non-Sim-BN arch (W1 transposed)."""
    W1T = np.ascontiguousarray(W1.T)
    done = _sam1_fast(
        W1T,
        b1,
        W2,
        a["X"],
        a["Y"],
        a["orders"],
        a["act"],
        a["arch"] != "nobias",
        a["lr"],
        a["rho"],
        a["wd"],
        a["eps"],
        a["proj"],
        a["sam"],
        a["lossc"],
        a["ls"],
        a["fail"],
    )
    W1[...] = W1T.T
    return done


def _run_sbn(a, W1, b1, W2, gamma):
    """Sim-BN with batch size 1 and plain SGD: augmented first layer (b1 as the last row)."""
    d, m = a["d"], a["m"]
    WT = np.empty((a["dp"], m))
    WT[:d] = W1.T
    WT[d] = b1
    done = _sbn_sam1(
        WT,
        W2,
        gamma,
        a["Xp"],
        a["Y"],
        a["orders"],
        a["lr"],
        a["rho"],
        a["wd"],
        a["proj"],
        a["sam"],
        a["lossc"],
        a["ls"],
        a["pm"],
        a["fail"],
    )
    W1[...] = WT[:d].T
    b1[...] = WT[d]
    return done


def _kernel_args(params, X, Y, orders, *, arch, algo, epochs, batch_size, pm_tables):
    """(a, (W1, b1, W2, gamma)): the checked data, orders, sizes and codes the kernels take,
    in the dict ``a`` that the ``_run_*`` packers read (``run_epochs`` adds the scalars)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    n, d = X.shape
    W1, b1, W2, gamma = _check_params(params, arch, d)
    orders_arr, E = _epoch_orders(orders, algo, epochs, n)
    dp = d + 1 if arch != "nobias" else d
    Xp = np.ones((n, dp))
    Xp[:, :d] = X
    act = _ARCH_CODE[arch]
    a = dict(
        arch=arch,
        algo=algo,
        X=X,
        Y=Y,
        Xp=Xp,
        orders=orders_arr,
        E=E,
        n=n,
        d=d,
        m=W1.shape[0],
        dp=dp,
        act=act,
        bsz=max(1, int(batch_size)),
        fail=np.full(2, -1, dtype=np.int64),
        # Sim-BN with +-1 inputs: statistics from tables of sign patterns (``_pm_tables``)
        pm=act == _SBN and bool(pm_tables) and bool(np.all(np.abs(Xp) == 1.0)),
    )
    return a, (W1, b1, W2, gamma)


def run_epochs(
    params,
    X,
    Y,
    orders,
    *,
    arch,
    algo,
    lr,
    rho=0.0,
    wd=0.0,
    batch_size=1,
    eps=1e-6,
    project_norm=None,
    epochs=None,
    loss="mse",
    label_smoothing=0.0,
    optimizer="sgd",
    optimizer_options=None,
    opt_state=None,
    pm_tables=True,
) -> EngineStatus:
    """Run ``len(orders)`` epochs (or ``epochs`` for 'gd') of ``algo`` on ``arch`` in place.

    See the package docstring for the exact semantics.  ``pm_tables=False`` makes Sim-BN use
    its dense statistics even for +-1 inputs (tests and benchmarks compare the two).  Cheap to
    call repeatedly (a few microseconds plus one transposed copy of W1 per call).
    """
    if not supports(arch, algo, loss, optimizer, optimizer_options):
        raise ValueError(
            f"engine does not support arch={arch!r} algo={algo!r} loss={loss!r} "
            f"optimizer={optimizer!r} options={optimizer_options!r}"
        )
    t0 = time.perf_counter()
    a, arrays = _kernel_args(
        params,
        X,
        Y,
        orders,
        arch=arch,
        algo=algo,
        epochs=epochs,
        batch_size=batch_size,
        pm_tables=pm_tables,
    )
    a.update(
        lr=float(lr),
        rho=float(rho),
        wd=float(wd),
        eps=float(eps),
        proj=float(project_norm) if project_norm is not None else -1.0,
        sam=algo in ("sam1", "msam"),
        lossc=_LOSS_CODE[loss],
        ls=float(label_smoothing),
    )
    start = {k: np.array(v, copy=True) for k, v in params.items()}
    done, opt_state = _run_kernel(
        a, params, arrays, optimizer, optimizer_options, opt_state
    )
    dt = time.perf_counter() - t0
    return _status(params, a["fail"], done, a["n"], start, dt, opt_state)


def _run_kernel(a, params, arrays, optimizer, options, opt_state):
    """Run the kernel that covers this call (module docstring); returns (epochs done, the
    optimizer state to hand back)."""
    W1, b1, W2, gamma = arrays
    per_sample = a["algo"] == "sam1" or (a["algo"] in ("msam", "sgd") and a["bsz"] == 1)
    if not _plain_sgd(optimizer, options) or not per_sample:
        # dense path (mini-batch / full-batch SGD, m-SAM, and every optimizer with state)
        arch = a["arch"]
        kind, hp, S, tstep, aux, opt_state = _dense_state(
            params, arch, (arch, a["m"], a["d"]), optimizer, options, opt_state, a["lr"]
        )
        return _run_dense(a, W1, b1, W2, gamma, kind, hp, S, tstep, aux), opt_state
    if a["act"] != _SBN:
        return _run_rank1(a, W1, b1, W2), opt_state
    return _run_sbn(a, W1, b1, W2, gamma), opt_state


def _status(params, fail, done, n, start, dt, opt_state):
    if fail[0] >= 0:
        return EngineStatus(
            False,
            int(done),
            f"non-finite loss at epoch {int(fail[0])} "
            f"(of this call), step {int(fail[1])}",
            int(fail[0]),
            int(fail[1]),
            start,
            dt,
            opt_state,
        )
    if not all(np.isfinite(v).all() for v in params.values()):
        return EngineStatus(
            False,
            int(done),
            "non-finite parameters after the last step",
            int(done) - 1,
            n - 1,
            start,
            dt,
            opt_state,
        )
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
        p = {
            "W1": rng.standard_normal((m, d)) * 0.1,
            "W2": rng.standard_normal(m) * 0.1,
        }
        if arch != "nobias":
            p["b1"] = np.zeros(m)
        if arch == "sbn":
            p["gamma"] = np.ones(m)
        return p

    for arch in ARCHS:
        for algo, bs in (("sam1", 1), ("sgd", 2), ("gd", n), ("msam", 2)):
            run_epochs(
                params(arch),
                X,
                Y,
                orders,
                arch=arch,
                algo=algo,
                lr=1e-3,
                rho=0.1,
                wd=1e-3,
                batch_size=bs,
                project_norm=1.0 if arch == "sln" else None,
            )
    # the dense optimizer path: one kernel for every optimizer (the code is an argument)
    for arch in ("bias", "sbn"):
        run_epochs(
            params(arch),
            X,
            Y,
            orders,
            arch=arch,
            algo="sam1",
            lr=1e-3,
            rho=0.1,
            wd=1e-3,
            optimizer="adam",
        )
    return time.perf_counter() - t0


__all__ = [
    "ARCHS",
    "ALGOS",
    "LOSSES",
    "OPTIMIZERS",
    "EngineStatus",
    "OptState",
    "supports",
    "new_opt_state",
    "run_epochs",
    "run_many",
    "warmup",
]
