"""The control panel without its widgets: what it asks, checks, says and sends.

:mod:`sharpness_lib.ui` draws the panel; everything here runs without ipywidgets or a kernel
(and must not import them): the controls in display order (:data:`FIELDS`), the one-sentence
value checks, the progress / ETA and status texts, the log of the run in progress
(:class:`PanelRun`, fed from the training thread), the figure of that log against the reference
runs, and how a preset's multi-phase schedule travels through the panel's single lr / ρ /
epochs controls.
"""

from __future__ import annotations

import dataclasses
import html
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import plotting

YOUR_RUN = "your run"
YOUR_RUN_COLOR = "#111111"


@dataclass(frozen=True)
class Field:
    """One panel control: a config key, its label, the widget kind and (for choices) options."""

    key: str
    label: str
    kind: str  # "int" | "float" | "bool" | "choice"
    options: tuple = ()
    optional: bool = False  # shown only when the panel asks for it (``show=``)


# Controls, in display order. Only keys present in ``defaults`` get a widget; other keys in
# ``defaults`` are passed to run_fn unchanged. Choice options are (label, value) pairs and can be
# overridden per panel (``options=``) to match the training code's spelling.
FIELDS: tuple[Field, ...] = (
    Field(
        "algorithm",
        "algorithm",
        "choice",
        (("GD + weight decay", "gd"), ("1-SAM", "sam1"), ("SGD + weight decay", "sgd")),
    ),
    # one-key architecture choice (the library's TrainConfig.arch); the separate
    # bias / norm / activation controls below are for configs that split it up
    Field(
        "arch",
        "architecture",
        "choice",
        (
            ("2-MLP-No-Bias", "nobias"),
            ("2-MLP-Bias", "bias"),
            ("2-MLP-Sim-BN", "sbn"),
            ("2-MLP-Sim-LN", "sln"),
            ("2-MLP-Bias, softplus", "softplus"),
        ),
    ),
    Field("width", "width m", "int"),
    Field("bias", "bias", "bool"),
    Field(
        "norm",
        "normalization",
        "choice",
        (
            ("none", "none"),
            ("Sim-BN", "sim_bn"),
            ("Sim-LN", "sim_ln"),
            ("BatchNorm", "bn"),
            ("LayerNorm", "ln"),
        ),
    ),
    Field(
        "activation",
        "activation",
        "choice",
        (("ReLU", "relu"), ("softplus", "softplus")),
    ),
    Field("depth", "depth (layers)", "int"),
    Field("lr", "lr η", "float"),
    Field("rho", "ρ (SAM)", "float"),
    Field("weight_decay", "weight decay", "float"),
    Field("init_scale", "init scale", "float"),
    Field("epochs", "epochs", "int"),
    Field("seed", "seed", "int"),
    Field("d", "input dim d", "int"),
    Field("n", "train size n", "int"),
    # shown only on request (``show=("optimizer", ...)``); otherwise passed through unchanged
    Field(
        "optimizer",
        "base optimizer",
        "choice",
        (
            ("SGD", "sgd"),
            ("heavy ball", "momentum"),
            ("Adam", "adam"),
            ("Adagrad", "adagrad"),
            ("AdaBound", "adabound"),
            ("AdaShift", "adashift"),
        ),
        optional=True,
    ),
    Field(
        "loss",
        "loss",
        "choice",
        (("squared", "mse"), ("logistic", "logistic")),
        optional=True,
    ),
    Field("label_smoothing", "label smoothing", "float", optional=True),
    Field(
        "dataset",
        "data",
        "choice",
        (("parity xor (hypercube)", "xor"), ("uniform ball, |x1|-|x2|", "ball")),
        optional=True,
    ),
    Field("batch_size", "batch size", "int", optional=True),
)


