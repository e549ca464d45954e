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

from .training import TrainConfig, TrainResult, train

# panel key -> TrainConfig field, where the names differ
_RENAMED = {"algorithm": "algo", "weight_decay": "wd"}
_KNOBS = ("bias", "norm", "activation")


def arch_from_knobs(bias: bool, norm: str, activation: str) -> str:
    """(bias, normalization, activation) of the panel -> the library's ``arch``."""
    if norm not in ("none", "sim_bn", "sim_ln"):
        raise ValueError(f"normalization must be one of none, sim_bn, sim_ln; got {norm!r}.")
    if activation not in ("relu", "softplus"):
        raise ValueError(f"activation must be relu or softplus; got {activation!r}.")
    if norm != "none":
        if not bias or activation != "relu":
            raise ValueError(f"normalization {norm!r} is defined (Section 2) for the ReLU network "
                             "with bias only; switch bias on and use relu.")
        return "sbn" if norm == "sim_bn" else "sln"
    if activation == "softplus":
        if not bias:
            raise ValueError("softplus is studied with bias only (Figure 5); switch bias on.")
        return "softplus"
    return "bias" if bias else "nobias"


def knobs_from_arch(arch: str) -> dict:
    """Inverse of :func:`arch_from_knobs` (for ``deep_bias``: bias on, no normalization)."""
    return {"nobias": dict(bias=False, norm="none", activation="relu"),
            "bias": dict(bias=True, norm="none", activation="relu"),
            "softplus": dict(bias=True, norm="none", activation="softplus"),
            "sbn": dict(bias=True, norm="sim_bn", activation="relu"),
            "sln": dict(bias=True, norm="sim_ln", activation="relu"),
            "deep_bias": dict(bias=True, norm="none", activation="relu")}[arch]


def panel_defaults(cfg: TrainConfig) -> dict:
    """The panel's values for a config (single-phase: the first phase's lr and rho)."""
    first = cfg.schedule()[0]
    out = {"width": cfg.width, **knobs_from_arch(cfg.arch), "algorithm": cfg.algo,
           "lr": first.lr, "rho": first.rho, "weight_decay": cfg.wd,
           "init_scale": cfg.init_scale, "epochs": cfg.epochs, "seed": cfg.seed, "d": cfg.d,
           "n": cfg.n}
    # the rest travels through the panel unchanged
    rest = {k: v for k, v in cfg.to_dict().items()
            if k not in ("arch", "algo", "wd", "lr", "rho", "phases", "batch_size", *out)}
    return {**out, **rest}


def config_from_panel(values: dict) -> TrainConfig:
    """Validated :class:`TrainConfig` from the panel's values (ValueError on bad input)."""
    values = dict(values)
    if any(k in values for k in _KNOBS):
        values["arch"] = arch_from_knobs(values.pop("bias", True), values.pop("norm", "none"),
                                         values.pop("activation", "relu"))
    for old, new in _RENAMED.items():
        if old in values:
            values[new] = values.pop(old)
    if values.get("algo") == "gd":
        values["rho"] = 0.0
    values.setdefault("log_every", max(1, int(values.get("epochs", 100)) // 100))
    return TrainConfig.from_dict(values).validate()


def validate_panel(values: dict) -> None:
    """``validate_fn`` for the panel: the library's own checks, one sentence each."""
    config_from_panel(values)


def panel_run_fn(values: dict, callback, should_stop) -> TrainResult:
    """``run_fn`` for :class:`sharpness_lib.ui.ControlPanel`: train with live callbacks."""
    return train(config_from_panel(values), callback=callback, should_stop=should_stop)


def run_seeds(cfg: TrainConfig, seeds=(0, 1, 2), n_jobs: int | None = None,
              **train_kwargs) -> list[TrainResult]:
    """The same config over several seeds, in parallel threads (the kernels drop the GIL)."""
    cfgs = [dataclasses.replace(cfg, seed=s) for s in seeds]
    n_jobs = n_jobs or min(len(cfgs), os.cpu_count() or 1)
    if n_jobs == 1:
        return [train(c, **train_kwargs) for c in cfgs]
    # one torch thread per run: the parallelism is across runs, and torch's own thread pool
    # on top of it oversubscribes the cores (a 1 ms trace evaluation then takes a second)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(n_jobs) as pool:
            return list(pool.map(lambda c: train(c, **train_kwargs), cfgs))
    finally:
        torch.set_num_threads(threads)


def histories(results: list[TrainResult]) -> list[list[dict]]:
    """The histories of several runs (the plotting functions draw them as mean and band)."""
    return [r.history for r in results]


def summary(results: list[TrainResult], key: str) -> tuple[float, float, float]:
    """(mean, min, max) over runs of the final value of ``key``."""
    vals = [r.final[key] for r in results]
    return sum(vals) / len(vals), min(vals), max(vals)
