"""Training runs: GD/SGD with weight decay, 1-SAM and m-SAM, multi-phase schedules.

:func:`train` runs a :class:`~sharpness_lib.config.TrainConfig` and returns a
:class:`TrainResult` whose ``history`` has one record per log point (what a record holds:
:mod:`sharpness_lib.measures`). Two interchangeable paths execute the steps:

* ``engine="reference"``: plain torch -- the :class:`~sharpness_lib.sam.SAM` optimizer
  over ``torch.optim.SGD`` (or another base), one forward/backward per pass.
* ``engine="numba"``: the compiled kernels of :mod:`sharpness_lib.engine` for the
  2-layer architectures with the squared or the logistic loss (label smoothing) and every
  base optimizer of :mod:`sharpness_lib.optimizers`, matching the reference to 1e-6 (not the
  deep MLP-Bias or the standard-normalization archs "bn"/"ln", which always take the
  reference path).

``engine="auto"`` (the default) takes the compiled path whenever it covers the run.
The visiting order of each epoch comes from :class:`EpochOrders`, so both paths see the
same samples in the same order, whatever the chunking.

Robustness: a NaN/inf loss stops the run with ``status == "diverged"``, restores the
last finite parameters and keeps the history so far; ``should_stop()`` returning True
stops between chunks (a fraction of a second) with ``status == "stopped"``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import optimizers
from ._validation import check_choice, check_int
from .config import BASE_OPTIMIZERS, Phase, TrainConfig
from .data import ParityXor, make_dataset, make_test_set
from .limits import check_memory, divergence_hint
from .losses import mean_loss
from .measures import RunLog, measure
from .models import TwoLayerNet, make_model, numpy_params
from .sam import SAM

# the public names; TrainConfig, Phase, BASE_OPTIMIZERS (config.py) and measure
# (measures.py) stay importable from here, where the CLI, chapters and tests look for them
__all__ = [
    "BASE_OPTIMIZERS",
    "ENGINES",
    "EpochOrders",
    "Phase",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "engine_supports",
    "measure",
    "project_first_layer",
    "run_config",
    "train",
]

ENGINES = ("auto", "reference", "numba")


class EpochOrders:
    """Per-epoch visiting orders, a seeded stream independent of how it is consumed.

    Orders are produced in fixed blocks, so ``take(3); take(5)`` equals ``take(8)``.
    """

    BLOCK = 256

    def __init__(self, n: int, seed: int):
        self.n = n
        self._rng = np.random.default_rng([seed, 0x0BDE])
        self._buf = np.empty((0, n), dtype=np.int64)

    def take(self, epochs: int) -> np.ndarray:
        while self._buf.shape[0] < epochs:
            block = np.tile(np.arange(self.n, dtype=np.int64), (self.BLOCK, 1))
            self._buf = np.concatenate([self._buf, self._rng.permuted(block, axis=1)])
        out, self._buf = self._buf[:epochs], self._buf[epochs:]
        return np.ascontiguousarray(out)


def build_model(cfg: TrainConfig, data: ParityXor) -> TwoLayerNet:
    """The model of a (validated) config, initialized from its seed."""
    options = {"first_layer_scale": cfg.first_layer_scale}
    if cfg.arch == "sbn":
        options.update(x_ref=data.x, gamma_init=cfg.gamma_init)
    elif cfg.arch == "bn":
        options.update(x_ref=data.x, gamma_init=cfg.gamma_init, eps=cfg.eps)
    elif cfg.arch == "ln":
        options.update(gamma_init=cfg.gamma_init, eps=cfg.eps)
    elif cfg.arch == "sln":
        options["eps"] = cfg.eps
    elif cfg.arch == "deep_bias":
        options["depth"] = cfg.depth
    return make_model(
        cfg.arch, cfg.d, cfg.width, seed=cfg.seed, init_scale=cfg.init_scale, **options
    )


def project_first_layer(model: torch.nn.Module, norm: float) -> None:
    """Rescale (W1, b1) jointly to Frobenius norm ``norm`` (Figure 6b's projection)."""
    with torch.no_grad():
        ps = [model.W1] + ([model.b1] if model.b1 is not None else [])
        current = math.sqrt(sum(float(p.square().sum()) for p in ps))
        if current > 0:
            for p in ps:
                p.mul_(norm / current)


class _ReferenceRunner:
    """Plain-torch steps: the SAM optimizer (or the base optimizer alone for GD/SGD)."""

    name = "reference"
    chunk_epochs = 1

    def __init__(self, cfg: TrainConfig, model, data: ParityXor):
        self.cfg, self.model, self.data = cfg, model, data
        first = cfg.schedule()[0]
        # base optimizer from the registry of optimizers.py; SAM over it for sam1/msam
        self.opt = optimizers.make_optimizer(
            cfg.optimizer,
            model.parameters(),
            first.lr,
            weight_decay=cfg.wd,
            sam_rho=first.rho if cfg.algo in ("sam1", "msam") else None,
            **cfg.optimizer_options,
        )

    def _loss(self, idx):
        x = self.data.x if idx is None else self.data.x[idx]
        y = self.data.y if idx is None else self.data.y[idx]
        return mean_loss(self.model(x), y, self.cfg.loss, self.cfg.label_smoothing)

    def run(self, orders: np.ndarray, phase: Phase) -> bool:
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = phase.lr
            g["rho"] = phase.rho
        sam = isinstance(self.opt, SAM)
        for order in orders:
            batches = (
                [None]
                if cfg.algo == "gd"
                else [
                    torch.as_tensor(order[i : i + cfg.batch_size])
                    for i in range(0, cfg.n, cfg.batch_size)
                ]
            )
            for idx in batches:

                def closure(idx=idx):
                    self.opt.zero_grad()
                    loss = self._loss(idx)
                    loss.backward()
                    return loss

                if sam:
                    self.opt.step(closure)
                else:
                    closure()
                    self.opt.step()
                if cfg.project_norm is not None:
                    project_first_layer(self.model, cfg.project_norm)
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())