# ---------------------------------------------------------------------- value checks
def basic_validate(config: Mapping[str, Any]) -> None:
    """Minimal range checks used when no ``validate_fn`` is given.

    Raises ``ValueError`` with one sentence naming the offending value and the valid range,
    the same style as the library's own config validation (which should be preferred).
    """

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ValueError(msg)

    c = config
    for key, lo in (("width", 1), ("epochs", 1), ("d", 2), ("n", 1)):
        if key in c:
            need(
                isinstance(c[key], int) and c[key] >= lo,
                f"{key} = {c[key]} is invalid: it must be an integer >= {lo}.",
            )
    if "lr" in c:
        need(
            _pos_finite(c["lr"]),
            f"lr = {c['lr']} is invalid: it must be a finite number > 0.",
        )
    for key in ("rho", "weight_decay"):
        if key in c:
            need(
                _nonneg_finite(c[key]),
                f"{key} = {c[key]} is invalid: it must be a finite number >= 0.",
            )
    if "init_scale" in c:
        need(
            _pos_finite(c["init_scale"]),
            f"init_scale = {c['init_scale']} is invalid: it must be a finite number > 0.",
        )
    if "d" in c and "n" in c and isinstance(c["d"], int) and c["d"] < 63:
        need(
            c["n"] <= 2 ** c["d"],
            f"n = {c['n']} is invalid: with d = {c['d']} the hypercube has only "
            f"2**{c['d']} = {2 ** c['d']} points, so n must be between 1 and {2 ** c['d']}.",
        )


def _pos_finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _nonneg_finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v >= 0


def choice_value(key: str, value: Any, options) -> Any:
    """A drop-down's value from a default given as its value or its label.

    ``options`` are (label, value) pairs; anything else is refused with one sentence.
    """
    values = [v for _, v in options]
    labels = [lab for lab, _ in options]
    if value not in values and value in labels:
        value = values[labels.index(value)]
    if value not in values:
        raise ValueError(
            f"default {key} = {value!r} is not one of the panel's options {values}."
        )
    return value


# ---------------------------------------------------------------------- texts
# the progress bar's style once a run has ended ("" is the plain bar)
BAR_STYLES = {
    "completed": "success",
    "diverged": "danger",
    "error": "danger",
    "stopped": "warning",
}
_STATUS_COLORS = {
    "completed": "#2ca02c",
    "stopped": "#b8860b",
    "diverged": "#d62728",
    "error": "#d62728",
    "invalid": "#d62728",
}


def fmt_seconds(s: float) -> str:
    """``42s``, ``3m07s``, ``1h05m``; ``?`` for a time not known yet (NaN)."""
    if not math.isfinite(s):
        return "?"
    s = round(s)
    return (
        f"{s // 3600}h{s % 3600 // 60:02d}m"
        if s >= 3600
        else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")
    )


def running_progress(epoch: int, epochs: int, elapsed: float) -> tuple[float, str]:
    """The bar's fraction and its label while a run of ``epochs`` epochs is at ``epoch``."""
    frac = min(max(epoch / epochs, 0.0), 1.0)
    eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
    return frac, (
        f"epoch {epoch}/{epochs} · {fmt_seconds(elapsed)} elapsed · "
        f"ETA {fmt_seconds(eta)}"
    )


def finished_label(last: int, epochs: int | None, took: float) -> str:
    """The label once a run is over: epochs reached and time taken, no ETA."""
    return (
        f"epoch {last}/{epochs} · {fmt_seconds(took)}" if epochs else fmt_seconds(took)
    )


def default_message(status: str, last: int, took: float) -> str:
    """The status line of a run whose result carries no ``message`` of its own."""
    if status == "stopped":
        return f"stopped at epoch {last} after {fmt_seconds(took)}; history kept."
    return f"{status}: {last} epochs in {fmt_seconds(took)}."


def status_markup(status: str, message: str) -> str:
    """The status line as HTML (class ``panel-status``, coloured by the status)."""
    color = _STATUS_COLORS.get(status, "#555")
    return (
        f'<span class="panel-status" data-status="{status}" style="color:{color}">'
        f"{html.escape(message)}</span>"
    )


