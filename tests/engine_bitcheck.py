"""Bit-identity check of the numba engine across a refactor (a script, not a pytest module).

Runs a grid of configurations through ``sharpness_lib.engine.run_epochs`` -- every
architecture x algorithm (and batch size) x loss x base optimizer the engine covers, plus
weight decay, the projection, Sim-BN with and without the +-1 tables and non +-1 inputs,
a run split over several calls (optimizer state carried) and a diverging run -- and stores
every final parameter array and status field in an .npz.  ``compare`` re-runs the grid and
requires every array to be bitwise equal (``==``, with NaN payloads compared as bits).

numba's fastmath kernels can differ at rounding level between a freshly compiled kernel and
one loaded from the on-disk cache, so both runs must compile from scratch: the script points
``NUMBA_CACHE_DIR`` at a new empty directory unless ``--keep-cache`` is given.

    python tests/engine_bitcheck.py save /tmp/engine_before.npz     # old engine
    python tests/engine_bitcheck.py compare /tmp/engine_before.npz  # new engine
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time

if "--keep-cache" not in sys.argv:
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba_bitcheck_")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sharpness_lib import engine  # noqa: E402

ARCHS = ("nobias", "bias", "softplus", "sln", "sbn")
# (algo, batch size, epochs): 120-240 steps each
ALGOS = (
    ("sam1", 1, 8),
    ("sgd", 1, 8),
    ("sgd", 7, 40),
    ("msam", 1, 8),
    ("msam", 7, 40),
    ("gd", 24, 150),
)
LOSSES = (("mse", 0.0), ("logistic", 0.2))
OPTIMIZERS = (
    ("sgd", {}, 0.02),
    ("momentum", {}, 0.005),
    ("adam", {}, 1e-3),
    ("adagrad", {}, 0.01),
    ("adabound", {}, 1e-3),
    ("adashift", {"keep_num": 3}, 1e-3),
)
N, D, M = 24, 10, 20


def problem(arch, seed, pm=True):
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 1.0], size=(N, D))
    if not pm:
        X = X * rng.uniform(0.5, 1.5, size=X.shape)
    Y = np.sign(X[:, 0] * X[:, 1])
    p = {"W1": rng.standard_normal((M, D)) / np.sqrt(D)}
    if arch != "nobias":
        p["b1"] = rng.standard_normal(M) * 0.1
    p["W2"] = rng.standard_normal(M) / np.sqrt(M)
    if arch == "sbn":
        p["gamma"] = np.full(M, 0.4)
    orders = np.stack([rng.permutation(N) for _ in range(200)]).astype(np.int64)
    return X, Y, p, orders


def _run(params, X, Y, orders, pm_tables=True, **kw):
    """run_epochs with the +-1 tables switched on/off through whichever interface exists."""
    if "pm_tables" in inspect.signature(engine.run_epochs).parameters:
        return engine.run_epochs(params, X, Y, orders, pm_tables=pm_tables, **kw)
    old = engine._NO_PM
    engine._NO_PM = not pm_tables
    try:
        return engine.run_epochs(params, X, Y, orders, **kw)
    finally:
        engine._NO_PM = old


def configs():
    """(name, problem kwargs, list of call kwargs) for every run of the grid."""
    seed = 0
    for arch in ARCHS:
        for algo, bs, E in ALGOS:
            for loss, ls in LOSSES:
                for opt, oo, lr in OPTIMIZERS:
                    seed += 1
                    kw = dict(
                        arch=arch,
                        algo=algo,
                        lr=lr,
                        rho=0.1,
                        wd=0.01,
                        batch_size=bs,
                        loss=loss,
                        label_smoothing=ls,
                        optimizer=opt,
                        optimizer_options=oo,
                        epochs=E if algo == "gd" else None,
                    )
                    yield (
                        f"{arch}-{algo}{bs}-{loss}-{opt}",
                        dict(arch=arch, seed=seed),
                        [dict(kw, E=E)],
                    )
    # projection (Figure 6b), no weight decay, Sim-BN without tables / with general inputs
    for arch in ARCHS:
        for opt in ("sgd", "adam"):
            seed += 1
            kw = dict(
                arch=arch,
                algo="sam1",
                lr=0.02 if opt == "sgd" else 1e-3,
                rho=0.2,
                wd=0.0,
                project_norm=3.0,
                optimizer=opt,
            )
            yield f"{arch}-proj-{opt}", dict(arch=arch, seed=seed), [dict(kw, E=8)]
    for algo, bs, E in ALGOS:
        for opt in ("sgd", "momentum"):
            for pm_data, pm_tab in ((True, False), (False, True)):
                seed += 1
                kw = dict(
                    arch="sbn",
                    algo=algo,
                    lr=0.02 if opt == "sgd" else 0.005,
                    rho=0.1,
                    wd=0.01,
                    batch_size=bs,
                    optimizer=opt,
                    pm_tables=pm_tab,
                    epochs=E if algo == "gd" else None,
                )
                yield (
                    f"sbn-{algo}{bs}-{opt}-data{'pm' if pm_data else 'gen'}-tab{pm_tab}",
                    dict(arch="sbn", seed=seed, pm=pm_data),
                    [dict(kw, E=E)],
                )
    # one run split over 4 calls: optimizer state carried across calls
    for arch in ("bias", "sbn"):
        for opt in ("adam", "adashift", "sgd"):
            seed += 1
            kw = dict(
                arch=arch,
                algo="sam1",
                lr=1e-3 if opt != "sgd" else 0.02,
                rho=0.1,
                wd=0.01,
                optimizer=opt,
                optimizer_options={"keep_num": 3} if opt == "adashift" else None,
            )
            yield (
                f"{arch}-chunked-{opt}",
                dict(arch=arch, seed=seed),
                [dict(kw, E=2, start=2 * c) for c in range(4)],
            )
    # divergence
    for arch in ARCHS:
        for algo in ("sam1", "gd"):
            seed += 1
            kw = dict(
                arch=arch,
                algo=algo,
                lr=50.0,
                rho=0.1,
                epochs=50 if algo == "gd" else None,
            )
            yield f"{arch}-{algo}-diverge", dict(arch=arch, seed=seed), [dict(kw, E=50)]


def run_grid():
    out = {}
    for name, pk, calls in configs():
        X, Y, p, orders = problem(**pk)
        state = None
        for c, call in enumerate(calls):
            call = dict(call)
            E, start = call.pop("E"), call.pop("start", 0)
            if call.get("optimizer", "sgd") != "sgd" or len(calls) > 1:
                call["opt_state"] = state
            st = _run(p, X, Y, orders[start : start + E], **call)
            state = st.opt_state
            out[f"{name}/{c}/status"] = np.array(
                [
                    st.finite,
                    st.epochs_done,
                    -1 if st.fail_epoch is None else st.fail_epoch,
                    -1 if st.fail_step is None else st.fail_step,
                ],
                dtype=np.int64,
            )
            for k, v in p.items():
                out[f"{name}/{c}/{k}"] = v.copy()
            if st.opt_state is not None:
                out[f"{name}/{c}/opt_S"] = st.opt_state.S[:, : st.opt_state.size].copy()
                out[f"{name}/{c}/opt_t"] = st.opt_state.tstep.copy()
                out[f"{name}/{c}/opt_aux"] = st.opt_state.aux.copy()
            if st.start_params is not None:
                for k, v in st.start_params.items():
                    out[f"{name}/{c}/start_{k}"] = v.copy()
    return out


def _same_bits(a, b):
    """Bitwise equality (so NaNs of a diverged run compare equal when their bits do)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("save", "compare"))
    ap.add_argument("path")
    ap.add_argument(
        "--keep-cache",
        action="store_true",
        help="use the usual numba cache instead of a fresh empty one",
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = run_grid()
    runs = len({k.split("/")[0] for k in out})
    print(
        f"{runs} runs, {len(out)} arrays, {time.perf_counter() - t0:.0f} s "
        f"(NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR')})"
    )
    if args.mode == "save":
        np.savez(args.path, **out)
        print(f"saved {args.path}")
        return 0
    ref = np.load(args.path)
    missing = sorted(set(ref.files) ^ set(out))
    diff = [k for k in ref.files if k in out and not _same_bits(ref[k], out[k])]
    for k in missing[:20]:
        print(f"only in one run: {k}")
    for k in diff[:40]:
        a, b = ref[k], out[k]
        err = np.max(np.abs(a - b)) if a.shape == b.shape else "shape"
        print(f"DIFFERS: {k} max abs diff {err}")
    print(
        f"compared {len(ref.files)} arrays: {len(diff)} differ, {len(missing)} unmatched"
    )
    return 1 if diff or missing else 0


if __name__ == "__main__":
    sys.exit(main())
