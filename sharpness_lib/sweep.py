"""Grid sweeps over training configurations (arch x algo x rho x seed x width ...).

The paper's figures compare 1-SAM and GD(+WD) across architectures (2-MLP-No-Bias, 2-MLP-Bias,
2-MLP-Sim-BN, 2-MLP-Sim-LN, softplus) and hyperparameters; each run is independent, so a sweep
is embarrassingly parallel.  ``run_sweep`` expands a grid, runs one ``train_fn(config)`` per
point and returns a tidy table:

* locally on all cores with joblib's loky backend (``backend="loky"``, default),
* on a Dask cluster (``backend="dask"``: uses ``client`` or the current default client),
* in-process (``backend="sequential"``), handy for debugging.

A ``train_fn`` takes a JSON-able config dict and returns a dict with (at least) ``history``
(dict of equal-length lists, or list of dicts: one entry per log point) and final metrics such
as ``train_loss``, ``test_error``, ``hessian_trace``, ``status``, ``message``.  The default is
``sharpness_lib.training.run_config``.

Robustness: an exception in one config is caught inside the worker and lands in
``SweepResult.failed`` with its traceback; Ctrl-C (KeyboardInterrupt) stops the sweep, cancels
what is still pending and returns everything finished so far with ``interrupted=True``.
A worker process that dies (an out-of-memory kill, a segfault) takes loky's whole pool down;
the sweep then starts a new pool for the configs that had not started, and reruns the ones
that were running at the time one at a time, so only the config that kills its worker on its
own is reported failed (:func:`_run_loky`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

__all__ = ["SweepResult", "expand_grid", "run_sweep", "demo_train_fn"]

BACKENDS = ("loky", "dask", "sequential")

_FINAL_KEYS = ("train_loss", "test_error", "hessian_trace", "status", "message")


@dataclass
class SweepResult:
    """Outcome of ``run_sweep``.

    records:     one row per (config, log point): config columns + history columns (tidy).
    finished:    one row per finished config: config columns + final metrics + ``seconds``.
    failed:      list of (config, error message) for configs that raised or never ran.
    interrupted: True if the sweep was stopped by KeyboardInterrupt.
    """

    records: list = field(default_factory=list)
    finished: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    interrupted: bool = False

    def to_pandas(self, which: str = "records"):
        """``records`` (or ``finished``) as a pandas DataFrame (needs pandas installed)."""
        import pandas as pd  # optional dependency

        return pd.DataFrame(getattr(self, which))

    def __repr__(self):
        return (
            f"SweepResult({len(self.finished)} finished, {len(self.failed)} failed, "
            f"{len(self.records)} records, interrupted={self.interrupted})"
        )


def expand_grid(base: dict, grid) -> list[dict]:
    """All configs ``{**base, **point}`` for the Cartesian product of ``grid``'s value lists
    (first key varies slowest). ``grid`` may also be a list of dicts: explicit points (for
    settings that do not form a product, e.g. a learning rate per optimizer)."""
    if isinstance(grid, (list, tuple)):
        if not all(isinstance(p, dict) for p in grid):
            raise TypeError(
                "a grid given as a list must hold dicts (one per configuration)"
            )
        return [{**base, **p} for p in grid]
    keys = list(grid)
    for k in keys:
        if isinstance(grid[k], (str, bytes)) or not hasattr(grid[k], "__iter__"):
            raise TypeError(f"grid[{k!r}] must be a list of values, got {grid[k]!r}")
    return [
        {**base, **dict(zip(keys, vals))}
        for vals in itertools.product(*(list(grid[k]) for k in keys))
    ]


def _default_train_fn():
    from sharpness_lib.training import run_config  # provided by the training module

    return run_config


def _safe_call(train_fn, config):
    """Runs in the worker: never raises, so one bad config cannot take the sweep down."""
    t0 = time.perf_counter()
    try:
        out = train_fn(dict(config))
        if not isinstance(out, dict):
            raise TypeError(f"train_fn returned {type(out).__name__}, expected dict")
        return True, out, time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - reported back to the caller
        msg = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        return False, msg, time.perf_counter() - t0


def _history_rows(history):
    if history is None:
        return []
    if isinstance(history, dict):
        cols = {k: list(v) for k, v in history.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(
                f"history columns have different lengths: {sorted(lengths)}"
            )
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]
    return [dict(r) for r in history]


def _collect(result, cid, config, ok, out, seconds, on_result):
    if not ok:
        result.failed.append((config, out))
        return
    cfg = {"config_id": cid, **config}
    final = {k: v for k, v in out.items() if k != "history"}
    result.finished.append({**cfg, **final, "seconds": seconds})
    for row in _history_rows(out.get("history")):
        # history columns must not silently overwrite config columns
        result.records.append(
            {**cfg, **{(f"hist_{k}" if k in cfg else k): v for k, v in row.items()}}
        )
    if on_result is not None:
        on_result({**cfg, **out, "seconds": seconds})


def _check_args(base, n_jobs, backend, train_fn):
    """One-sentence errors for bad arguments of :func:`run_sweep`; returns the train_fn."""
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}."
        )
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise ValueError(
            f"n_jobs must be a nonzero whole number (-1: all cores); got {n_jobs!r}."
        )
    if not isinstance(base, dict):
        raise TypeError(f"base must be a dict of settings; got {type(base).__name__}.")
    train_fn = train_fn or _default_train_fn()
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable; got {train_fn!r}.")
    return train_fn


def run_sweep(
    base: dict,
    grid: dict,
    *,
    train_fn=None,
    n_jobs: int = -1,
    backend: str = "loky",
    client=None,
    progress: bool = True,
    on_result=None,
) -> SweepResult:
    """Run ``train_fn({**base, **point})`` for every point of ``grid``; see module docstring.

    ``on_result(row)`` is called in the calling process as each config finishes (row = config +
    everything ``train_fn`` returned + ``seconds``), e.g. to save or plot partial results.
    """
    train_fn = _check_args(base, n_jobs, backend, train_fn)
    configs = expand_grid(base, grid)
    result = SweepResult()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(configs), desc="sweep", unit="run")
    done_ids: set[int] = set()

    def handle(cid, ok, out, seconds):
        done_ids.add(cid)
        _collect(result, cid, configs[cid], ok, out, seconds, on_result)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=len(result.failed), refresh=False)

    try:
        if backend == "sequential":
            for cid, cfg in enumerate(configs):
                handle(cid, *_safe_call(train_fn, cfg))
        elif backend == "loky":
            _run_loky(train_fn, configs, n_jobs, handle, done_ids)
        elif backend == "dask":
            _run_dask(client, train_fn, configs, handle, done_ids)
    except KeyboardInterrupt:
        result.interrupted = True
    except Exception as exc:  # the pool itself broke (e.g. a worker was killed)
        msg = f"{type(exc).__name__}: {exc}"
        for cid, cfg in enumerate(configs):
            if cid not in done_ids:
                result.failed.append((cfg, f"sweep aborted: {msg}"))
                done_ids.add(cid)
    finally:
        if bar is not None:
            bar.close()
    if result.interrupted:
        for cid, cfg in enumerate(configs):
            if cid not in done_ids:
                result.failed.append((cfg, "not run: sweep interrupted"))
    return result


def _run_dask(client, train_fn, configs, handle, done_ids) -> None:
    """Run on a Dask cluster (``client`` or the current default one); whatever has not
    finished when this returns or raises (Ctrl-C) is cancelled."""
    from distributed import as_completed, get_client

    client = client or get_client()
    futs = {
        client.submit(_tagged, train_fn, cid, cfg, pure=False): cid
        for cid, cfg in enumerate(configs)
    }
    try:
        for fut in as_completed(list(futs)):
            cid = futs[fut]
            try:
                _, ok, out, seconds = fut.result()
            except Exception as exc:  # worker died, task cancelled, ...
                ok, out, seconds = (
                    False,
                    f"{type(exc).__name__}: {exc}",
                    float("nan"),
                )
            handle(cid, ok, out, seconds)
    finally:
        pending = [f for f, cid in futs.items() if cid not in done_ids]
        if pending:
            client.cancel(pending)


def _tagged(train_fn, cid, config, marker_dir=None):
    if marker_dir is not None:  # "started": tells a crash's suspects from the untouched
        with open(os.path.join(marker_dir, str(cid)), "w"):
            pass
    return (cid, *_safe_call(train_fn, config))


def _ship_by_value() -> None:
    """Have loky's cloudpickle ship this module's functions (_tagged, _safe_call) by value:
    a worker then imports only what train_fn needs, not the whole package with torch
    (seconds per new worker, and a crash means new workers)."""
    try:
        import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    except (ImportError, AttributeError):
        pass


def _loky_pool(train_fn, configs, batch, n_jobs, marker_dir, handle):
    """Run ``batch`` (config ids) in one loky pool, handling results as they stream in.

    Returns None when the pool finished, or the exception when a worker died and took the
    pool down (loky's TerminatedWorkerError / BrokenProcessPool); any other error is raised.
    """
    from joblib import Parallel, delayed

    for cid in batch:
        marker = os.path.join(marker_dir, str(cid))
        if os.path.exists(marker):
            os.remove(marker)
    par = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")
    # each task returns its own id so results can be matched while streaming in
    gen = par(
        delayed(_tagged)(train_fn, cid, configs[cid], marker_dir) for cid in batch
    )
    try:
        for cid, ok, out, seconds in gen:
            handle(cid, ok, out, seconds)
    except Exception as exc:  # noqa: BLE001 - the pool broke: a worker died
        if type(exc).__name__ not in ("TerminatedWorkerError", "BrokenProcessPool"):
            raise
        return exc
    finally:
        gen.close()  # on interrupt: abort the remaining tasks
    return None


def _run_loky(train_fn, configs, n_jobs, handle, done_ids) -> None:
    """Run on loky, surviving dead workers.

    When a worker dies, loky aborts the whole pool (TerminatedWorkerError) and with it every
    pending config. Each task leaves a marker file when it starts, so after a crash the
    configs started but unfinished are the suspects (one of them killed its worker): the
    untouched ones go to a new pool, and the suspects are rerun one per fresh single-worker
    pool; one that dies alone is reported failed. Every crash isolates at least one config,
    so this terminates.
    """
    _ship_by_value()
    marker_dir = tempfile.mkdtemp(prefix="sweep-started-")
    try:
        queue = list(range(len(configs)))  # to run in a shared pool
        suspects: list[int] = []  # to run alone
        while queue or suspects:
            alone = not queue
            batch = [suspects.pop(0)] if alone else queue
            # (a lone suspect still goes to a worker process: n_jobs=1 would run it here)
            crash = _loky_pool(
                train_fn, configs, batch, 2 if alone else n_jobs, marker_dir, handle
            )
            if crash is None:
                queue = []
                continue
            left = [cid for cid in batch if cid not in done_ids]
            if alone:
                for cid in left:
                    handle(
                        cid,
                        False,
                        "the worker running this config died "
                        f"(killed, e.g. out of memory, or crashed): {crash}",
                        float("nan"),
                    )
                continue
            started = {
                cid
                for cid in left
                if os.path.exists(os.path.join(marker_dir, str(cid)))
            }
            suspects += sorted(started)
            queue = [cid for cid in left if cid not in started]
    finally:
        shutil.rmtree(marker_dir, ignore_errors=True)


def demo_train_fn(config: dict) -> dict:
    """A fast synthetic stand-in for ``run_config`` (tests, docs): deterministic history of
    ``config['log_points']`` rows; raises if ``config.get('fail')``; sleeps ``config['sleep']``.
    """
    if config.get("fail"):
        raise RuntimeError(f"requested failure for {config}")
    if config.get("kill"):  # as the kernel's OOM killer would: no exception, no cleanup
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(config.get("sleep", 0.0)))
    rho = float(config.get("rho", 0.0))
    seed = int(config.get("seed", 0))
    k = int(config.get("log_points", 3))
    epochs = [int(i * config.get("epochs", 100) / max(k - 1, 1)) for i in range(k)]
    loss = [1.0 / (1 + e) + 0.01 * seed for e in epochs]
    trace = [10.0 / (1 + rho * e) for e in epochs]
    return {
        "train_loss": loss[-1],
        "test_error": 0.5 * rho,
        "hessian_trace": trace[-1],
        "status": "ok",
        "message": "",
        "history": {"epoch": epochs, "train_loss": loss, "hessian_trace": trace},
    }
