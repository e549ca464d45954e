"""The panel's knobs <-> the library's configs (sharpness_lib.experiments)."""

from __future__ import annotations

import pytest

from sharpness_lib.experiments import (arch_from_knobs, config_from_panel, knobs_from_arch,
                                       panel_defaults)
from sharpness_lib.presets import PRESETS
from sharpness_lib.training import TrainConfig

ALL_ARCHS = ("nobias", "bias", "softplus", "sbn", "sln", "bn", "ln", "deep_bias")


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_knobs_round_trip(arch):
    knobs = knobs_from_arch(arch, depth=4)
    assert arch_from_knobs(**knobs) == arch


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_survives_the_panel(name):
    """A preset's first phase goes through the panel's values and back unchanged."""
    cfg = PRESETS[name].config.validate()
    first = cfg.schedule()[0]
    back = config_from_panel(panel_defaults(cfg))
    expected = cfg.replace(phases=(), lr=first.lr, rho=first.rho if cfg.algo in ("sam1", "msam")
                           else 0.0, epochs=cfg.epochs).validate()
    for key in ("arch", "algo", "width", "wd", "lr", "rho", "batch_size", "init_scale",
                "first_layer_scale", "loss", "label_smoothing", "optimizer", "seed", "d", "n"):
        assert getattr(back, key) == getattr(expected, key), key
    if cfg.arch == "deep_bias":
        assert back.depth == cfg.depth


def test_depth_knob_makes_the_deep_mlp():
    cfg = config_from_panel(dict(bias=True, norm="none", activation="relu", depth=3,
                                 algorithm="sam1", lr=0.01, rho=0.05, epochs=10, d=10, n=20))
    assert (cfg.arch, cfg.depth) == ("deep_bias", 3)


@pytest.mark.parametrize("knobs, words", [
    (dict(bias=False, norm="none", activation="relu", depth=3), "depth 3"),
    (dict(bias=True, norm="bn", activation="relu", depth=3), "depth 3"),
    (dict(bias=True, norm="none", activation="relu", depth=9), "from 2 to 6"),
    (dict(bias=False, norm="ln", activation="relu"), "switch bias on"),
    (dict(bias=True, norm="group", activation="relu"), "normalization must be one of"),
    (dict(bias=False, norm="none", activation="softplus"), "switch bias on"),
])
def test_undefined_combinations_are_refused_in_one_sentence(knobs, words):
    with pytest.raises(ValueError) as err:
        arch_from_knobs(**knobs)
    assert words in str(err.value) and str(err.value).count(".") <= 3


def test_switching_a_minibatch_preset_to_sam_drops_its_batch_size():
    values = panel_defaults(TrainConfig(arch="nobias", algo="sgd", batch_size=10).validate())
    assert values["batch_size"] == 10
    values["algorithm"] = "sam1"
    assert config_from_panel(values).batch_size == 1


def test_spread_and_finals():
    from sharpness_lib.experiments import spread

    assert spread([0.1, 0.3, 0.2], ".2f") == "0.20 (0.10–0.30)"
    with pytest.raises(ValueError):
        spread([])
