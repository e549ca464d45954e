"""The panel's widget-free logic (sharpness_lib.panel_state): no ipywidgets needed."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import pytest

from sharpness_lib import panel_state as ps


def test_panel_state_imports_no_widgets():
    code = (
        "import sys, sharpness_lib.panel_state; "
        "print(any(m.split('.')[0] in ('ipywidgets', 'IPython') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "config,expected",
    [
        ({"epochs": 2.5}, "epochs = 2.5 is invalid: it must be an integer >= 1."),
        ({"d": 1}, "d = 1 is invalid: it must be an integer >= 2."),
        ({"lr": math.inf}, "lr = inf is invalid: it must be a finite number > 0."),
        ({"rho": -0.1}, "rho = -0.1 is invalid: it must be a finite number >= 0."),
        ({"weight_decay": math.nan}, "weight_decay = nan is invalid"),
        (
            {"init_scale": 0},
            "init_scale = 0 is invalid: it must be a finite number > 0.",
        ),
        (
            {"d": 3, "n": 9},
            "n = 9 is invalid: with d = 3 the hypercube has only 2**3 = 8",
        ),
    ],
)
def test_basic_validate_names_value_and_range(config, expected):
    with pytest.raises(ValueError) as err:
        ps.basic_validate(config)
    assert str(err.value).startswith(expected)


def test_basic_validate_accepts_edges_and_skips_the_count_check_for_huge_d():
    ps.basic_validate({"d": 3, "n": 8, "rho": 0, "weight_decay": 0.0, "lr": 1e-9})
    ps.basic_validate({"d": 100, "n": 10**40})  # 2**100 points: no overflow-prone check


def test_choice_value_accepts_value_or_label_and_refuses_others():
    options = (("Sim-BN", "sim_bn"), ("none", "none"))
    assert ps.choice_value("norm", "sim_bn", options) == "sim_bn"
    assert ps.choice_value("norm", "Sim-BN", options) == "sim_bn"
    with pytest.raises(ValueError, match=r"default norm = 'bn' is not one of"):
        ps.choice_value("norm", "bn", options)


@pytest.mark.parametrize(
    "seconds,text",
    [(0.4, "0s"), (59.6, "1m00s"), (187, "3m07s"), (3900, "1h05m"), (math.nan, "?")],
)
def test_fmt_seconds(seconds, text):
    assert ps.fmt_seconds(seconds) == text


def test_progress_texts_while_running_and_after():
    assert ps.running_progress(50, 200, 30.0) == (
        0.25,
        "epoch 50/200 · 30s elapsed · ETA 1m30s",
    )
    frac, label = ps.running_progress(0, 200, 1.0)  # no ETA before the first epoch
    assert frac == 0 and label.endswith("ETA ?")
    assert ps.running_progress(300, 200, 1.0)[0] == 1.0  # clipped
    assert ps.finished_label(120, 200, 75) == "epoch 120/200 · 1m15s"
    assert ps.finished_label(0, None, 5) == "5s"
    assert ps.default_message("stopped", 40, 3) == (
        "stopped at epoch 40 after 3s; history kept."
    )
    assert ps.default_message("completed", 200, 3) == "completed: 200 epochs in 3s."


def test_status_markup_escapes_the_message_and_colours_by_status():
    html = ps.status_markup("invalid", "n = 9 < 2**3 & more")
    assert 'class="panel-status" data-status="invalid"' in html
    assert "#d62728" in html and "n = 9 &lt; 2**3 &amp; more" in html
    assert "#555" in ps.status_markup("running", "Training…")


def test_run_log_progress_and_outcome():
    log = ps.PanelRun()
    log.start(epochs=100)
    frac, label = log.add({"epoch": 25, "train_loss": 1.0})
    assert frac == 0.25 and label.startswith("epoch 25/100 · ")
    assert log.snapshot() == [{"epoch": 25, "train_loss": 1.0}]
    assert log.last_epoch() == 25 and log.finished_label().startswith("epoch 25/100 · ")
    # a result's own status and message win; otherwise they follow the Stop flag
    assert log.outcome(SimpleNamespace(status="diverged", message="boom."), False) == (
        "diverged",
        "boom.",
    )
    status, message = log.outcome(None, stopped=True)
    assert status == "stopped" and message.startswith("stopped at epoch 25 after ")
    assert log.outcome(None, stopped=False)[1].startswith("completed: 25 epochs in ")
    log.start(epochs=None)  # a fresh run: no records, no progress without a budget
    assert log.snapshot() == [] and log.add({"epoch": 3}) is None


def test_panel_figure_overlays_your_run_on_the_references():
    ref = [{"epoch": e, "train_loss": 1.0 / (1 + e)} for e in range(3)]
    assert ps.panel_figure({}, []) is None
    fig = ps.panel_figure({"ref": ref}, ref[:2])
    labels = {t.meta["label"] for t in fig.data}
    assert labels == {"ref", ps.YOUR_RUN}
    assert fig.layout.legend.yref == "container" and fig.layout.margin.b == 60 + 22


def test_schedule_kept_only_while_lr_rho_epochs_stay_as_loaded():
    phases = [
        {"epochs": 2, "lr": 0.1, "rho": 0.0},
        {"epochs": 3, "lr": 0.01, "rho": 0.0},
    ]
    loaded = {"lr": 0.1, "rho": 0.0, "epochs": 5, "phases": phases}
    loaded["_schedule_of"] = (0.1, 0.0, 5)
    assert ps.with_schedule(loaded)["phases"] == phases
    assert "_schedule_of" not in ps.with_schedule(loaded)
    assert "phases" not in ps.with_schedule(dict(loaded, epochs=6))
    assert "phases" not in ps.with_schedule(dict(loaded, _schedule_of=None))


def test_preset_menu_starts_with_the_chapter_settings_or_the_start_preset():
    from sharpness_lib.presets import get_preset

    assert ps.preset_menu("book-fig1b", ()) == ({}, {})
    menu, notes = ps.preset_menu("book-fig1b", ("book-fig1b", "book-fig2a"))
    first, second = menu  # the repeated start preset is listed once
    assert first.startswith("book-fig1b: ") and second.startswith("book-fig2a: ")
    assert notes[first] == "" and notes[second].startswith("Schedule: ")
    assert menu[second]["_schedule_of"] == (
        menu[second]["lr"],
        menu[second]["rho"],
        menu[second]["epochs"],
    )
    cfg = get_preset("book-fig1a").config
    menu, _ = ps.preset_menu(cfg, ("book-fig2a",))
    assert list(menu)[0] == "this chapter's settings"
    assert menu["this chapter's settings"] == ps.preset_values(cfg)