class _EngineRunner:
    """The compiled 2-layer kernels of :mod:`sharpness_lib.engine`, on views of the params."""

    name = "numba"

    def __init__(self, cfg: TrainConfig, model, data: ParityXor):
        from . import engine

        self.engine, self.cfg = engine, cfg
        self.params = numpy_params(model)
        self.X = np.ascontiguousarray(data.x.numpy())
        self.Y = np.ascontiguousarray(data.y.numpy())
        self.chunk_epochs = 1
        self._target_seconds = 0.1
        # base-optimizer state (moments, step count) of the engine's dense path, kept across
        # calls; AdaBound's bounds are relative to the first phase's lr, as in the reference
        self.opt_state = engine.new_opt_state(
            self.params,
            arch=cfg.arch,
            optimizer=cfg.optimizer,
            options=cfg.optimizer_options,
            base_lr=cfg.schedule()[0].lr,
        )

    def run(self, orders: np.ndarray, phase: Phase) -> bool:
        cfg = self.cfg
        t0 = time.perf_counter()
        status = self.engine.run_epochs(
            self.params,
            self.X,
            self.Y,
            orders,
            arch=cfg.arch,
            algo=cfg.algo,
            lr=phase.lr,
            rho=phase.rho,
            wd=cfg.wd,
            batch_size=cfg.batch_size,
            eps=cfg.eps,
            project_norm=cfg.project_norm,
            loss=cfg.loss,
            label_smoothing=cfg.label_smoothing,
            optimizer=cfg.optimizer,
            optimizer_options=cfg.optimizer_options,
            opt_state=self.opt_state,
        )
        per_epoch = (time.perf_counter() - t0) / max(1, len(orders))
        # chunks of ~0.1 s keep Stop responsive while amortizing the call overhead
        self.chunk_epochs = int(
            min(10_000, max(1, self._target_seconds / max(per_epoch, 1e-9)))
        )
        return bool(status.finite)


