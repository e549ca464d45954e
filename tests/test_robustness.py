"""Issue 12: bad input, faults and huge sizes give one sentence or a correct value -- never a
silent wrong number, a traceback, a hang or lost history.

Most cases call the CLI's ``main`` in-process (fast); the few that need a real process
(signals, pipes, /dev/full) use a subprocess with a timeout. Memory checks run against a
fixed 4 GB "available" so the outcome does not depend on the machine.
"""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import sharpness_lib as sl
from sharpness_lib import cli, limits
from sharpness_lib.sweep import run_sweep

pytestmark = pytest.mark.timeout(120)

GB = 10**9
TINY = ["--d", "6", "--n", "8", "--width", "4", "--epochs", "2"]


@pytest.fixture(autouse=True)
def four_gb(monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 4 * GB)


def run_main(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def strict_loads(text):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- silent wrong results --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sln_case():
    data = sl.make_parity_xor(6, 12, seed=0)
    return sl.make_model("sln", 6, 8, seed=1), data


@pytest.mark.parametrize(
    "bad, needle",
    [
        (lambda x, y: (x, y[:1]), "y must have shape (12,)"),
        (lambda x, y: (x, y[:, None]), "got (12, 1)"),
        (lambda x, y: (x, y[0]), "got ()"),
        (lambda x, y: (x[:, :5], y), "x must have shape (n, 6)"),
        (lambda x, y: (x.float(), y), "dtype torch.float32"),
        (lambda x, y: (x[:0], y[:0]), "at least one point"),
        (lambda x, y: (x.tolist(), y), "x must be a torch tensor; got list"),
    ],
)
def test_hessian_trace_refuses_what_would_broadcast(sln_case, bad, needle):
    model, data = sln_case
    assert math.isfinite(sl.hessian_trace(model, data.x, data.y))
    with pytest.raises(ValueError) as e:
        sl.hessian_trace(model, *bad(data.x, data.y))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_other_trace_functions_check_their_inputs_too(sln_case):
    _, data = sln_case
    model = sl.make_model("bias", 6, 8)
    with pytest.raises(ValueError, match="at least one point"):
        sl.lemma31_trace_bound(model, data.x[:0])
    with pytest.raises(ValueError, match=r"y must .*shape \(12,\)"):
        sl.minimum_sharpness(model, data.x, data.y[:, None])
    with pytest.raises(ValueError, match="x must have shape"):
        sl.lemma41_trace(model, data.x[:, :3])


def test_nan_output_is_an_error_not_a_correct_prediction():
    model = sl.make_model("bias", 6, 4)
    with torch.no_grad():
        model.W2.fill_(float("nan"))
    assert sl.test_error(model, 6).value == 1.0
    wide = sl.make_model("bias", 30, 4)
    with torch.no_grad():
        wide.W2.fill_(float("nan"))
    assert sl.TestSet(30, num_samples=100).error(wide).value == 1.0
    cfg = sl.TrainConfig(d=6, n=8, width=4, epochs=0).validate()
    data = sl.make_parity_xor(6, 8)
    from sharpness_lib.training import measure

    rec = measure(model, data, sl.TestSet(6), cfg)
    assert rec["train_error"] == 1.0 and rec["test_error"] == 1.0
    assert math.isnan(rec["train_loss"])


def test_json_is_strict_and_nan_becomes_null(capsys):
    assert (
        cli.strict_json({"a": float("nan"), "b": [float("inf"), 1.5]})
        == '{"a": null, "b": [null, 1.5]}'
    )
    rc, out, err = run_main(capsys, "train", *TINY, "--lr", "1e6", "--json")
    res = strict_loads(out)
    assert rc == 1 and res["status"] == "diverged"
    assert all(math.isfinite(h["train_loss"]) for h in res["history"])


@pytest.mark.parametrize(
    "opts, needle",
    [
        ({"betas": (2.0, 0.999)}, "betas[0] must be in [0, 1); got 2"),
        ({"eps": -1}, "eps must be > 0; got -1"),
        ({"betas": "ab"}, "betas must be a pair of numbers in [0, 1); got 'ab'"),
    ],
)
def test_engine_and_reference_refuse_the_same_optimizer_options(opts, needle):
    for engine in ("numba", "reference"):
        cfg = sl.TrainConfig(
            d=6, n=8, width=4, epochs=1, optimizer="adam", optimizer_options=opts
        )
        with pytest.raises(ValueError) as e:
            sl.train(cfg, engine=engine)
        assert needle in str(e.value)
    with pytest.raises(ValueError, match="momentum must be >= 0"):
        sl.TrainConfig(
            optimizer="momentum", optimizer_options={"momentum": -5}
        ).validate()
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        sl.make_optimizer(
            "momentum", [torch.zeros(1, requires_grad=True)], 0.1, momentum=1.0
        )


def test_empty_preset_and_bool_width_are_refused(capsys):
    rc, _, err = run_main(capsys, "train", "--preset", "", *TINY)
    assert rc == 2 and "unknown preset ''" in one_line(err)
    with pytest.raises(ValueError, match="width must be a whole number .*got True"):
        sl.TrainConfig(width=True).validate()


# --- a sentence instead of a traceback ---------------------------------------------------------


@pytest.mark.parametrize(
    "argv, value",
    [
        (["train", "--width", "1000000000"], "width 1000000000"),
        (["train", "--d", "1000000"], "d 1000000"),
        (["train", "--test-samples", "1e12"], "test_samples 1000000000000"),
        (["train", "--dataset", "ball", "--n", "1e9"], "n 1000000000"),
        (["train", "--d", "25", "--n", "33554432"], "n 33554432"),
        (["train", "--arch", "deep_bias", "--depth", "1000000"], "depth 1000000"),
        (["train", "--d", "62", "--n", str(2**62)], f"n {2**62}"),
        (["constructions", "--arch", "bias", "--d", "14", "--n", "16384"], "n 16384"),
        # every layer's activations on a chunk of the hypercube: 80 GB at depth 10^6
        (
            [
                "constructions",
                "--arch",
                "bias",
                "--depth",
                "1000000",
                "--d",
                "10",
                "--n",
                "10",
            ],
            "depth 1000000",
        ),
    ],
)
def test_sizes_that_cannot_fit_are_refused_up_front(capsys, argv, value):
    t0 = time.perf_counter()
    rc, out, err = run_main(capsys, *argv)
    line = one_line(err)
    assert rc == 2 and out == ""
    assert value in line and "memory" in line and "4 GB is available" in line, line
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["train", "--seed", str(10**30)],
            "seed must be <= 4611686018427387904 (and >= 0); got "
            "10000000...(31 digits)",
        ),
        (
            ["train", "--gamma-init", "-1e300"],
            "gamma_init must be >= -1e+06 (and <= 1e+06); got -1e+300",
        ),
        (["train", "--lr", "-inf"], "lr must be a finite number (> 0); got -inf"),
        (["train", "--lr", "-0.5"], "lr must be > 0; got -0.5"),
        (
            ["train", "--init-scale", "1e308"],
            "init_scale must be <= 1e+06 (and > 0); got 1e+308",
        ),
        (["train", "--width", "2.5"], "invalid int value: '2.5'"),
        (
            ["train", "--engine", "gpu", *TINY],
            "engine must be one of auto, reference, numba",
        ),
    ],
)
def test_out_of_range_values_name_value_and_range(capsys, argv, needle):
    rc, _, err = run_main(capsys, *argv)
    assert rc == 2 and needle in one_line(err)


