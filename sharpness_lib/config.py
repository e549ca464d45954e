"""What one run is: :class:`Phase`, :class:`TrainConfig` and its checks, :class:`Preset`.

:class:`TrainConfig` holds one run's settings -- the paper's Table 2 columns plus the
choices the paper leaves open (initialization scale, Sim-LN's eps, test-set size) -- and
:meth:`TrainConfig.validate` refuses a bad one with one sentence before anything runs.
:class:`Preset` names a config after the figure of the paper it reproduces
(:mod:`sharpness_lib.presets` holds them). :func:`sharpness_lib.training.train` runs a
config.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

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
from .data import DEFAULT_TEST_SAMPLES
from .limits import exact_test_error
from .memorization import ARCHS as MEMORIZATION_ARCHS

BASE_OPTIMIZERS = tuple(optimizers.BASE_OPTIMIZERS)  # names; specs in optimizers.py
LOG_SPACINGS = ("linear", "log")
# "log" spacing adds epochs round(10^(k/10)): 10 points a decade, so a 6e5-epoch run's first
# hundred epochs are as visible on a log axis as its last hundred thousand
LOG_POINTS_PER_DECADE = 10
# the paper fixes width 500, d = 30 and n = 100 for every figure but Figure 7 (Table 2)
PAPER = dict(d=30, n=100, width=500)


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
    # Sim-LN's floor; the normalization eps of "bn" and "ln" (torch's 1e-5)
    eps: float = 1e-5
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
    # "xor" (P_xor, Section 2) | "ball" (Figure 7: unit ball, |x1|-|x2|)
    dataset: str = "xor"
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

        Raises ValueError with one sentence naming the bad value and the valid range. The
        checks run in a fixed order (names, numbers, schedule, batch), so a config with
        several bad values always names the same one.
        """
        c = dataclasses.replace(self)
        _check_names(c)
        _check_numbers(c)
        _check_schedule(c)
        _check_batch_and_logging(c)
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


def _check_names(c: TrainConfig) -> None:
    """The choices (arch, algo, loss, optimizer, dataset, log spacing, memorization)."""
    check_choice("arch", c.arch, ARCHS)
    check_choice("algo", c.algo, (*ALGOS, *ALGO_ALIASES))  # before hashing it
    c.algo = ALGO_ALIASES.get(c.algo, c.algo)  # "alone" = the base optimizer's steps
    check_choice("loss", c.loss, LOSSES)
    check_choice("optimizer", c.optimizer, BASE_OPTIMIZERS)
    check_choice("dataset", c.dataset, DATASETS)
    check_choice("log_spacing", c.log_spacing, LOG_SPACINGS)
    if not isinstance(c.memorization, bool):
        raise ValueError(f"memorization must be True or False; got {c.memorization!r}.")
    if c.memorization and (c.arch not in MEMORIZATION_ARCHS or c.dataset != "xor"):
        raise ValueError(
            "memorization diagnostics cover archs "
            f"{', '.join(MEMORIZATION_ARCHS)} on the xor data; got arch "
            f"{c.arch!r} with dataset {c.dataset!r}."
        )


def _check_numbers(c: TrainConfig) -> None:
    """Sizes, seed, weight decay, init and architecture options, loss and optimizer options."""
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
    c.gamma_init = check_float("gamma_init", c.gamma_init, -MAX_ABS_INIT, MAX_ABS_INIT)
    c.label_smoothing = check_float("label_smoothing", c.label_smoothing, 0.0, 1.0)
    c.test_samples = check_int("test_samples", c.test_samples, 1)
    if c.stop_loss is not None:
        c.stop_loss = check_float("stop_loss", c.stop_loss, 0.0, low_open=True)
    # names, types and ranges, for the engine and the reference path alike
    c.optimizer_options = optimizers.validate_options(c.optimizer, c.optimizer_options)
    if c.project_norm is not None:
        c.project_norm = check_float("project_norm", c.project_norm, 0.0, low_open=True)


def _check_schedule(c: TrainConfig) -> None:
    """The phases, or (epochs, lr, rho); with phases, ``epochs`` becomes their total."""
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


def _check_batch_and_logging(c: TrainConfig) -> None:
    """The batch size each algo allows (and its default), the default log step."""
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


def _geometric_epoch(epoch: int) -> int:
    """The smallest round(10^(k / LOG_POINTS_PER_DECADE)) larger than ``epoch``."""
    k = max(0, int(math.floor(LOG_POINTS_PER_DECADE * math.log10(max(epoch, 1)))) - 1)
    while round(10 ** (k / LOG_POINTS_PER_DECADE)) <= epoch:
        k += 1
    return round(10 ** (k / LOG_POINTS_PER_DECADE))


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


@dataclass(frozen=True)
class Preset:
    """A named, documented run: ``config`` plus the figure of the paper it reproduces."""

    name: str
    figure: str
    description: str
    config: TrainConfig
    notes: str = ""


def paper_preset(name, figure, description, notes="", **cfg) -> Preset:
    """A :class:`Preset` at the paper's d, n and width (:data:`PAPER`) unless ``cfg`` sets
    them."""
    return Preset(name, figure, description, TrainConfig(**{**PAPER, **cfg}), notes)