# ---------------------------------------------------------------------- the run
class PanelRun:
    """The run in progress: its log points (appended from the training thread), its start
    time and epoch budget (fixed at Run, even if the epochs control changes meanwhile)."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.epochs: int | None = None
        self.t0 = 0.0
        self._lock = threading.Lock()

    def start(self, epochs: int | None) -> None:
        with self._lock:
            self.records = []
        self.epochs = epochs
        self.t0 = time.monotonic()

    def add(self, record: Mapping[str, Any]) -> tuple[float, str] | None:
        """Store one log point; the progress (fraction, label), None without an epoch budget."""
        with self._lock:
            self.records.append(dict(record))
        if not self.epochs:
            return None
        return running_progress(
            record.get("epoch", 0) or 0, self.epochs, self.elapsed()
        )

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.records)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def last_epoch(self) -> int:
        return self.records[-1].get("epoch", 0) if self.records else 0

    def finished_label(self) -> str:
        return finished_label(self.last_epoch(), self.epochs, self.elapsed())

    def outcome(self, result: Any, stopped: bool) -> tuple[str, str]:
        """(status, message) of a run that returned ``result``; its own when it has them."""
        status = getattr(result, "status", None) or (
            "stopped" if stopped else "completed"
        )
        message = getattr(result, "message", None) or default_message(
            status, self.last_epoch(), self.elapsed()
        )
        return status, message


def panel_figure(compare_runs: Mapping[str, Any], history: list[dict]):
    """The reference runs with "your run" on top (a ``go.Figure``); None if nothing to draw."""
    runs = dict(compare_runs)
    colors = {}
    if history:
        runs[YOUR_RUN] = history
        colors[YOUR_RUN] = YOUR_RUN_COLOR
    if not runs:
        return None
    fig = plotting.history_figure(runs, colors=colors)
    # legend anchored to the bottom of the whole figure, under the "epoch" axis titles
    # (placed relative to the plot area it covered them when the legend wrapped)
    rows = 1 + len(runs) // 3
    fig.update_layout(
        legend={
            "orientation": "h",
            "yref": "container",
            "y": 0,
            "yanchor": "bottom",
            "x": 0,
        },
        margin={"b": 60 + 22 * rows},
        height=(fig.layout.height or 450) + 22 * rows,
    )
    return fig


# ---------------------------------------------------------------------- presets
def preset_values(config) -> dict:
    """Panel values of a TrainConfig, keeping a multi-phase schedule as a pass-through key.

    The controls show one lr / rho / epochs (the first phase's lr and rho, the total epochs);
    ``_schedule_of`` remembers them, and the schedule is used as long as the reader leaves
    those three controls as loaded (see :func:`with_schedule`).
    """
    from .experiments import panel_defaults

    config = config.validate()
    values = panel_defaults(config)
    if len(config.phases) > 1:
        values["phases"] = [dataclasses.asdict(p) for p in config.phases]
        values["_schedule_of"] = (values["lr"], values["rho"], values["epochs"])
    return values


def with_schedule(values: Mapping[str, Any]) -> dict:
    """The panel's values for the library: the preset's schedule if lr, rho and epochs are
    still the loaded ones, otherwise one phase with the controls' lr, rho and epochs."""
    values = dict(values)
    phases = values.pop("phases", None)
    loaded = values.pop("_schedule_of", None)
    if (
        phases
        and loaded is not None
        and tuple(loaded) == (values.get("lr"), values.get("rho"), values.get("epochs"))
    ):
        values["phases"] = phases
    return values


def schedule_note(config) -> str:
    """The sentence shown when a multi-phase preset is loaded ('' for a single phase)."""
    phases = config.validate().phases
    if len(phases) < 2:
        return ""
    steps = " then ".join(
        f"{p.epochs} epochs at lr {p.lr:g}, ρ {p.rho:g}" for p in phases
    )
    return (
        f"Schedule: {steps}; it is used while lr, ρ and epochs stay as loaded "
        "(change one to run a single phase)."
    )


def preset_menu(start, names: tuple[str, ...]) -> tuple[dict, dict]:
    """The settings menu of a panel started from ``start`` (a preset name or a TrainConfig)
    with the presets ``names``: {label: panel values} and {label: schedule note}.

    A preset ``start`` is the first entry; a config gets its own first entry, "this
    chapter's settings". No ``names``, no menu.
    """
    from .presets import get_preset

    menu, notes = {}, {}
    if not names:
        return menu, notes
    for name in ((start,) if isinstance(start, str) else ()) + tuple(names):
        preset = get_preset(name)
        label = f"{preset.name}: {preset.description}"
        menu[label] = preset_values(preset.config)
        notes[label] = schedule_note(preset.config)
    if not isinstance(start, str):
        menu = {"this chapter's settings": preset_values(start), **menu}
    return menu, notes