def test_api_type_errors_are_sentences():
    data = sl.make_parity_xor(4, 6)
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        sl.make_model("bias", 4, 3, dtype=torch.int64)
    with pytest.raises(TypeError, match="x_ref must be a torch tensor; got list"):
        sl.make_model("sbn", 4, 3, x_ref=data.x.tolist())
    with pytest.raises(ValueError, match="at least one training point"):
        sl.memorizing_solution(data.x[:0], data.y[:0])
    with pytest.raises(
        ValueError, match="each phase must be a dict with keys epochs, lr"
    ):
        sl.train({"phases": [{"epochs": 3}]})
    with pytest.raises(
        ValueError, match="backend must be one of loky, dask, sequential; got 'foo'"
    ):
        run_sweep({}, {"seed": [0]}, backend="foo", progress=False)
    with pytest.raises(
        ValueError, match="width 1000000000000 needs .* for its parameters"
    ):
        sl.make_model("bias", 30, 10**12)
    with pytest.raises(ValueError, match="epochs must be a whole number"):
        from sharpness_lib.experiments import config_from_panel

        config_from_panel({"epochs": float("nan")})


# --- cost: the exact/sampled switch, notices, divergence culprits -------------------------------


def test_exact_test_error_only_when_cheap():
    assert limits.exact_test_error(17, 10_000) and not limits.exact_test_error(
        18, 10_000
    )
    assert limits.exact_test_error(20, 100_000) and not limits.exact_test_error(
        21, 10**7
    )
    assert not sl.TestSet(18).exact and sl.TestSet(18, num_samples=20_000).exact
    cfg = sl.TrainConfig(d=18, n=10, width=4, epochs=0)
    assert (
        "test_samples" in cfg.summary()
        and "test_samples" not in cfg.replace(d=17).summary()
    )
    model = sl.make_model("bias", 18, 2)
    assert sl.test_error(
        model, 18
    ).exact  # one evaluation: the whole cube is affordable


