"""Interactive control panel for training runs in a live kernel.

The one library module that imports ipywidgets: it draws the panel, runs ``run_fn`` in a
thread and shows what :mod:`sharpness_lib.panel_state` (no widgets) checks, says and plots.

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

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as W

from . import plotting
from .panel_state import (
    BAR_STYLES,
    FIELDS,
    Field,
    PanelRun,
    basic_validate,
    choice_value,
    panel_figure,
    preset_menu,
    preset_values,
    status_markup,
    with_schedule,
)

__all__ = ["FIELDS", "ControlPanel", "basic_validate", "training_panel"]

_STYLE = {"description_width": "110px"}


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
        self.presets = {k: dict(v) for k, v in (presets or {}).items()}
        self.preset_notes = dict(preset_notes or {})

        # idle | running | completed | stopped | diverged | error | invalid
        self.status: str = "idle"
        self.message: str = ""
        self.result: Any = None
        # kept for debugging; never shown as a traceback
        self.error: BaseException | None = None
        self.figure = None  # the last go.Figure drawn

        self._log = PanelRun()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_draw = 0.0

        self.controls = self._build_controls(dict(options or {}), show)
        self._set_defaults()
        self.preset_menu = self._build_preset_menu()
        self._build_run_row()
        self.status_html = W.HTML(
            value=status_markup("idle", "Set values, then click Run.")
        )
        self.output = W.Output(layout=W.Layout(min_height="380px"))
        self.widget = self._build_layout(title)
        self._wire()
        self._redraw(force=True)

    # ------------------------------------------------------------------ widgets
    def _build_controls(
        self, options: Mapping[str, tuple], show: tuple[str, ...]
    ) -> dict[str, W.ValueWidget]:
        """One control per field whose key is in ``defaults`` (optional ones if shown)."""
        return {
            f.key: self._make_control(f, options.get(f.key, f.options))
            for f in FIELDS
            if f.key in self.defaults and (not f.optional or f.key in show)
        }

    @staticmethod
    def _make_control(f: Field, options: tuple) -> W.ValueWidget:
        layout = W.Layout(width="auto")
        if f.kind == "int":
            return W.IntText(description=f.label, style=_STYLE, layout=layout)
        if f.kind == "float":
            return W.FloatText(description=f.label, style=_STYLE, layout=layout)
        if f.kind == "bool":
            return W.Checkbox(description=f.label, indent=False, layout=layout)
        return W.Dropdown(
            description=f.label, options=list(options), style=_STYLE, layout=layout
        )

    def _build_preset_menu(self) -> W.Dropdown | None:
        """The "settings" menu spanning the grid's full width; None without presets."""
        if not self.presets:
            return None
        start = next((k for k, v in self.presets.items() if v == self.defaults), None)
        return W.Dropdown(
            description="settings",
            options=list(self.presets),
            value=start,
            style=_STYLE,
            layout=W.Layout(
                width="auto", max_width="100%", grid_area="auto / 1 / auto / -1"
            ),
        )

    def _build_run_row(self) -> None:
        """Run and Stop buttons, the progress bar and its epoch / ETA label."""
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

    def _build_layout(self, title: str | None) -> W.VBox:
        """Title, controls grid, run row, status line and figure, top to bottom."""
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
        run_row = W.HBox(
            [self.run_button, self.stop_button, self.progress, self.progress_label],
            layout=W.Layout(flex_flow="row wrap", align_items="center", width="100%"),
        )
        header = [W.HTML(f"<b>{title}</b>")] if title else []
        return W.VBox(
            header + [grid, run_row, self.status_html, self.output],
            layout=W.Layout(width="100%", max_width="100%"),
        )

    def _wire(self) -> None:
        """Clicks and the settings menu; nothing trains when a value changes, only on Run."""
        self.run_button.on_click(lambda _b: self.run())
        self.stop_button.on_click(lambda _b: self.stop())
        if self.preset_menu is not None:
            self.preset_menu.observe(self._on_preset, names="value")

    def _ipython_display_(self):  # display(panel) / last expression of a cell
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ values
    def _set_defaults(self) -> None:
        for key, w in self.controls.items():
            value = self.defaults[key]
            if isinstance(w, W.Dropdown):
                value = choice_value(key, value, w.options)
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
        old = self.defaults
        try:
            self.defaults = dict(self.presets[label])
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

    @property
    def history(self) -> list[dict]:
        """The log points of the current (or last) run, as handed to ``callback``."""
        return self._log.records

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
        self._log.start(cfg.get("epochs"))
        self.result = None
        self.error = None
        self._stop.clear()
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
        except ValueError as exc:  # config rejected by the library: one sentence
            self.error = exc
            self._finish("invalid", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - shown to the reader as one line
            self.error = exc
            self._finish("error", f"run failed: {type(exc).__name__}: {exc}")
            return
        self.result = result
        self._finish(*self._log.outcome(result, self._stop.is_set()))

    def _on_record(self, record: Mapping[str, Any]) -> None:
        """callback(record) handed to run_fn: store, update progress/ETA, maybe redraw."""
        progress = self._log.add(record)
        if progress is not None:
            self.progress.value, self.progress_label.value = progress
        self._redraw()

    def _finish(self, status: str, message: str) -> None:
        self.run_button.disabled = False
        self.stop_button.disabled = True
        if status == "invalid":  # nothing ran with these values: no progress to show
            self.progress.value = 0.0
            self.progress.bar_style = ""
            self.progress_label.value = ""
        else:
            self.progress_label.value = self._log.finished_label()
        if status == "completed":
            self.progress.value = 1.0
        if status in BAR_STYLES:
            self.progress.bar_style = BAR_STYLES[status]
        self._set_status(status, message)
        if status != "invalid":
            self._redraw(force=True)

    # ------------------------------------------------------------------ display
    def _set_status(self, status: str, message: str) -> None:
        self.status, self.message = status, message
        self.status_html.value = status_markup(status, message)

    def _redraw(self, force: bool = False) -> None:
        """Rebuild the figure from compare_runs + history, throttled to redraw_every seconds."""
        now = time.monotonic()
        if not force and now - self._last_draw < self.redraw_every:
            return
        self._last_draw = now
        fig = panel_figure(self.compare_runs, self._log.snapshot())
        self.figure = fig
        if fig is None:
            self.output.outputs = ()
            return
        # Assigning .outputs (instead of `with self.output:`) is safe from the worker thread:
        # the context manager depends on the kernel's current parent message.
        bundle = plotting.figure_mimebundle(fig)
        self.output.outputs = (
            {"output_type": "display_data", "data": bundle, "metadata": {}},
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

    menu, notes = preset_menu(config, presets)
    if isinstance(config, str):
        config = get_preset(config).config

    def run_fn(values, callback, should_stop):
        return panel_run_fn(with_schedule(values), callback, should_stop)

    def validate_fn(values):
        validate_panel(with_schedule(values))

    return ControlPanel(
        preset_values(config),
        run_fn,
        compare_runs,
        validate_fn=validate_fn,
        title=title,
        show=show,
        presets=menu,
        preset_notes=notes,
    )
