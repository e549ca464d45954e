"""What a run logs: one record per log point, and the history of them.

:func:`measure` evaluates the model at the current point: train loss, train/test zero-one
error (and the test squared error on the ball data), the exact Tr nabla^2 L, the
per-neuron minimum sharpness (:func:`sharpness_measures`) and, if asked, the memorization
diagnostics of :mod:`sharpness_lib.memorization` on :func:`fresh_points`.
:class:`RunLog` keeps a run's history and decides what each log point measures.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import Phase, TrainConfig
from .data import ParityXor, TestSet, sample_hypercube
from .losses import mean_loss
from .memorization import activation_stats
from .min_sharpness import minimum_sharpness
from .sharpness import hessian_trace

FRESH_POINTS = 2000  # fresh test points for the memorization diagnostics


def fresh_points(cfg: TrainConfig) -> torch.Tensor:
    """The FRESH_POINTS hypercube points of the memorization diagnostics (own seed stream)."""
    rng = np.random.default_rng([cfg.seed, 0xF2E5])
    return torch.as_tensor(
        sample_hypercube(FRESH_POINTS, cfg.d, rng), dtype=torch.float64
    )


def sharpness_measures(model, data: ParityXor, cfg: TrainConfig) -> tuple[float, float]:
    """(exact Tr nabla^2 L, per-neuron minimum sharpness) at the current point, the trace
    computed once (``minimum_sharpness`` evaluates it anyway).

    Softplus nets have no function-preserving rescaling (softplus is not positively
    homogeneous), so the minimum over their trivial group is the trace itself. Sim-LN has
    only the layer-wise symmetry, which :func:`minimum_sharpness` then uses.
    """
    if cfg.arch == "softplus":
        trace = hessian_trace(model, data.x, data.y, cfg.loss, cfg.label_smoothing)
        return trace, trace
    ms = minimum_sharpness(
        model, data.x, data.y, "neuron", cfg.loss, cfg.label_smoothing
    )
    return ms.trace, ms.value


def measure(
    model,
    data: ParityXor,
    testset: TestSet,
    cfg: TrainConfig,
    min_sharpness: bool = True,
    x_fresh: torch.Tensor | None = None,
) -> dict:
    """Train loss, train/test zero-one error, the exact Tr nabla^2 L, (if asked) the
    minimum sharpness, and with ``x_fresh`` the memorization diagnostics at the current
    point."""
    with torch.no_grad():
        f = model(data.x)
        loss = float(mean_loss(f, data.y, cfg.loss, cfg.label_smoothing))
        # written as "not > 0" so that a NaN output counts as an error, not as correct
        train_err = float((~(f * data.y > 0)).to(torch.float64).mean())
    te = testset.error(model)
    extra = {}
    if cfg.dataset != "xor":  # real-valued labels: the test squared error too
        tm = testset.mse(model)
        extra = {"test_mse": tm.value, "test_mse_se": tm.stderr}
    if not math.isfinite(loss):
        trace = float("nan")
        if min_sharpness:
            extra["min_sharpness"] = float("nan")
    elif min_sharpness:
        trace, extra["min_sharpness"] = sharpness_measures(model, data, cfg)
    else:
        trace = hessian_trace(model, data.x, data.y, cfg.loss, cfg.label_smoothing)
    if x_fresh is not None:
        extra.update(activation_stats(model, data.x, x_fresh))
    return {
        "train_loss": loss,
        "train_error": train_err,
        "test_error": te.value,
        "test_error_se": te.stderr,
        "hessian_trace": trace,
        **extra,
    }


class RunLog:
    """The history of one run: a :func:`measure` record per log point, passed on to
    ``callback`` as it is made."""

    def __init__(
        self, cfg: TrainConfig, model, data: ParityXor, testset, callback=None
    ):
        self.cfg, self.model, self.data, self.testset = cfg, model, data, testset
        self.callback = callback
        self.history: list[dict] = []
        # the deep nets' per-neuron minimum needs a Newton solve (~0.4 s at width 128):
        # final only
        self.every_point_ms = cfg.arch != "deep_bias"
        self.x_fresh = fresh_points(cfg) if cfg.memorization else None

    @property
    def last(self) -> dict:
        return self.history[-1]

    def log(self, epoch: int, phase_index: int, phase: Phase) -> None:
        """Record the current point at ``epoch`` (during phase ``phase_index``)."""
        rec = {
            "epoch": epoch,
            **measure(
                self.model,
                self.data,
                self.testset,
                self.cfg,
                self.every_point_ms,
                self.x_fresh,
            ),
            "phase": phase_index,
            "lr": phase.lr,
            "rho": phase.rho,
        }
        self.history.append(rec)
        if self.callback is not None:
            self.callback(rec)

    def log_unless_logged(self, epoch: int, phase_index: int, phase: Phase) -> None:
        """Log ``epoch`` unless it is already the last record (a run ending off the grid)."""
        if self.last["epoch"] != epoch:
            self.log(epoch, phase_index, phase)

    def finish(self, prefix: bool) -> None:
        """Add the final minimum sharpness of the nets that skip it at every point.

        Not for a ``prefix`` (``until=``), which is not the run's end: its history stays
        equal to the full run's.
        """
        if (
            not self.every_point_ms
            and not prefix
            and math.isfinite(self.last["train_loss"])
        ):
            self.last["min_sharpness"] = sharpness_measures(
                self.model, self.data, self.cfg
            )[1]