def test_long_runs_announce_their_cost():
    cfg = sl.TrainConfig(epochs=10**12).validate()
    note = limits.cost_notice(cfg, engine=True)
    assert "100,000,000,000,000 optimizer steps" in note and "years" in note
    assert (
        limits.cost_notice(
            sl.TrainConfig(d=6, n=8, width=4, epochs=10).validate(), engine=True
        )
        is None
    )
    assert limits.construction_cost(20, 2000) > limits.NOTICE_SECONDS


def test_long_constructions_say_what_they_cost(capsys, monkeypatch):
    import sharpness_lib.constructions as cons

    def stop(*a, **k):  # stands in for the minutes of building a depth-10^6 network
        raise KeyboardInterrupt

    monkeypatch.setattr(cons, "memorizing_solution", stop)
    monkeypatch.setattr(limits, "available_memory", lambda: 64 * GB)
    rc, _, err = run_main(
        capsys, "constructions", "--arch", "bias", "--d", "20", "--n", "2000"
    )
    lines = err.strip().splitlines()
    assert rc == 130 and len(lines) == 2 and "Traceback" not in err
    assert (
        "width-2000 networks" in lines[0]
        and "all 2^20" in lines[0]
        and "about" in lines[0]
    )
    assert lines[1].endswith("interrupted")


@pytest.mark.parametrize(
    "change, first",
    [
        (dict(init_scale=1e5), "init_scale 100000"),
        (dict(wd=1000.0, lr=0.1), "wd (weight decay) 1000"),
        (dict(rho=500.0), "rho 500"),
        (dict(arch="sbn", gamma_init=1e4), "gamma_init 10000"),
        (dict(lr=50.0), "lr 50"),
        (dict(), "lr 0.01"),
    ],
)
def test_divergence_names_the_likely_culprit(change, first):
    cfg = sl.TrainConfig(d=6, n=8, width=4, **change).validate()
    suspects = limits.divergence_suspects(cfg)
    assert (
        suspects[0].startswith(first)
        and suspects[-1].startswith("lr ")
        or suspects == [first]
    )


