"""Sweeps: grid expansion, tidy records, failures, interruption; loky and a local Dask cluster."""

import importlib.util

import pytest

from sharpness_lib.sweep import SweepResult, demo_train_fn, expand_grid, run_sweep

BASE = {"arch": "bias", "algo": "sam1", "epochs": 100, "log_points": 3}
GRID = {"rho": [0.0, 0.05, 0.1], "seed": [0, 1]}


def _check_tidy(res: SweepResult, n_configs, log_points=3):
    assert len(res.finished) == n_configs
    assert len(res.records) == n_configs * log_points
    for row in res.records:
        assert {"config_id", "arch", "rho", "seed", "epoch", "train_loss"} <= set(row)
    pts = sorted((r["rho"], r["seed"]) for r in res.finished)
    assert pts == sorted((r, s) for r in GRID["rho"] for s in GRID["seed"])
    for r in res.finished:
        assert r["test_error"] == pytest.approx(0.5 * r["rho"])
        assert "history" not in r


def test_expand_grid_order_and_base():
    cfgs = expand_grid({"a": 1, "rho": 9}, {"rho": [0.1, 0.2], "seed": [0, 1, 2]})
    assert len(cfgs) == 6
    assert cfgs[0] == {"a": 1, "rho": 0.1, "seed": 0}
    assert cfgs[-1] == {"a": 1, "rho": 0.2, "seed": 2}
    with pytest.raises(TypeError):
        expand_grid({}, {"rho": 0.1})


def test_expand_grid_takes_explicit_points():
    cfgs = expand_grid(
        {"a": 1, "lr": 0.1}, [{"opt": "adam", "lr": 1e-3}, {"opt": "sgd"}]
    )
    assert cfgs == [
        {"a": 1, "lr": 1e-3, "opt": "adam"},
        {"a": 1, "lr": 0.1, "opt": "sgd"},
    ]
    with pytest.raises(TypeError, match="dicts"):
        expand_grid({}, [("opt", "adam")])


def test_sequential_tidy_records():
    res = run_sweep(
        BASE, GRID, train_fn=demo_train_fn, backend="sequential", progress=False
    )
    _check_tidy(res, 6)
    assert not res.failed and not res.interrupted


def test_loky_two_workers_with_failures():
    grid = {**GRID, "fail": [False, True]}
    res = run_sweep(
        BASE, grid, train_fn=demo_train_fn, n_jobs=2, backend="loky", progress=False
    )
    assert len(res.finished) == 6 and len(res.failed) == 6
    for cfg, msg in res.failed:
        assert (
            cfg["fail"] is True and "RuntimeError" in msg and "requested failure" in msg
        )
    assert all(not r["fail"] for r in res.finished)


def test_interrupt_keeps_finished_results():
    seen = []

    def stop_after_two(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt

    res = run_sweep(
        BASE,
        GRID,
        train_fn=demo_train_fn,
        backend="sequential",
        progress=False,
        on_result=stop_after_two,
    )
    assert res.interrupted
    assert len(res.finished) == 2 and len(res.records) == 6
    assert len(res.failed) == 4 and all("interrupted" in m for _, m in res.failed)


def test_interrupt_loky():
    seen = []

    def stop(row):
        seen.append(row)
        raise KeyboardInterrupt

    res = run_sweep(
        {**BASE, "sleep": 0.2},
        GRID,
        train_fn=demo_train_fn,
        n_jobs=2,
        backend="loky",
        progress=False,
        on_result=stop,
    )
    assert res.interrupted and len(res.finished) == 1
    assert len(res.finished) + len(res.failed) == 6


def test_progress_bar_runs(capsys):
    res = run_sweep(
        BASE,
        {"rho": [0.1]},
        train_fn=demo_train_fn,
        backend="sequential",
        progress=True,
    )
    assert len(res.finished) == 1


def test_to_pandas_optional():
    res = run_sweep(
        BASE,
        {"rho": [0.1]},
        train_fn=demo_train_fn,
        backend="sequential",
        progress=False,
    )
    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(ImportError):
            res.to_pandas()
    else:
        assert len(res.to_pandas()) == 3


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_local_cluster(dask_client):
    grid = {**GRID, "fail": [False, True]}
    res = run_sweep(
        BASE,
        grid,
        train_fn=demo_train_fn,
        backend="dask",
        client=dask_client,
        progress=False,
    )
    assert len(res.finished) == 6 and len(res.failed) == 6
    _check_tidy(SweepResult(res.records, res.finished), 6)
    # both workers took part
    workers = dask_client.run(lambda: 1)
    assert len(workers) == 2


def test_dask_engine_runs_on_workers(dask_client):
    """The numba engine itself runs inside Dask worker processes (imports, cache, nogil)."""
    res = run_sweep(
        {"epochs": 2},
        {"seed": [0, 1, 2, 3]},
        train_fn=_engine_train_fn,
        backend="dask",
        client=dask_client,
        progress=False,
    )
    assert not res.failed, res.failed
    assert len(res.finished) == 4 and all(r["status"] == "ok" for r in res.finished)


def _engine_train_fn(config):
    import numpy as np

    from sharpness_lib import engine

    rng = np.random.default_rng(config["seed"])
    n, d, m = 40, 10, 16
    X = rng.choice([-1.0, 1.0], size=(n, d))
    Y = X[:, 0] * X[:, 1]
    p = {
        "W1": rng.standard_normal((m, d)) / 3,
        "b1": np.zeros(m),
        "W2": rng.standard_normal(m) / 4,
    }
    orders = np.stack([rng.permutation(n) for _ in range(config["epochs"])])
    st = engine.run_epochs(p, X, Y, orders, arch="bias", algo="sam1", lr=0.01, rho=0.05)
    loss = float(np.mean(((np.maximum(X @ p["W1"].T + p["b1"], 0) @ p["W2"]) - Y) ** 2))
    return {
        "train_loss": loss,
        "status": "ok" if st.finite else "diverged",
        "message": st.message,
        "history": {"epoch": [config["epochs"]], "train_loss": [loss]},
    }


@pytest.mark.skipif(
    importlib.util.find_spec("sharpness_lib.training") is None,
    reason="sharpness_lib.training not available",
)
@pytest.mark.parametrize("backend", ["sequential", "loky"])
def test_real_run_config_tiny(backend):
    """The default train_fn (training.run_config) with tiny configs, incl. a failing one."""
    base = dict(
        arch="bias",
        algo="sam1",
        d=10,
        n=20,
        width=8,
        lr=0.01,
        epochs=4,
        log_every=2,
        test_samples=200,
    )
    res = run_sweep(
        base,
        {"rho": [0.0, 0.1], "seed": [0], "width": [8, -1]},
        n_jobs=2,
        backend=backend,
        progress=False,
    )
    assert len(res.finished) == 2 and len(res.failed) == 2
    assert all("width" in msg for _, msg in res.failed)
    assert len(res.records) == 2 * 3  # epochs 0, 2, 4
    for row in res.records:
        assert {
            "config_id",
            "rho",
            "width",
            "epoch",
            "train_loss",
            "test_error",
            "hessian_trace",
        } <= set(row)
    assert all(r["status"] == "completed" for r in res.finished)