def engine_supports(cfg: TrainConfig) -> bool:
    """Whether the compiled engine covers this run (else the reference path is used)."""
    try:
        from . import engine
    except ImportError:
        return False
    return engine.supports(
        cfg.arch, cfg.algo, cfg.loss, cfg.optimizer, cfg.optimizer_options
    )


@dataclass
class TrainResult:
    """A run's outcome: the history (one dict per log point), final model and status."""

    config: TrainConfig
    history: list[dict]
    model: torch.nn.Module
    data: ParityXor
    status: str = "completed"  # "completed" | "stopped" | "diverged"
    message: str = ""
    engine: str = "reference"
    wall_time: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def final(self) -> dict:
        return self.history[-1]

    def to_dict(self) -> dict:
        """JSON-able summary: final metrics, status and the whole history."""
        fin = self.final
        return {
            "config": self.config.to_dict(),
            "status": self.status,
            "message": self.message,
            "engine": self.engine,
            "wall_time": self.wall_time,
            # every metric of the last log point (those present for this run's data/arch)
            **{k: v for k, v in fin.items() if k not in ("phase", "lr", "rho")},
            "history": self.history,
        }


def _loss_is_finite(model, data: ParityXor, cfg: TrainConfig) -> bool:
    with torch.no_grad():
        return math.isfinite(
            float(mean_loss(model(data.x), data.y, cfg.loss, cfg.label_smoothing))
        )


def train(
    config: TrainConfig | dict,
    *,
    callback=None,
    should_stop=None,
    engine: str = "auto",
    progress: bool = False,
    until: int | None = None,
) -> TrainResult:
    """Run one configuration; see the module docstring for the engines and the statuses.

    ``callback(record)`` is called at every log point (epoch 0 included) with the new
    history record; ``should_stop()`` is polled between chunks. ``progress=True`` shows
    a tqdm bar with the remaining-time estimate. ``until=E`` stops at epoch E (status
    "stopped"), with a history equal to the full run's up to E (used to re-check stored
    paper-scale results against the code).
    """
    cfg, use_engine, until = _prepare(config, engine, until)
    data = make_dataset(cfg.dataset, cfg.d, cfg.n, cfg.seed)
    model = build_model(cfg, data)
    testset = make_test_set(
        cfg.dataset, cfg.d, seed=cfg.seed, num_samples=cfg.test_samples
    )
    runner = (_EngineRunner if use_engine else _ReferenceRunner)(cfg, model, data)
    orders = EpochOrders(cfg.n, cfg.seed)
    bar = _progress_bar(cfg) if progress else None
    runlog = RunLog(cfg, model, data, testset, callback)
    t_start = time.perf_counter()
    runlog.log(0, 0, cfg.schedule()[0])
    status, message = _run_schedule(runner, orders, runlog, bar, should_stop, until)
    if status == "completed":
        status, message = _completed_status(runlog, message)
    runlog.finish(prefix=until is not None)
    if bar is not None:
        bar.close()
    return TrainResult(
        cfg,
        runlog.history,
        model,
        data,
        status,
        message,
        runner.name,
        time.perf_counter() - t_start,
    )


def _prepare(
    config: TrainConfig | dict, engine: str, until: int | None
) -> tuple[TrainConfig, bool, int | None]:
    """(validated config, whether the compiled engine runs it, checked ``until``); refuses
    up front, in one sentence, what cannot run."""
    cfg = (
        TrainConfig.from_dict(config) if isinstance(config, dict) else config
    ).validate()
    check_choice("engine", engine, ENGINES)
    if engine == "numba" and not engine_supports(cfg):
        raise ValueError(
            f"engine 'numba' does not cover arch {cfg.arch!r} with algo "
            f"{cfg.algo!r}, loss {cfg.loss!r}, optimizer {cfg.optimizer!r}; "
            "use engine 'auto' or 'reference'."
        )
    use_engine = engine == "numba" or (engine == "auto" and engine_supports(cfg))
    check_memory(cfg)  # refuse up front what cannot fit, instead of a MemoryError later
    if until is not None:
        until = check_int("until", until, 1, cfg.epochs)
    return cfg, use_engine, until


