"""Training runs: GD/SGD with weight decay, 1-SAM and m-SAM, multi-phase schedules.

:class:`TrainConfig` holds one run's settings (the paper's Table 2 columns plus the
choices the paper leaves open: initialization scale, Sim-LN's eps, test-set size);
:func:`train` runs it and returns a :class:`TrainResult` whose ``history`` has one
record per log point. Two interchangeable paths execute the steps:

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

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import optimizers
from ._validation import (
    ALGO_ALIASES,
    ALGOS,
    ARCH_NAMES,
    ARCHS,
    DATASETS,
    LOSSES,
    MAX_ABS_INIT,
    MAX_SEED,
    check_choice,
    check_float,
    check_int,
    check_n,
)
from .data import (
    DEFAULT_TEST_SAMPLES,
    ParityXor,
    TestSet,
    make_dataset,
    make_test_set,
    sample_hypercube,
)
from .limits import check_memory, divergence_hint, exact_test_error
from .losses import mean_loss
from .memorization import ARCHS as MEMORIZATION_ARCHS
from .memorization import activation_stats
from .min_sharpness import minimum_sharpness
from .models import TwoLayerNet, make_model, numpy_params
from .sam import SAM
from .sharpness import hessian_trace

BASE_OPTIMIZERS = tuple(optimizers.BASE_OPTIMIZERS)  # names; specs in optimizers.py
ENGINES = ("auto", "reference", "numba")
LOG_SPACINGS = ("linear", "log")
# "log" spacing adds epochs round(10^(k/10)): 10 points a decade, so a 6e5-epoch run's first
# hundred epochs are as visible on a log axis as its last hundred thousand
LOG_POINTS_PER_DECADE = 10
FRESH_POINTS = 2000  # fresh test points for the memorization diagnostics


@dataclass(frozen=True)
class Phase:
    """One stage of a schedule: ``epochs`` at learning rate ``lr`` and SAM radius ``rho``."""

    epochs: int
    lr: float
    rho: float = 0.0


@dataclass
class TrainConfig:
    """Settings of one run. ``phases`` (if given) replaces (epochs, lr, rho).

    ``eps`` is Sim-LN's floor and, for ``arch`` "bn"/"ln" (standard BatchNorm/LayerNorm),
    the normalization eps (torch's default 1e-5). ``dataset`` picks the distribution:
    "xor" (P_xor) or "ball" (Figure 7; then n is not limited to 2^d and the history also
    records the test squared error ``test_mse``).

    ``algo``: "sam1" (1-SAM), "msam" (m-SAM), "gd" (full batch) or "sgd" (mini-batch steps)
    -- the last two without SAM, i.e. the base ``optimizer`` alone: ``algo="sgd",
    optimizer="adam"`` is Adam alone. ``algo="alone"`` says that explicitly and is validated
    to "sgd".
    """

    arch: str = "bias"
    d: int = 30
    n: int = 100
    width: int = 512
    algo: str = "sam1"
    lr: float = 0.01
    rho: float = 0.05
    wd: float = 0.0
    epochs: int = 1000
    batch_size: int | None = None
    seed: int = 0
    init_scale: float = 1.0
    first_layer_scale: float = 1.0
    depth: int = 3
    eps: float = (
        1e-5  # Sim-LN's floor; the normalization eps of "bn" and "ln" (torch's 1e-5)
    )
    gamma_init: float = 1.0
    loss: str = "mse"
    label_smoothing: float = 0.0
    project_norm: float | None = None
    phases: tuple[Phase, ...] = ()
    log_every: int | None = None
    test_samples: int = DEFAULT_TEST_SAMPLES
    optimizer: str = "sgd"
    stop_loss: float | None = None  # end at the first log point with train loss <= this
    # hyperparameters of the base optimizer other than lr / weight decay (e.g. AdaBound's
    # final_lr, heavy ball's momentum); defaults in sharpness_lib.optimizers.BASE_OPTIMIZERS
    optimizer_options: dict = field(default_factory=dict)
    dataset: str = (
        "xor"  # "xor" (P_xor, Section 2) | "ball" (Figure 7: unit ball, |x1|-|x2|)
    )
    # log points: every log_every epochs ("linear"), plus a geometric grid ("log") for
    # long runs drawn on a log-epoch axis (stored paper-scale results)
    log_spacing: str = "linear"
    # also log the activation statistics of sharpness_lib.memorization (ReLU 2-layer nets)
    memorization: bool = False

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a plain dict (as in JSON or a sweep grid); unknown keys are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"unknown setting {unknown[0]!r}; valid settings: "
                f"{', '.join(sorted(names))}."
            )
        values = dict(values)
        if "phases" in values:
            values["phases"] = tuple(_phase_from(p) for p in values["phases"] or ())
        return cls(**values)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["phases"] = [dataclasses.asdict(p) for p in self.phases]
        return out

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        """Check every field; return a copy with defaults resolved (batch size, log step).

        Raises ValueError with one sentence naming the bad value and the valid range.
        """
        c = dataclasses.replace(self)
        check_choice("arch", c.arch, ARCHS)
        check_choice("algo", c.algo, (*ALGOS, *ALGO_ALIASES))  # before hashing it
        c.algo = ALGO_ALIASES.get(
            c.algo, c.algo
        )  # "alone" = the base optimizer's steps
        check_choice("loss", c.loss, LOSSES)
        check_choice("optimizer", c.optimizer, BASE_OPTIMIZERS)
        check_choice("dataset", c.dataset, DATASETS)
        check_choice("log_spacing", c.log_spacing, LOG_SPACINGS)
        if not isinstance(c.memorization, bool):
            raise ValueError(
                f"memorization must be True or False; got {c.memorization!r}."
            )
        if c.memorization and (c.arch not in MEMORIZATION_ARCHS or c.dataset != "xor"):
            raise ValueError(
                "memorization diagnostics cover archs "
                f"{', '.join(MEMORIZATION_ARCHS)} on the xor data; got arch "
                f"{c.arch!r} with dataset {c.dataset!r}."
            )
        c.d = check_int("d", c.d, 2)
        c.n = check_n(c.n, c.d) if c.dataset == "xor" else check_int("n", c.n, 1)
        c.width = check_int("width", c.width, 1)
        c.seed = check_int("seed", c.seed, 0, MAX_SEED)
        c.wd = check_float("wd (weight decay)", c.wd, 0.0)
        c.init_scale = check_float(
            "init_scale", c.init_scale, 0.0, MAX_ABS_INIT, low_open=True
        )
        c.first_layer_scale = check_float(
            "first_layer_scale", c.first_layer_scale, 0.0, MAX_ABS_INIT, low_open=True
        )
        c.depth = check_int("depth", c.depth, 2)
        c.eps = check_float("eps", c.eps, 0.0, low_open=True)
        c.gamma_init = check_float(
            "gamma_init", c.gamma_init, -MAX_ABS_INIT, MAX_ABS_INIT
        )
        c.label_smoothing = check_float("label_smoothing", c.label_smoothing, 0.0, 1.0)
        c.test_samples = check_int("test_samples", c.test_samples, 1)
        if c.stop_loss is not None:
            c.stop_loss = check_float("stop_loss", c.stop_loss, 0.0, low_open=True)
        # names, types and ranges, for the engine and the reference path alike
        c.optimizer_options = optimizers.validate_options(
            c.optimizer, c.optimizer_options
        )
        if c.project_norm is not None:
            c.project_norm = check_float(
                "project_norm", c.project_norm, 0.0, low_open=True
            )
        if c.phases:
            c.phases = tuple(_phase_from(p) for p in c.phases)
            c.phases = tuple(
                Phase(
                    check_int("phase epochs", p.epochs, 0),
                    check_float("lr", p.lr, 0.0, low_open=True),
                    check_float("rho", p.rho, 0.0),
                )
                for p in c.phases
            )
            c.epochs = sum(p.epochs for p in c.phases)
        else:
            c.epochs = check_int("epochs", c.epochs, 0)
            c.lr = check_float("lr", c.lr, 0.0, low_open=True)
            c.rho = check_float("rho", c.rho, 0.0)
        default_batch = {"gd": c.n, "sgd": 1, "sam1": 1, "msam": None}[c.algo]
        if c.batch_size is None:
            if default_batch is None:
                raise ValueError("algo 'msam' needs a batch_size between 1 and n.")
            c.batch_size = default_batch
        c.batch_size = check_int("batch_size", c.batch_size, 1, c.n)
        if c.algo == "sam1" and c.batch_size != 1:
            raise ValueError(
                f"algo 'sam1' uses batch size 1; got batch_size {c.batch_size} "
                "(use algo 'msam' for SAM with larger batches)."
            )
        if c.algo == "gd" and c.batch_size != c.n:
            raise ValueError(
                f"algo 'gd' is full batch (batch_size = n = {c.n}); got "
                f"batch_size {c.batch_size} (use algo 'sgd' for minibatches)."
            )
        if c.log_every is None:
            c.log_every = max(1, c.epochs // 100)
        c.log_every = check_int("log_every", c.log_every, 1)
        return c

    def schedule(self) -> list[Phase]:
        return (
            list(self.phases)
            if self.phases
            else [Phase(self.epochs, self.lr, self.rho)]
        )

    def next_log_epoch(self, epoch: int) -> int:
        """The first log point after ``epoch`` (phase ends are log points too, see train).

        Depends only on ``epoch``, ``log_every`` and ``log_spacing``, not on the total
        length, so a run stopped early logs a prefix of the full run's history.
        """
        nxt = (epoch // self.log_every + 1) * self.log_every
        if self.log_spacing == "log":
            nxt = min(nxt, _geometric_epoch(epoch))
        return nxt

    def summary(self) -> dict:
        """The settings that matter for this run, in reading order (for captions).

        Architecture-specific options appear only where they apply and when they differ from
        the default; a multi-phase schedule appears as ``schedule`` instead of lr/rho/epochs.
        """
        c = self.validate()
        out = {
            "arch": ARCH_NAMES[c.arch],
            "width": c.width,
            "algo": {"gd": "GD", "sgd": "SGD", "sam1": "1-SAM", "msam": "m-SAM"}[
                c.algo
            ],
        }
        if c.optimizer != "sgd":  # e.g. "Adam" alone, "1-SAM over Adam"
            base = optimizers.get_spec(c.optimizer).label
            out["algo"] = {
                "gd": f"{base} alone, full batch",
                "sgd": f"{base} alone",
                "sam1": f"1-SAM over {base}",
                "msam": f"m-SAM over {base}",
            }[c.algo]
        if c.algo in ("sgd", "msam"):
            out["batch_size"] = c.batch_size
        if c.phases:
            out["schedule"] = [
                f"{p.epochs} ep @ lr {p.lr:g}"
                + (f", rho {p.rho:g}" if c.algo in ("sam1", "msam") else "")
                for p in c.phases
            ]
        else:
            out["lr"] = c.lr
            if c.algo in ("sam1", "msam"):
                out["rho"] = c.rho
            out["epochs"] = c.epochs
        out["wd"] = c.wd
        out["init_scale"] = c.init_scale
        extras = {
            "first_layer_scale": (c.first_layer_scale, 1.0),
            "project_norm": (c.project_norm, None),
            "loss": (c.loss, "mse"),
            "stop_loss": (c.stop_loss, None),
            "optimizer_options": (c.optimizer_options, {}),
        }
        if c.arch == "sbn":
            extras["gamma_init"] = (c.gamma_init, None)
        if c.arch == "sln":
            extras["eps"] = (c.eps, None)
        if c.arch in ("bn", "ln"):
            extras["gamma_init"] = (c.gamma_init, 1.0)
            extras["eps"] = (c.eps, 1e-5)
        if c.arch == "deep_bias":
            extras["depth"] = (c.depth, None)
        if c.loss == "logistic":
            extras["label_smoothing"] = (c.label_smoothing, None)
        out.update({k: v for k, (v, default) in extras.items() if v != default})
        if c.dataset != "xor":
            out["dataset"] = c.dataset
        out.update(d=c.d, n=c.n, seed=c.seed)
        if c.dataset != "xor" or not exact_test_error(c.d, c.test_samples):
            out["test_samples"] = c.test_samples
        return out

    def describe(self) -> str:
        """One line naming what is run, for captions and logs."""
        phases = " then ".join(
            f"{p.epochs} ep at lr {p.lr:g}"
            + (f", rho {p.rho:g}" if self.algo in ("sam1", "msam") else "")
            for p in self.schedule()
        )
        algo = {
            "gd": "GD",
            "sgd": "SGD",
            "sam1": "1-SAM",
            "msam": f"{self.batch_size}-SAM",
        }[self.algo]
        if self.optimizer != "sgd":
            algo = self.summary()["algo"]
        wd = f", wd {self.wd:g}" if self.wd else ""
        extra = "".join(
            f", {k.replace('_', ' ')} {v:g}" if isinstance(v, float) else f", {k} {v}"
            for k, v in self.summary().items()
            if k
            in (
                "first_layer_scale",
                "project_norm",
                "gamma_init",
                "depth",
                "loss",
                "label_smoothing",
                "optimizer",
                "dataset",
            )
        )
        return (
            f"{ARCH_NAMES[self.arch]}, width {self.width}, {algo}{wd}: {phases}; "
            f"d={self.d}, n={self.n}, init x{self.init_scale:g}{extra}, seed {self.seed}"
        )


def _geometric_epoch(epoch: int) -> int:
    """The smallest round(10^(k / LOG_POINTS_PER_DECADE)) larger than ``epoch``."""
    k = max(0, int(math.floor(LOG_POINTS_PER_DECADE * math.log10(max(epoch, 1)))) - 1)
    while round(10 ** (k / LOG_POINTS_PER_DECADE)) <= epoch:
        k += 1
    return round(10 ** (k / LOG_POINTS_PER_DECADE))


def fresh_points(cfg: TrainConfig) -> torch.Tensor:
    """The FRESH_POINTS hypercube points of the memorization diagnostics (own seed stream)."""
    rng = np.random.default_rng([cfg.seed, 0xF2E5])
    return torch.as_tensor(
        sample_hypercube(FRESH_POINTS, cfg.d, rng), dtype=torch.float64
    )


def _phase_from(p) -> Phase:
    """A Phase from a Phase or a dict {"epochs", "lr", "rho" (optional)}."""
    if isinstance(p, Phase):
        return p
    if (
        not isinstance(p, dict)
        or not {"epochs", "lr"} <= set(p)
        or set(p) - {"epochs", "lr", "rho"}
    ):
        raise ValueError(
            "each phase must be a dict with keys epochs, lr and optionally rho; "
            f"got {p!r}."
        )
    return Phase(**p)


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
    data = make_dataset(cfg.dataset, cfg.d, cfg.n, cfg.seed)
    model = build_model(cfg, data)
    testset = make_test_set(
        cfg.dataset, cfg.d, seed=cfg.seed, num_samples=cfg.test_samples
    )
    runner = (_EngineRunner if use_engine else _ReferenceRunner)(cfg, model, data)
    orders = EpochOrders(cfg.n, cfg.seed)
    history: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.epochs, unit="epoch", desc=cfg.describe()[:60], leave=False
        )

    def log(epoch: int, phase_index: int, phase: Phase) -> None:
        rec = {
            "epoch": epoch,
            **measure(model, data, testset, cfg, every_point_ms, x_fresh),
            "phase": phase_index,
            "lr": phase.lr,
            "rho": phase.rho,
        }
        history.append(rec)
        if callback is not None:
            callback(rec)

    # the deep nets' per-neuron minimum needs a Newton solve (~0.4 s at width 128): final only
    every_point_ms = cfg.arch != "deep_bias"
    x_fresh = fresh_points(cfg) if cfg.memorization else None
    t_start = time.perf_counter()
    schedule = cfg.schedule()
    log(0, 0, schedule[0])
    status, message, epoch = "completed", "", 0
    for pi, phase in enumerate(schedule):
        end = epoch + phase.epochs
        while epoch < end and status == "completed":
            next_log = min(end, cfg.next_log_epoch(epoch))
            if until is not None:
                next_log = min(next_log, until)
            k = min(next_log - epoch, runner.chunk_epochs)
            snapshot = [p.detach().clone() for p in model.parameters()]
            finite = runner.run(orders.take(k), phase) and _loss_is_finite(
                model, data, cfg
            )
            if not finite:
                with torch.no_grad():
                    for p, s in zip(model.parameters(), snapshot):
                        p.copy_(s)
                status = "diverged"
                message = (
                    f"diverged between epochs {epoch} and {epoch + k}: the loss became "
                    f"NaN or infinite ({divergence_hint(cfg)}); the history up "
                    f"to epoch {epoch} is kept and the model restored to it."
                )
                if history[-1]["epoch"] != epoch:
                    log(epoch, pi, phase)
                break
            epoch += k
            if bar is not None:
                bar.update(k)
            if epoch == next_log:
                log(epoch, pi, phase)
                if (
                    cfg.stop_loss is not None
                    and history[-1]["train_loss"] <= cfg.stop_loss
                ):
                    message = (
                        f"reached training loss {history[-1]['train_loss']:.3g} <= "
                        f"stop_loss {cfg.stop_loss:g} at epoch {epoch}."
                    )
                    break
            if until is not None and epoch >= until:
                status, message = (
                    "stopped",
                    f"stopped at epoch {epoch} of {cfg.epochs} (until).",
                )
            elif should_stop is not None and should_stop():
                if history[-1]["epoch"] != epoch:
                    log(epoch, pi, phase)
                status, message = (
                    "stopped",
                    f"stopped at epoch {epoch} of {cfg.epochs}.",
                )
        if status != "completed" or message:
            break
    if status == "completed" and not math.isfinite(history[-1]["train_loss"]):
        status, message = "diverged", "the final loss is NaN or infinite."
    if status == "completed":
        with torch.no_grad():
            out = float(model(data.x).abs().max())
        if (
            out < 1e-3
        ):  # flat (trace ~ 0) but fits nothing: say so instead of "completed"
            message = (message + " " if message else "") + (
                f"the network collapsed to the zero function (max |f(x_i)| = {out:.1e} on the "
                "training set): flat, but it fits nothing; try a smaller rho or lr."
            )
    # a prefix (until=) is not the run's end: keep its history equal to the full run's
    if (
        not every_point_ms
        and until is None
        and math.isfinite(history[-1]["train_loss"])
    ):
        history[-1]["min_sharpness"] = sharpness_measures(model, data, cfg)[1]
    if bar is not None:
        bar.close()
    return TrainResult(
        cfg,
        history,
        model,
        data,
        status,
        message,
        runner.name,
        time.perf_counter() - t_start,
    )


def run_config(config: dict, engine: str = "auto") -> dict:
    """Train a config given as a dict and return the JSON-able summary (for sweeps)."""
    return train(config, engine=engine).to_dict()
