"""Short calls the book's chapters make: several seeds at once, and the panel's run function.

The control panel (:mod:`sharpness_lib.ui`) speaks in separate knobs -- bias on/off,
normalization, activation -- because that is how the paper frames its architectures;
:func:`arch_from_knobs` maps them onto the library's ``arch`` names and refuses
combinations the paper does not define, with one sentence.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from ._validation import check_int
from .training import TrainConfig, TrainResult, train

# panel key -> TrainConfig field, where the names differ
_RENAMED = {"algorithm": "algo", "weight_decay": "wd"}
_KNOBS = ("bias", "norm", "activation", "depth")
_NORMS = {"none": None, "sim_bn": "sbn", "sim_ln": "sln", "bn": "bn", "ln": "ln"}


def arch_from_knobs(bias: bool, norm: str, activation: str, depth: int = 2) -> str:
    """(bias, normalization, activation, depth) of the panel -> the library's ``arch``.

    ``norm``: none, sim_bn / sim_ln (the paper's simplified BatchNorm / LayerNorm, Section 2)
    or bn / ln (the standard ones, with mean subtraction and affine parameters: an open check
    of the paper). ``depth`` > 2 is the MLP-Bias of Theorem 4.1 / Figure 11.
    """
    if norm not in _NORMS:
        raise ValueError(
            f"normalization must be one of {', '.join(_NORMS)}; got {norm!r}."
        )
    if activation not in ("relu", "softplus"):
        raise ValueError(f"activation must be relu or softplus; got {activation!r}.")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 2 <= depth <= 6:
        raise ValueError(f"depth must be a whole number from 2 to 6; got {depth!r}.")
    if depth > 2:
        if not bias or norm != "none" or activation != "relu":
            raise ValueError(
                f"depth {depth} is defined (Theorem 4.1, Figure 11) for the ReLU "
                "MLP with bias and no normalization only; use depth 2 otherwise."
            )
        return "deep_bias"
    if norm != "none":
        if not bias or activation != "relu":
            raise ValueError(
                f"normalization {norm!r} is defined (Section 2) for the ReLU network "
                "with bias only; switch bias on and use relu."
            )
        return _NORMS[norm]
    if activation == "softplus":
        if not bias:
            raise ValueError(
                "softplus is studied with bias only (Figure 5); switch bias on."
            )
        return "softplus"
    return "bias" if bias else "nobias"


def knobs_from_arch(arch: str, depth: int = 3) -> dict:
    """Inverse of :func:`arch_from_knobs` (``depth`` is used for ``deep_bias`` only)."""
    relu_bias = dict(bias=True, activation="relu")
    return {
        "nobias": dict(bias=False, norm="none", activation="relu", depth=2),
        "bias": dict(norm="none", depth=2, **relu_bias),
        "softplus": dict(bias=True, norm="none", activation="softplus", depth=2),
        "sbn": dict(norm="sim_bn", depth=2, **relu_bias),
        "sln": dict(norm="sim_ln", depth=2, **relu_bias),
        "bn": dict(norm="bn", depth=2, **relu_bias),
        "ln": dict(norm="ln", depth=2, **relu_bias),
        "deep_bias": dict(norm="none", depth=depth, **relu_bias),
    }[arch]


def panel_defaults(cfg: TrainConfig) -> dict:
    """The panel's values for a config (single-phase: the first phase's lr and rho)."""
    first = cfg.schedule()[0]
    out = {
        "width": cfg.width,
        **knobs_from_arch(cfg.arch, cfg.depth),
        "algorithm": cfg.algo,
        "lr": first.lr,
        "rho": first.rho,
        "weight_decay": cfg.wd,
        "init_scale": cfg.init_scale,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "d": cfg.d,
        "n": cfg.n,
    }
    # the rest travels through the panel unchanged
    rest = {
        k: v
        for k, v in cfg.to_dict().items()
        if k not in ("arch", "algo", "wd", "lr", "rho", "phases", "batch_size", *out)
    }
    if cfg.algo in (
        "sgd",
        "msam",
    ):  # minibatch runs keep their batch size (Figure 8a: 10)
        rest["batch_size"] = cfg.batch_size
    return {**out, **rest}


def config_from_panel(values: dict) -> TrainConfig:
    """Validated :class:`TrainConfig` from the panel's values (ValueError on bad input)."""
    values = dict(values)
    if any(k in values for k in _KNOBS):
        depth = values.pop("depth", 2)
        arch = arch_from_knobs(
            values.pop("bias", True),
            values.pop("norm", "none"),
            values.pop("activation", "relu"),
            depth,
        )
        values["arch"] = arch
        if arch == "deep_bias":
            values["depth"] = depth
    for old, new in _RENAMED.items():
        if old in values:
            values[new] = values.pop(old)
    if values.get("algo") in ("gd", "sgd"):
        values["rho"] = 0.0
    if values.get("algo") in ("gd", "sam1"):  # their batch size is fixed (n and 1)
        values.pop("batch_size", None)
    # checked before use: int() of a NaN/huge/str value would raise a raw, unnamed error
    values.setdefault(
        "log_every", max(1, check_int("epochs", values.get("epochs", 100), 0) // 100)
    )
    return TrainConfig.from_dict(values).validate()


def validate_panel(values: dict) -> None:
    """``validate_fn`` for the panel: the library's own checks, one sentence each."""
    config_from_panel(values)


def panel_run_fn(values: dict, callback, should_stop) -> TrainResult:
    """``run_fn`` for :class:`sharpness_lib.ui.ControlPanel`: train with live callbacks."""
    return train(config_from_panel(values), callback=callback, should_stop=should_stop)


def _train_one_thread(cfg: TrainConfig, train_kwargs: dict) -> TrainResult:
    torch.set_num_threads(1)
    return train(cfg, **train_kwargs)


def run_seeds(
    cfg: TrainConfig, seeds=(0, 1, 2), n_jobs: int | None = None, **train_kwargs
) -> list[TrainResult]:
    """The same config over several seeds, in parallel, one torch thread per run.

    Runs the compiled engine covers go to threads (its kernels release the GIL); the others
    (deep MLP-Bias, standard BN/LN, other losses or optimizers it lacks) spend their time in
    Python and torch dispatch, which threads share badly, so they go to worker processes.
    With callbacks (``callback``/``should_stop``) everything stays in this process.
    """
    from .training import engine_supports

    cfgs = [dataclasses.replace(cfg, seed=s) for s in seeds]
    n_jobs = n_jobs or min(len(cfgs), os.cpu_count() or 1)
    # one torch thread per run: the parallelism is across runs, and torch's own thread pool
    # on top of it oversubscribes the cores (a 1 ms trace evaluation then takes a second)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if n_jobs == 1:
            return [train(c, **train_kwargs) for c in cfgs]
        in_process = train_kwargs.get("callback") or train_kwargs.get("should_stop")
        if not in_process and not engine_supports(cfg.validate()):
            from joblib import Parallel, delayed

            return Parallel(n_jobs=n_jobs, backend="loky")(
                delayed(_train_one_thread)(c, train_kwargs) for c in cfgs
            )
        with ThreadPoolExecutor(n_jobs) as pool:
            return list(pool.map(lambda c: train(c, **train_kwargs), cfgs))
    finally:
        torch.set_num_threads(threads)


def histories(results: list[TrainResult]) -> list[list[dict]]:
    """The histories of several runs (the plotting functions draw them as mean and band)."""
    return [r.history for r in results]


def finals(results: list[TrainResult], key: str) -> list:
    """The final value of ``key`` in each run."""
    return [r.final[key] for r in results]


def spread(values, fmt: str = ".3g") -> str:
    """Several seeds' values as text, "mean (min–max)", for tables next to figures."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread needs at least one value.")
    mean = sum(values) / len(values)
    return f"{mean:{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def summary(results: list[TrainResult], key: str) -> tuple[float, float, float]:
    """(mean, min, max) over runs of the final value of ``key``."""
    vals = [r.final[key] for r in results]
    return sum(vals) / len(vals), min(vals), max(vals)


def _one_thread_run(config: dict) -> dict:
    """``run_config`` in a sweep worker: one torch thread, as the parallelism is across runs."""
    from .training import run_config

    torch.set_num_threads(1)
    return run_config(config)


def optimizer_study(
    bases: dict,
    lrs: dict,
    *,
    optimizers=None,
    options: dict | None = None,
    seeds=(0, 1, 2),
    rho: float = 0.05,
    n_jobs: int = -1,
    backend: str = "loky",
    progress: bool = False,
):
    """1-SAM over each base optimizer, and that optimizer alone (batch 1), per architecture.

    The student report's design (../seeds/003: SAM with SGD, heavy ball, Adam, Adagrad,
    AdaBound, AdaShift) on the paper's task. ``bases`` maps a label to a :class:`TrainConfig`
    (architecture, width, epochs, init, ``stop_loss`` ...); ``lrs`` maps an optimizer name to
    its learning rate, or a (label, optimizer) pair to an override; ``options`` maps an
    optimizer name to its ``optimizer_options`` (e.g. ``{"adabound": {"final_lr": 0.01}}``).
    Runs go through :func:`sharpness_lib.sweep.run_sweep`; returns ``(rows, failed)``: one
    tidy row per run (label, arch, optimizer, method "1-SAM" / "alone", seed, the final
    metrics including ``min_sharpness`` where the library has it, and
    ``generalization_gap``), and the sweep's failures as (config, message) pairs.
    """
    from .optimizers import BASE_OPTIMIZERS
    from .sweep import run_sweep

    points, labels = _study_points(
        bases, lrs, tuple(optimizers or BASE_OPTIMIZERS), options or {}, seeds, rho
    )
    res = run_sweep(
        {},
        points,
        train_fn=_one_thread_run,
        n_jobs=n_jobs,
        backend=backend,
        progress=progress,
    )
    rows = [
        _study_row(r, labels[r["config_id"]])
        for r in sorted(res.finished, key=lambda r: r["config_id"])
    ]
    return rows, res.failed


def _study_points(
    bases: dict, lrs: dict, optimizers: tuple, options: dict, seeds, rho: float
) -> tuple[list[dict], list[str]]:
    """The study's configs (as dicts, validated) and the label of each: per label, base
    optimizer, method (1-SAM, then the optimizer alone) and seed."""
    points, labels = [], []
    for label, cfg in bases.items():
        for opt in optimizers:
            lr = lrs.get((label, opt), lrs.get(opt))
            if lr is None:
                raise ValueError(
                    f"no learning rate for optimizer {opt!r} (architecture "
                    f"{label!r}); give lrs[{opt!r}] or lrs[({label!r}, {opt!r})]."
                )
            for algo in ("sam1", "sgd"):
                for seed in seeds:
                    c = cfg.replace(
                        optimizer=opt,
                        lr=lr,
                        algo=algo,
                        batch_size=None,
                        phases=(),
                        rho=rho if algo == "sam1" else 0.0,
                        seed=seed,
                        optimizer_options=options.get(opt, cfg.optimizer_options),
                    ).validate()
                    points.append(c.to_dict())
                    labels.append(label)
    return points, labels


def _study_row(r: dict, label: str) -> dict:
    """One finished run of the study as a tidy row (NaN for metrics it does not have)."""
    from .correlation import generalization_gap

    return {
        "label": label,
        "arch": r["arch"],
        "optimizer": r["optimizer"],
        "method": "1-SAM" if r["algo"] == "sam1" else "alone",
        "seed": r["seed"],
        "lr": r["lr"],
        "epoch": r["epoch"],
        "status": r["status"],
        **{
            k: r.get(k, float("nan"))
            for k in (
                "train_loss",
                "train_error",
                "test_error",
                "hessian_trace",
                "min_sharpness",
            )
        },
        "generalization_gap": generalization_gap(r),
    }
