"""The command-line contract of `python -m sharpness_lib`."""

import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "sharpness_lib", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_json_contract():
    p = run(
        "train",
        "--arch",
        "bias",
        "--algo",
        "sam1",
        "--d",
        "6",
        "--n",
        "12",
        "--width",
        "8",
        "--lr",
        "0.01",
        "--rho",
        "0.05",
        "--wd",
        "0",
        "--epochs",
        "4",
        "--seed",
        "1",
        "--init-scale",
        "0.5",
        "--log-every",
        "2",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for key in ("train_loss", "test_error", "hessian_trace", "history"):
        assert key in out
    assert [h["epoch"] for h in out["history"]] == [0, 2, 4]
    assert out["history"][-1]["hessian_trace"] == out["hessian_trace"]
    assert out["config"]["init_scale"] == 0.5


def test_train_is_deterministic():
    args = (
        "train",
        "--arch",
        "sln",
        "--d",
        "6",
        "--n",
        "10",
        "--width",
        "8",
        "--epochs",
        "3",
        "--json",
    )
    assert (
        json.loads(run(*args).stdout)["history"]
        == json.loads(run(*args).stdout)["history"]
    )


def test_presets_listing_and_override():
    p = run("presets")
    assert p.returncode == 0 and "fig4b" in p.stdout and "fig1a" in p.stdout
    listing = json.loads(run("presets", "--json").stdout)
    assert listing["fig4b"]["config"]["phases"][1]["epochs"] == 400_000
    q = run(
        "train",
        "--preset",
        "fig6b",
        "--epochs",
        "3",
        "--width",
        "8",
        "--d",
        "6",
        "--n",
        "12",
        "--json",
    )
    assert q.returncode == 0, q.stderr
    cfg = json.loads(q.stdout)["config"]
    assert cfg["epochs"] == 3 and cfg["project_norm"] == 10.0 and cfg["width"] == 8
    assert [p["rho"] for p in cfg["phases"]] == [0.1, 0.5, 1.0]


def test_constructions_json():
    p = run(
        "constructions",
        "--arch",
        "bias",
        "--d",
        "8",
        "--n",
        "20",
        "--seed",
        "0",
        "--json",
    )
    out = json.loads(p.stdout)
    assert out["memorizing"]["hessian_trace"] == pytest.approx(out["lower_bound"])
    assert out["generalizing"]["hessian_trace"] == pytest.approx(out["lower_bound"])
    assert out["memorizing"]["test_error"] == pytest.approx(1 - 20 / 256)
    assert out["generalizing"]["test_error"] == 0.0
    assert out["memorizing"]["train_loss"] < 1e-20


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--arch", "foo"], "arch must be one of"),
        (["train", "--width", "0"], "width must be >= 1; got 0"),
        (["train", "--d", "1"], "d must be >= 2; got 1"),
        (["train", "--n", "0"], "n must be >= 1; got 0"),
        (["train", "--d", "3", "--n", "9"], "n must be between 1 and 2^d = 8"),
        (["train", "--lr", "0"], "lr must be > 0; got 0"),
        (["train", "--rho", "-1"], "rho must be >= 0; got -1"),
        (["train", "--epochs", "-1"], "epochs must be >= 0; got -1"),
        (["train", "--width", "abc"], "invalid int value: 'abc'"),
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["constructions", "--arch", "nobias"], "arch must be one of bias, sln"),
        (["constructions", "--arch", "bias", "--d", "3", "--n", "20"], "2^d = 8"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_invalid_arguments_one_line_no_traceback(args, needle):
    p = run(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_train_on_the_ball_with_a_base_optimizer_and_stop_loss():
    r = run(
        "train",
        "--dataset",
        "ball",
        "--d",
        "10",
        "--n",
        "30",
        "--width",
        "16",
        "--arch",
        "nobias",
        "--optimizer",
        "adam",
        "--epochs",
        "40",
        "--log-every",
        "5",
        "--stop-loss",
        "0.05",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["config"]["dataset"] == "ball" and out["config"]["optimizer"] == "adam"
    assert "test_mse" in out and "min_sharpness" in out
    assert (
        out["train_loss"] <= 0.05
        and out["epoch"] < 40
        and "stop_loss" in out["message"]
    )