def _progress_bar(cfg: TrainConfig):
    from tqdm.auto import tqdm

    return tqdm(total=cfg.epochs, unit="epoch", desc=cfg.describe()[:60], leave=False)


def _run_schedule(
    runner, orders: EpochOrders, runlog: RunLog, bar, should_stop, until: int | None
) -> tuple[str, str]:
    """Step through the phases in chunks, logging at the log points; (status, message).

    A chunk ends at the next log point, phase end or ``until``, and is at most
    ``runner.chunk_epochs`` long, so ``should_stop`` is polled often. Ends early at a
    divergence, at ``stop_loss`` (status "completed" with a message), at ``until`` or
    when ``should_stop()`` is true.
    """
    cfg = runlog.cfg
    epoch = 0
    for pi, phase in enumerate(cfg.schedule()):
        end = epoch + phase.epochs
        while epoch < end:
            next_log = min(end, cfg.next_log_epoch(epoch))
            if until is not None:
                next_log = min(next_log, until)
            k = min(next_log - epoch, runner.chunk_epochs)
            if not _run_chunk(runner, orders.take(k), phase, runlog):
                runlog.log_unless_logged(epoch, pi, phase)
                return "diverged", (
                    f"diverged between epochs {epoch} and {epoch + k}: the loss became "
                    f"NaN or infinite ({divergence_hint(cfg)}); the history up "
                    f"to epoch {epoch} is kept and the model restored to it."
                )
            epoch += k
            if bar is not None:
                bar.update(k)
            if epoch == next_log:
                runlog.log(epoch, pi, phase)
                loss = runlog.last["train_loss"]
                if cfg.stop_loss is not None and loss <= cfg.stop_loss:
                    return "completed", (
                        f"reached training loss {loss:.3g} <= "
                        f"stop_loss {cfg.stop_loss:g} at epoch {epoch}."
                    )
            if until is not None and epoch >= until:
                return "stopped", f"stopped at epoch {epoch} of {cfg.epochs} (until)."
            if should_stop is not None and should_stop():
                runlog.log_unless_logged(epoch, pi, phase)
                return "stopped", f"stopped at epoch {epoch} of {cfg.epochs}."
    return "completed", ""


def _run_chunk(runner, orders: np.ndarray, phase: Phase, runlog: RunLog) -> bool:
    """Run the epochs of ``orders``; if the loss is no longer finite, restore the
    parameters from before the chunk and return False."""
    model = runlog.model
    snapshot = [p.detach().clone() for p in model.parameters()]
    if runner.run(orders, phase) and _loss_is_finite(model, runlog.data, runlog.cfg):
        return True
    with torch.no_grad():
        for p, s in zip(model.parameters(), snapshot):
            p.copy_(s)
    return False


def _completed_status(runlog: RunLog, message: str) -> tuple[str, str]:
    """(status, message) of a run that went through: "diverged" if its final loss is not
    finite; a note if the net collapsed to the zero function."""
    if not math.isfinite(runlog.last["train_loss"]):
        return "diverged", "the final loss is NaN or infinite."
    with torch.no_grad():
        out = float(runlog.model(runlog.data.x).abs().max())
    if out < 1e-3:  # flat (trace ~ 0) but fits nothing: say so instead of "completed"
        message = (message + " " if message else "") + (
            f"the network collapsed to the zero function (max |f(x_i)| = {out:.1e} on the "
            "training set): flat, but it fits nothing; try a smaller rho or lr."
        )
    return "completed", message


def run_config(config: dict, engine: str = "auto") -> dict:
    """Train a config given as a dict and return the JSON-able summary (for sweeps)."""
    return train(config, engine=engine).to_dict()
