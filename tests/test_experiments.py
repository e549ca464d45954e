"""The panel's knobs <-> the library's configs (sharpness_lib.experiments)."""

from __future__ import annotations

import pytest

from sharpness_lib.experiments import (
    arch_from_knobs,
    config_from_panel,
    knobs_from_arch,
    panel_defaults,
)
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
    expected = cfg.replace(
        phases=(),
        lr=first.lr,
        rho=first.rho if cfg.algo in ("sam1", "msam") else 0.0,
        epochs=cfg.epochs,
    ).validate()
    for key in (
        "arch",
        "algo",
        "width",
        "wd",
        "lr",
        "rho",
        "batch_size",
        "init_scale",
        "first_layer_scale",
        "loss",
        "label_smoothing",
        "optimizer",
        "seed",
        "d",
        "n",
    ):
        assert getattr(back, key) == getattr(expected, key), key
    if cfg.arch == "deep_bias":
        assert back.depth == cfg.depth


def test_depth_knob_makes_the_deep_mlp():
    cfg = config_from_panel(
        dict(
            bias=True,
            norm="none",
            activation="relu",
            depth=3,
            algorithm="sam1",
            lr=0.01,
            rho=0.05,
            epochs=10,
            d=10,
            n=20,
        )
    )
    assert (cfg.arch, cfg.depth) == ("deep_bias", 3)


@pytest.mark.parametrize(
    "knobs, words",
    [
        (dict(bias=False, norm="none", activation="relu", depth=3), "depth 3"),
        (dict(bias=True, norm="bn", activation="relu", depth=3), "depth 3"),
        (dict(bias=True, norm="none", activation="relu", depth=9), "from 2 to 6"),
        (dict(bias=False, norm="ln", activation="relu"), "switch bias on"),
        (
            dict(bias=True, norm="group", activation="relu"),
            "normalization must be one of",
        ),
        (dict(bias=False, norm="none", activation="softplus"), "switch bias on"),
    ],
)
def test_undefined_combinations_are_refused_in_one_sentence(knobs, words):
    with pytest.raises(ValueError) as err:
        arch_from_knobs(**knobs)
    assert words in str(err.value) and str(err.value).count(".") <= 3


def test_switching_a_minibatch_preset_to_sam_drops_its_batch_size():
    values = panel_defaults(
        TrainConfig(arch="nobias", algo="sgd", batch_size=10).validate()
    )
    assert values["batch_size"] == 10
    values["algorithm"] = "sam1"
    assert config_from_panel(values).batch_size == 1


def test_spread_and_finals():
    from sharpness_lib.experiments import spread

    assert spread([0.1, 0.3, 0.2], ".2f") == "0.20 (0.10–0.30)"
    with pytest.raises(ValueError):
        spread([])


# ------------------------------------------------------------------ the chapters' helpers
TINY_RUN = dict(
    d=6, n=12, width=8, epochs=4, log_every=2, lr=0.05, rho=0.1, test_samples=64
)


def test_run_seeds_equals_one_train_per_seed():
    """Parallel seeds (threads: the engine covers this run) give each seed's own run, in the
    order of ``seeds``."""
    from sharpness_lib.experiments import finals, histories, run_seeds, summary
    from sharpness_lib.training import train

    cfg = TrainConfig(arch="bias", algo="sam1", **TINY_RUN).validate()
    results = run_seeds(cfg, seeds=(2, 0), n_jobs=2)
    assert [r.config.seed for r in results] == [2, 0]
    for r, seed in zip(results, (2, 0)):
        alone = train(cfg.replace(seed=seed))
        assert r.history == alone.history
    hs = histories(results)
    assert hs == [r.history for r in results] and [h[-1]["epoch"] for h in hs] == [4, 4]
    losses = finals(results, "train_loss")
    assert losses == [r.history[-1]["train_loss"] for r in results]
    mean, lo, hi = summary(results, "train_loss")
    assert lo <= mean <= hi and (lo, hi) == (min(losses), max(losses))


def test_optimizer_study_runs_sam_and_the_optimizer_alone():
    from sharpness_lib.experiments import optimizer_study

    bases = {"tiny": TrainConfig(arch="bias", **TINY_RUN)}
    rows, failed = optimizer_study(
        bases,
        {"sgd": 0.05, "adam": 1e-3, ("tiny", "adam"): 2e-3},
        optimizers=("sgd", "adam"),
        seeds=(0,),
        rho=0.1,
        n_jobs=1,
        backend="sequential",
    )
    assert failed == []
    assert len(rows) == 2 * 2  # optimizers x (1-SAM, alone)
    assert {(r["optimizer"], r["method"]) for r in rows} == {
        (o, m) for o in ("sgd", "adam") for m in ("1-SAM", "alone")
    }
    assert {r["lr"] for r in rows if r["optimizer"] == "adam"} == {2e-3}  # the override
    for r in rows:
        assert r["label"] == "tiny" and r["arch"] == "bias" and r["epoch"] == 4
        assert r["generalization_gap"] == pytest.approx(
            r["test_error"] - r["train_error"]
        )
    with pytest.raises(ValueError, match="no learning rate for optimizer 'adam'"):
        optimizer_study(
            bases,
            {"sgd": 0.05},
            optimizers=("sgd", "adam"),
            n_jobs=1,
            backend="sequential",
        )
