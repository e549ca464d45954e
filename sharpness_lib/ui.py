"""Interactive control panel for training runs in a live kernel.

The one library module that imports ipywidgets.

Contract with the training code
-------------------------------
The panel never imports the training code; it is handed a function ::

    run_fn(config: dict, callback: Callable[[dict], None], should_stop: Callable[[], bool])
        -> result | None

* ``config`` is ``defaults`` updated with the panel's widget values (keys below).
* ``callback(record)`` must be called for every log point with a dict holding ``epoch`` and any
  of ``train_loss``, ``test_error``, ``test_error_se``, ``hessian_trace`` (``None`` allowed).
* ``should_stop()`` returns True once the reader clicked Stop; ``run_fn`` should then return
  soon (e.g. check it every log point or every few hundred steps).
* Invalid configurations raise ``ValueError`` with one sentence naming the value and its valid
  range; the panel shows that sentence (never a traceback).
* The optional result may carry ``.status`` (``'completed' | 'stopped' | 'diverged'``) and
  ``.message`` (e.g. ``"diverged at epoch 1234: loss became inf; history kept"``), shown as is.

``run_fn`` runs in a background thread, so the kernel keeps processing widget events (the Stop
click) while it trains. Nothing trains when a value changes, only on Run.

Presets: ``presets={label: values}`` adds a "settings" menu above the controls; choosing an entry
loads all its values (controls and pass-through keys, e.g. a multi-phase schedule) at once.

Figures: the panel redraws a ``go.Figure`` (:func:`sharpness_lib.plotting.history_figure`) into an
``ipywidgets.Output`` at most every ``redraw_every`` seconds, overlaying "your run" on the
precomputed ``compare_runs``. A ``go.FigureWidget`` would update more smoothly but its saved widget
state carries a ~5 MB JavaScript bundle into every static page that shows the panel; the
Output approach adds only the figure's data (tens of kB).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as W

from . import plotting

__all__ = ["FIELDS", "ControlPanel", "basic_validate", "training_panel"]

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


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = round(s)
    return (
        f"{s // 3600}h{s % 3600 // 60:02d}m"
        if s >= 3600
        else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")
    )


class ControlPanel:
    """Widgets to configure, run, stop and watch one training run against reference runs.

    ``ControlPanel(defaults, run_fn, compare_runs=None, validate_fn=None)``; display it as the
    last expression of a cell. ``compare_runs`` maps a label to a precomputed history (or list of
    histories) drawn under "your run". ``validate_fn(config)`` (default :func:`basic_validate`)
    raises ``ValueError`` for invalid values before a thread is started. ``presets`` maps a
    menu label to a full set of values (same keys as ``defaults``); the menu starts on the
    entry equal to ``defaults`` if there is one.

    Programmatic use (tests, scripted demos): ``panel.controls[key].value = ...``,
    ``panel.run()``, ``panel.stop()``, ``panel.wait()``; results in ``panel.history``,
    ``panel.status``, ``panel.message`` and ``panel.figure``.
    """

    def __init__(
        self,
        defaults: Mapping[str, Any],
        run_fn: Callable[..., Any],
        compare_runs: Mapping[str, Any] | None = None,
        *,
        validate_fn: Callable[[Mapping[str, Any]], None] | None = basic_validate,
        options: Mapping[str, tuple] | None = None,
        show: tuple[str, ...] = (),
        title: str | None = None,
        redraw_every: float = 0.5,
        presets: Mapping[str, Mapping[str, Any]] | None = None,
        preset_notes: Mapping[str, str] | None = None,
    ):
        self.defaults = dict(defaults)
        self.run_fn = run_fn
        self.compare_runs = dict(compare_runs or {})
        self.validate_fn = validate_fn
        self.title = title
        self.redraw_every = redraw_every

        self.history: list[dict] = []
        self.status: str = (
            "idle"  # idle | running | completed | stopped | diverged | error | invalid
        )
        self.message: str = ""
        self.result: Any = None
        self.error: BaseException | None = (
            None  # kept for debugging; never shown as traceback
        )
        self.figure = None  # the last go.Figure drawn

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._last_draw = 0.0
        self._epochs: int | None = None

        self.controls: dict[str, W.ValueWidget] = {}
        opts = dict(options or {})
        for f in FIELDS:
            if f.key in self.defaults and (not f.optional or f.key in show):
                self.controls[f.key] = self._make_control(f, opts.get(f.key, f.options))
        self._set_defaults()

        self.presets = {k: dict(v) for k, v in (presets or {}).items()}
        self.preset_notes = dict(preset_notes or {})
        self.preset_menu: W.Dropdown | None = None
        if self.presets:
            start = next(
                (k for k, v in self.presets.items() if v == self.defaults), None
            )
            self.preset_menu = W.Dropdown(
                description="settings",
                options=list(self.presets),
                value=start,
                style={"description_width": "110px"},
                layout=W.Layout(
                    width="auto", max_width="100%", grid_area="auto / 1 / auto / -1"
                ),
            )
            self.preset_menu.observe(self._on_preset, names="value")

        self.run_button = W.Button(
            description="Run", button_style="primary", icon="play"
        )
        self.stop_button = W.Button(
            description="Stop", button_style="warning", icon="stop", disabled=True
        )
        self.progress = W.FloatProgress(
            value=0.0,
            min=0.0,
            max=1.0,
            description="progress",
            layout=W.Layout(width="320px", max_width="100%"),
        )
        self.progress_label = W.Label(value="", layout=W.Layout(min_width="0"))
        self.status_html = W.HTML(
            value=self._status_markup("idle", "Set values, then click Run.")
        )
        self.output = W.Output(layout=W.Layout(min_height="380px"))
        self.run_button.on_click(lambda _b: self.run())
        self.stop_button.on_click(lambda _b: self.stop())

        # auto-fill: as many 220 px columns as fit, so a narrow notebook (1024 px with the
        # file browser open) wraps the controls instead of cutting the third column off
        grid = W.GridBox(
            ([self.preset_menu] if self.preset_menu else [])
            + list(self.controls.values()),
            layout=W.Layout(
                grid_template_columns="repeat(auto-fill, minmax(220px, 1fr))",
                grid_gap="4px 12px",
                width="100%",
            ),
        )
        header = [W.HTML(f"<b>{title}</b>")] if title else []
        self.widget = W.VBox(
            header
            + [
                grid,
                W.HBox(
                    [
                        self.run_button,
                        self.stop_button,
                        self.progress,
                        self.progress_label,
                    ],
                    layout=W.Layout(
                        flex_flow="row wrap", align_items="center", width="100%"
                    ),
                ),
                self.status_html,
                self.output,
            ],
            layout=W.Layout(width="100%", max_width="100%"),
        )
        self._redraw(force=True)

    # ------------------------------------------------------------------ widgets
    @staticmethod
    def _make_control(f: Field, options: tuple) -> W.ValueWidget:
        style = {"description_width": "110px"}
        layout = W.Layout(width="auto")
        if f.kind == "int":
            return W.IntText(description=f.label, style=style, layout=layout)
        if f.kind == "float":
            return W.FloatText(description=f.label, style=style, layout=layout)
        if f.kind == "bool":
            return W.Checkbox(description=f.label, indent=False, layout=layout)
        return W.Dropdown(
            description=f.label, options=list(options), style=style, layout=layout
        )

    def _ipython_display_(self):  # display(panel) / last expression of a cell
        from IPython.display import display

        display(self.widget)

    def _set_defaults(self) -> None:
        for key, w in self.controls.items():
            value = self.defaults[key]
            if isinstance(w, W.Dropdown):
                values = [v for _, v in w.options]
                labels = [lab for lab, _ in w.options]
                if value not in values and value in labels:  # accept the label too
                    value = values[labels.index(value)]
                if value not in values:
                    raise ValueError(
                        f"default {key} = {value!r} is not one of the panel's options {values}."
                    )
            w.value = value

    def _on_preset(self, change) -> None:
        if change["new"] is not None:
            self.load_preset(change["new"])

    def load_preset(self, label: str) -> None:
        """Put every value of preset ``label`` into the controls and the pass-through keys."""
        if label not in self.presets:
            raise ValueError(
                f"preset {label!r} is not one of the panel's {list(self.presets)}."
            )
        values = self.presets[label]
        old = self.defaults
        try:
            self.defaults = dict(values)
            for (
                key,
                w,
            ) in self.controls.items():  # a key the preset lacks keeps its value
                self.defaults.setdefault(key, w.value)
            self._set_defaults()
        except ValueError:
            self.defaults = old
            raise
        if self.preset_menu is not None and self.preset_menu.value != label:
            self.preset_menu.value = label
        if not self.running:
            note = self.preset_notes.get(label, "")
            self._set_status("idle", f"Loaded the settings {label!r}. {note}".strip())

    def config(self) -> dict:
        """``defaults`` updated with the current widget values."""
        cfg = dict(self.defaults)
        cfg.update({k: w.value for k, w in self.controls.items()})
        return cfg

    # ------------------------------------------------------------------ actions
    def run(self) -> bool:
        """Validate the config and start run_fn in a background thread. False if refused."""
        if self.running:
            return False
        cfg = self.config()
        try:
            if self.validate_fn is not None:
                self.validate_fn(cfg)
        except ValueError as exc:
            self._finish("invalid", str(exc))  # clears the previous run's progress
            return False
        with self._lock:
            self.history = []
            self.result = None
            self.error = None
        self._stop.clear()
        self._t0 = time.monotonic()
        self._epochs = cfg.get(
            "epochs"
        )  # fixed for this run even if the widget changes
        self.progress.value = 0.0
        self.progress.bar_style = ""
        self.progress_label.value = ""
        self._set_status("running", "Training…")
        self.run_button.disabled = True
        self.stop_button.disabled = False
        self._redraw(force=True)
        self._thread = threading.Thread(
            target=self._worker, args=(cfg,), daemon=True, name="sharpness-panel-run"
        )
        self._thread.start()
        return True

    def stop(self) -> None:
        """Ask the running run_fn to stop (it polls ``should_stop``)."""
        self._stop.set()
        if self.running:
            self._set_status("running", "Stopping…")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run thread ends (for tests/scripts). True if it ended."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ worker side
    def _worker(self, cfg: dict) -> None:
        try:
            result = self.run_fn(cfg, self._on_record, self._stop.is_set)
        except (
            ValueError
        ) as exc:  # config rejected by the library: one sentence, no traceback
            self.error = exc
            self._finish("invalid", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - shown to the reader as one line
            self.error = exc
            self._finish("error", f"run failed: {type(exc).__name__}: {exc}")
            return
        self.result = result
        status = getattr(result, "status", None) or (
            "stopped" if self._stop.is_set() else "completed"
        )
        message = getattr(result, "message", None) or self._default_message(status, cfg)
        self._finish(status, message)

    def _default_message(self, status: str, cfg: Mapping[str, Any]) -> str:
        last = self.history[-1]["epoch"] if self.history else 0
        took = _fmt_seconds(time.monotonic() - self._t0)
        if status == "stopped":
            return f"stopped at epoch {last} after {took}; history kept."
        return f"{status}: {last} epochs in {took}."

    def _on_record(self, record: Mapping[str, Any]) -> None:
        """callback(record) handed to run_fn: store, update progress/ETA, maybe redraw."""
        with self._lock:
            self.history.append(dict(record))
        epochs = self._epochs
        epoch = record.get("epoch", 0) or 0
        if epochs:
            frac = min(max(epoch / epochs, 0.0), 1.0)
            self.progress.value = frac
            elapsed = time.monotonic() - self._t0
            eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
            self.progress_label.value = (
                f"epoch {epoch}/{epochs} · {_fmt_seconds(elapsed)} elapsed · "
                f"ETA {_fmt_seconds(eta)}"
            )
        self._redraw()

    def _finish(self, status: str, message: str) -> None:
        self.run_button.disabled = False
        self.stop_button.disabled = True
        if status == "invalid":  # nothing ran with these values: no progress to show
            self.progress.value = 0.0
            self.progress.bar_style = ""
            self.progress_label.value = ""
        else:  # the run is over: epochs reached and time taken, no ETA
            last = self.history[-1].get("epoch", 0) if self.history else 0
            took = _fmt_seconds(time.monotonic() - self._t0)
            self.progress_label.value = (
                f"epoch {last}/{self._epochs} · {took}" if self._epochs else took
            )
        if status in ("completed",):
            self.progress.value = 1.0
            self.progress.bar_style = "success"
        elif status in ("diverged", "error"):
            self.progress.bar_style = "danger"
        elif status == "stopped":
            self.progress.bar_style = "warning"
        self._set_status(status, message)
        if status != "invalid":
            self._redraw(force=True)

    # ------------------------------------------------------------------ display
    def _set_status(self, status: str, message: str) -> None:
        self.status, self.message = status, message
        self.status_html.value = self._status_markup(status, message)

    @staticmethod
    def _status_markup(status: str, message: str) -> str:
        import html

        color = {
            "completed": "#2ca02c",
            "stopped": "#b8860b",
            "diverged": "#d62728",
            "error": "#d62728",
            "invalid": "#d62728",
        }.get(status, "#555")
        return (
            f'<span class="panel-status" data-status="{status}" style="color:{color}">'
            f"{html.escape(message)}</span>"
        )

    def _redraw(self, force: bool = False) -> None:
        """Rebuild the figure from compare_runs + history, throttled to redraw_every seconds."""
        now = time.monotonic()
        if not force and now - self._last_draw < self.redraw_every:
            return
        self._last_draw = now
        with self._lock:
            hist = list(self.history)
        runs = dict(self.compare_runs)
        colors = {}
        if hist:
            runs[YOUR_RUN] = hist
            colors[YOUR_RUN] = YOUR_RUN_COLOR
        if not runs:
            self.figure = None
            self.output.outputs = ()
            return
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
        self.figure = fig
        # Assigning .outputs (instead of `with self.output:`) is safe from the worker thread:
        # the context manager depends on the kernel's current parent message.
        bundle = plotting.figure_mimebundle(fig)
        self.output.outputs = (
            {"output_type": "display_data", "data": bundle, "metadata": {}},
        )


def _preset_values(config) -> dict:
    """Panel values of a TrainConfig, keeping a multi-phase schedule as a pass-through key.

    The controls show one lr / rho / epochs (the first phase's lr and rho, the total epochs);
    ``_schedule_of`` remembers them, and the schedule is used as long as the reader leaves
    those three controls as loaded (see :func:`_with_schedule`).
    """
    from .experiments import panel_defaults

    config = config.validate()
    values = panel_defaults(config)
    if len(config.phases) > 1:
        values["phases"] = [dataclasses.asdict(p) for p in config.phases]
        values["_schedule_of"] = (values["lr"], values["rho"], values["epochs"])
    return values


def _with_schedule(values: Mapping[str, Any]) -> dict:
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


def _schedule_note(config) -> str:
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


def training_panel(
    config,
    compare_runs: Mapping[str, Any] | None = None,
    title: str | None = None,
    show: tuple[str, ...] = (),
    presets: tuple[str, ...] = (),
) -> ControlPanel:
    """A :class:`ControlPanel` wired to :func:`sharpness_lib.train`.

    ``config`` is a :class:`~sharpness_lib.training.TrainConfig` or a preset name; its values
    are the panel's defaults. Invalid values are refused with the library's own sentence.
    ``show`` adds optional controls (``"optimizer"``, ``"loss"``, ``"label_smoothing"``,
    ``"dataset"``, ``"batch_size"``); without it those settings keep the config's values.
    ``presets`` (preset names) adds a settings menu that loads a preset's values, including a
    multi-phase schedule (e.g. ``"book-fig2a"``, the Sim-BN settings that generalize); the
    starting ``config`` is its first entry.
    """
    from .experiments import panel_run_fn, validate_panel
    from .presets import get_preset

    start = config
    if isinstance(config, str):
        config = get_preset(config).config
    menu, notes = {}, {}
    if presets:
        for entry in ((start,) if isinstance(start, str) else ()) + tuple(presets):
            if isinstance(entry, str) and entry in menu:
                continue
            preset = get_preset(entry)
            label = f"{preset.name}: {preset.description}"
            menu[label] = _preset_values(preset.config)
            notes[label] = _schedule_note(preset.config)
        if not isinstance(start, str):
            menu = {"this chapter's settings": _preset_values(config), **menu}

    def run_fn(values, callback, should_stop):
        return panel_run_fn(_with_schedule(values), callback, should_stop)

    def validate_fn(values):
        validate_panel(_with_schedule(values))

    return ControlPanel(
        _preset_values(config),
        run_fn,
        compare_runs,
        validate_fn=validate_fn,
        title=title,
        show=show,
        presets=menu,
        preset_notes=notes,
    )
