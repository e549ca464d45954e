"""Drive sharpness_lib.ui.ControlPanel programmatically.

No browser, no kernel, no training code."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("ipywidgets")

from ui_fakes import fake_run_fn

from sharpness_lib import panel_state, ui
from sharpness_lib.ui import ControlPanel

DEFAULTS = dict(
    algorithm="sam1",
    width=50,
    bias=True,
    norm="none",
    activation="relu",
    lr=0.01,
    rho=0.05,
    weight_decay=0.0,
    init_scale=1.0,
    epochs=200,
    seed=0,
    d=10,
    n=20,
    extra_key="passed through",
)

REFERENCE = {
    "GD+WD (paper setting)": [
        {
            "epoch": e,
            "train_loss": 1.0 / (1 + e),
            "test_error": 0.3,
            "test_error_se": 0,
            "hessian_trace": 20.0,
        }
        for e in range(0, 201, 20)
    ]
}


def labels_in(fig):
    return {t.meta["label"] for t in fig.data}


def test_panel_builds_controls_from_defaults_only():
    p = ControlPanel({"width": 10, "lr": 0.1, "other": 1}, fake_run_fn)
    assert set(p.controls) == {"width", "lr"}
    assert p.config() == {"width": 10, "lr": 0.1, "other": 1}
    assert p.status == "idle" and p.figure is None  # nothing to draw yet


def test_nothing_runs_on_value_change():
    calls = []
    p = ControlPanel(DEFAULTS, lambda *a: calls.append(a))
    p.controls["width"].value = 99
    p.controls["rho"].value = 0.2
    time.sleep(0.05)
    assert calls == [] and not p.running


def test_run_streams_records_into_figure_and_progress():
    p = ControlPanel(DEFAULTS, fake_run_fn, compare_runs=REFERENCE, redraw_every=0)
    assert labels_in(p.figure) == {
        "GD+WD (paper setting)"
    }  # reference shown before any run
    p.controls["width"].value = 64
    assert p.run()
    assert p.wait(60)  # 51 forced redraws: ~5 s idle, ~20 s on a loaded 2-core machine
    assert p.status == "completed", p.message
    assert len(p.history) == 51  # epochs 0..200 every 4
    assert p.history[-1]["epoch"] == 200
    assert labels_in(p.figure) == {"GD+WD (paper setting)", panel_state.YOUR_RUN}
    mine = next(
        t
        for t in p.figure.data
        if t.meta["label"] == panel_state.YOUR_RUN and t.xaxis == "x"
    )
    assert mine.x[-1] == 200 and mine.line.color == panel_state.YOUR_RUN_COLOR
    assert p.progress.value == 1.0 and "epoch 200/200" in p.progress_label.value
    assert not p.run_button.disabled and p.stop_button.disabled
    # the displayed output holds the same figure (a plotly bundle, no traceback)
    (out,) = p.output.outputs
    assert out["output_type"] == "display_data"
    assert any(
        k in out["data"] for k in ("text/html", "application/vnd.plotly.v1+json")
    )


def test_run_fn_receives_widget_values_and_passthrough_keys():
    seen = {}

    def run_fn(config, callback, should_stop):
        seen.update(config)
        callback({"epoch": 1, "train_loss": 0.5})

    p = ControlPanel(DEFAULTS, run_fn)
    p.controls["norm"].value = "sim_ln"
    p.controls["epochs"].value = 1
    p.run()
    p.wait(5)
    assert seen["norm"] == "sim_ln" and seen["epochs"] == 1
    assert seen["extra_key"] == "passed through"
    assert p.status == "completed"


def test_stop_is_honoured_while_running_in_background():
    started = threading.Event()

    def slow(config, callback, should_stop):
        started.set()
        return fake_run_fn(config, callback, should_stop, delay=0.02)

    p = ControlPanel(dict(DEFAULTS, epochs=100_000), slow, redraw_every=0.05)
    p.run()
    assert started.wait(5)
    # the calling thread stays free while training runs (this is what lets the kernel
    # process the Stop click)
    assert p.running and p.status == "running"
    assert not p.run()  # a second Run while running is refused
    time.sleep(0.1)
    p.stop_button.click()
    assert p.wait(5), "run_fn did not stop"
    assert p.status == "stopped"
    assert p.message.startswith("stopped at epoch")
    assert 0 < len(p.history) < 100  # partial history kept ...
    assert panel_state.YOUR_RUN in labels_in(p.figure)  # ... and drawn
    assert p.progress.bar_style == "warning"


def test_divergence_message_shown_and_history_kept():
    p = ControlPanel(DEFAULTS, lambda c, cb, s: fake_run_fn(c, cb, s, diverge_at=100))
    p.run()
    p.wait(5)
    assert p.status == "diverged"
    assert p.message == "diverged at epoch 100: loss became inf; history kept."
    assert p.history and p.history[-1]["epoch"] < 100
    assert "diverged at epoch 100" in p.status_html.value
    assert p.progress.bar_style == "danger"


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("width", 0, "width = 0 is invalid: it must be an integer >= 1."),
        (
            "n",
            2000,
            "n = 2000 is invalid: with d = 10 the hypercube has only 2**10 = 1024 points",
        ),
        ("lr", -1.0, "lr = -1.0 is invalid"),
    ],
)
def test_invalid_values_refused_with_one_sentence(key, value, expected):
    calls = []
    p = ControlPanel(DEFAULTS, lambda *a: calls.append(a))
    p.controls[key].value = value
    assert p.run() is False
    assert calls == [] and p._thread is None  # no thread started
    assert p.status == "invalid"
    assert p.message.startswith(expected)
    assert (
        "Traceback" not in p.status_html.value and expected[:20] in p.status_html.value
    )


def test_valueerror_from_run_fn_or_validate_fn_is_displayed_not_raised():
    def strict(config):
        if config["width"] > 100:
            raise ValueError(
                f"width = {config['width']} is invalid: it must be between 1 and 100."
            )

    def lib_run(config, callback, should_stop):
        raise ValueError(
            "norm = 'sim_ln' needs bias=True: set bias on or choose another norm."
        )

    p = ControlPanel(DEFAULTS, lib_run, validate_fn=strict)
    p.controls["width"].value = 101
    assert not p.run()
    assert p.message == "width = 101 is invalid: it must be between 1 and 100."
    p.controls["width"].value = 10
    assert p.run()
    p.wait(5)
    assert p.status == "invalid" and p.message.startswith(
        "norm = 'sim_ln' needs bias=True"
    )
    assert not p.run_button.disabled  # panel usable again


def test_unexpected_exception_is_one_line_not_traceback():
    def broken(config, callback, should_stop):
        callback({"epoch": 0, "train_loss": 1.0})
        raise RuntimeError("boom")

    p = ControlPanel(DEFAULTS, broken)
    p.run()
    p.wait(5)
    assert p.status == "error" and p.message == "run failed: RuntimeError: boom"
    assert isinstance(p.error, RuntimeError)
    assert len(p.history) == 1


def test_rerun_starts_a_fresh_history():
    p = ControlPanel(DEFAULTS, fake_run_fn)
    p.run(), p.wait(5)
    n1 = len(p.history)
    p.controls["epochs"].value = 100
    p.run(), p.wait(5)
    assert p.history[0]["epoch"] == 0 and len(p.history) == 51 and n1 == 51
    assert p.history[-1]["epoch"] == 100


def test_dropdown_default_may_be_the_label_and_unknown_is_rejected():
    p = ControlPanel(dict(DEFAULTS, norm="Sim-BN"), fake_run_fn)
    assert p.config()["norm"] == "sim_bn"
    with pytest.raises(ValueError, match="not one of"):
        ControlPanel(dict(DEFAULTS, norm="batchnorm"), fake_run_fn)
    p = ControlPanel(
        dict(DEFAULTS, norm="simbn"),
        fake_run_fn,
        options={"norm": (("none", "none"), ("Sim-BN", "simbn"))},
    )
    assert p.config()["norm"] == "simbn"


def test_arch_choice_matches_library_spelling():
    p = ControlPanel({"arch": "sbn", "width": 8}, fake_run_fn)
    assert p.controls["arch"].label == "2-MLP-Sim-BN" and p.config()["arch"] == "sbn"


def test_panel_displays_as_widget():
    p = ControlPanel(DEFAULTS, fake_run_fn)
    assert p.widget.children[-1] is p.output
    bundle = p.widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_optional_controls_appear_only_on_request():
    defaults = dict(DEFAULTS, optimizer="adam", loss="mse")
    assert "optimizer" not in ControlPanel(defaults, fake_run_fn).controls
    p = ControlPanel(defaults, fake_run_fn, show=("optimizer",))
    assert p.controls["optimizer"].value == "adam" and "loss" not in p.controls
    assert p.config()["loss"] == "mse"  # passed through unchanged


def test_label_has_no_eta_after_the_end_or_stop():
    p = ControlPanel(DEFAULTS, fake_run_fn)
    p.run(), p.wait(30)
    assert p.progress_label.value.startswith("epoch 200/200 · ")
    assert "ETA" not in p.progress_label.value

    p = ControlPanel(
        dict(DEFAULTS, epochs=100_000),
        lambda c, cb, s: fake_run_fn(c, cb, s, delay=0.01),
        redraw_every=10,
    )
    p.run()
    time.sleep(0.2)
    p.stop(), p.wait(10)
    assert p.status == "stopped" and "ETA" not in p.progress_label.value
    assert (
        p.progress_label.value.startswith("epoch ")
        and "/100000 · " in p.progress_label.value
    )


def test_refused_value_clears_the_previous_runs_progress():
    p = ControlPanel(DEFAULTS, fake_run_fn)
    p.run(), p.wait(30)
    assert p.progress.value == 1.0
    p.controls["width"].value = 0
    assert not p.run()
    assert p.status == "invalid"
    assert (
        p.progress.value == 0
        and p.progress_label.value == ""
        and p.progress.bar_style == ""
    )


def test_panel_figure_legend_sits_below_the_axis_titles_and_bands_have_no_markers():
    p = ControlPanel(
        DEFAULTS,
        fake_run_fn,
        compare_runs={
            "A": [REFERENCE["GD+WD (paper setting)"]] * 2,
            "B": REFERENCE["GD+WD (paper setting)"],
        },
    )
    legend = p.figure.layout.legend
    assert legend.yref == "container" and legend.y == 0 and legend.yanchor == "bottom"
    assert (
        p.figure.layout.margin.b >= 80
    )  # room for the "epoch" titles above the legend
    bands = [t for t in p.figure.data if t.meta["role"] == "band"]
    assert bands and all(t.mode == "lines" for t in bands)


def test_controls_wrap_instead_of_being_cut_off():
    p = ControlPanel(DEFAULTS, fake_run_fn)
    grid, buttons = p.widget.children[0], p.widget.children[1]
    assert "auto-fill" in grid.layout.grid_template_columns
    assert buttons.layout.flex_flow == "row wrap"


def test_presets_menu_loads_controls_and_pass_through_keys():
    fast = dict(DEFAULTS)
    other = dict(
        DEFAULTS, width=7, lr=0.5, extra_key="from the preset", schedule=[1, 2]
    )
    p = ControlPanel(
        DEFAULTS,
        fake_run_fn,
        presets={"fast": fast, "other": other},
        preset_notes={"other": "Note."},
    )
    assert p.preset_menu.value == "fast"
    p.preset_menu.value = "other"
    cfg = p.config()
    assert cfg["width"] == 7 and cfg["lr"] == 0.5
    assert cfg["extra_key"] == "from the preset" and cfg["schedule"] == [1, 2]
    assert p.message == "Loaded the settings 'other'. Note."
    p.load_preset("fast")
    assert p.config()["width"] == 50 and "schedule" not in p.config()
    with pytest.raises(ValueError, match="not one of"):
        p.load_preset("nope")


def test_training_panel_sim_bn_preset_keeps_its_schedule_until_lr_changes():
    from sharpness_lib.experiments import config_from_panel
    from sharpness_lib.presets import get_preset

    p = ui.training_panel("book-fig1b", presets=("book-fig1a", "book-fig2a"))
    assert len(p.preset_menu.options) == 3 and p.preset_menu.value.startswith(
        "book-fig1b:"
    )
    (sbn,) = [o for o in p.preset_menu.options if o.startswith("book-fig2a:")]
    p.preset_menu.value = sbn
    assert p.controls["norm"].value == "sim_bn" and p.controls["bias"].value is True
    assert "Schedule: 20 epochs at lr 0.05, ρ 0.02 then 80 epochs" in p.message
    want = get_preset("book-fig2a").config.validate()
    got = config_from_panel(panel_state.with_schedule(p.config()))
    assert got.phases == want.phases and got.gamma_init == want.gamma_init
    assert got.arch == "sbn" and got.epochs == 100
    p.validate_fn(p.config())  # accepted
    # the reader's own lr: one phase with the controls' values
    p.controls["lr"].value = 0.02
    got = config_from_panel(panel_state.with_schedule(p.config()))
    assert got.phases == () and got.lr == 0.02 and got.epochs == 100