def test_divergence_message_blames_init_scale_not_lr():
    r = sl.train(sl.TrainConfig(d=6, n=8, width=4, epochs=5, init_scale=1e5))
    assert r.status == "diverged"
    assert "likely cause: init_scale 100000" in r.message


# --- processes: signals, pipes, full disks ------------------------------------------------------


def _cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "sharpness_lib", *args],
        text=True,
        stdout=kw.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        **kw,
    )


def _wait_for(pred, timeout=120):
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
@pytest.mark.timeout(240)
def test_ctrl_c_during_imports_is_one_line():
    p = _cli("presets")

    def torch_loading():  # its shared libraries are mapped: `import torch` has begun
        with open(f"/proc/{p.pid}/maps") as f:
            return "libtorch" in f.read()

    _wait_for(torch_loading)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (out, err)
    # during the imports (the usual case), or just after them in the command itself
    assert err.strip() in (
        "python -m sharpness_lib: interrupted",
        "python -m sharpness_lib presets: interrupted",
    )


@pytest.mark.timeout(240)
def test_ctrl_c_during_train_prints_the_history_so_far():
    # the reference path at ~1 ms per step: an hour-long run, announced before it starts
    p = _cli(
        "train",
        "--arch",
        "bn",
        "--d",
        "6",
        "--n",
        "16",
        "--width",
        "8",
        "--epochs",
        "200000",
        "--log-every",
        "1",
        "--json",
        "--progress",
    )
    notice = p.stderr.readline()
    assert "optimizer steps" in notice and "Ctrl-C" in notice
    seen = ""
    while not re.search(
        r"\b[1-9]\d*/200000", seen
    ):  # the bar has moved: epoch 0 is logged
        chunk = os.read(p.stderr.fileno(), 4096).decode()
        assert chunk, "train ended early"
        seen += chunk
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    res = strict_loads(out)
    assert (
        res["status"] == "interrupted"
        and "interrupted (Ctrl-C) after epoch" in res["message"]
    )
    assert len(res["history"]) >= 1 and res["epoch"] == res["history"][-1]["epoch"]
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("python -m sharpness_lib train: interrupted")
    )
    assert "Traceback" not in err


@pytest.mark.timeout(240)
def test_closed_pipe_ends_quietly():
    p = _cli("train", *TINY, "--json")
    p.stdout.close()  # like `| head -c 10` that has already exited
    err = p.stderr.read()
    p.wait(timeout=120)
    assert p.returncode == 141 and err == "", err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_is_one_line(capsys, monkeypatch):
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        rc = cli.main(["presets", "--json"])
        monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 74 and "No space left on device" in one_line(err)


def test_broken_pipe_in_process(capsys, monkeypatch):
    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Closed())
    rc = cli.main(["presets"])
    monkeypatch.undo()
    assert rc == 141 and capsys.readouterr().err == ""


# --- sweeps: a hard-killed worker ---------------------------------------------------


def _killer_source():
    src = """
def train_fn(config):
    import os, signal, time
    if config["kill"]:   # as the kernel's OOM killer would: no exception, no cleanup
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return {"train_loss": float(config["seed"]), "history": [{"epoch": 0}]}
"""
    ns = {}
    exec(compile(src, "<killer>", "exec"), ns)
    fn = ns["train_fn"]
    fn.__module__ = (
        "_not_importable_"  # pickled by value: workers need not import torch
    )
    return fn


@pytest.mark.timeout(300)
def test_killed_worker_does_not_abort_healthy_configs():
    points = [{"seed": i, "kill": i == 2} for i in range(6)]
    res = run_sweep({}, points, train_fn=_killer_source(), n_jobs=2, progress=False)
    assert sorted(r["seed"] for r in res.finished) == [0, 1, 3, 4, 5]
    ((cfg, msg),) = res.failed
    assert cfg["seed"] == 2 and "worker running this config died" in msg
    assert not res.interrupted
