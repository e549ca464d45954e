"""Stored paper-scale results (results/) against the code that produced them.

Every stored file must be intact (digest), match the run the current plan would make, and
be reproduced by re-running its first epochs (the engine is deterministic); a reproduction
that is killed resumes without redoing finished runs and never leaves half a file.
"""

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sharpness_lib import reproduce, results
from sharpness_lib.presets import get_preset

PATHS = results.all_paths()
ROOT = Path(__file__).resolve().parent.parent


def _id(path):
    return "/".join(path.parts[-3:])


def test_every_planned_run_is_stored():
    missing = [
        j.relpath
        for j in reproduce.plan()
        if not results.path_of(j.study, j.name, j.seed).exists()
    ]
    assert not missing, (
        f"{len(missing)} planned runs have no stored result (e.g. "
        f"{missing[0]}); run `make reproduce`."
    )


@pytest.mark.parametrize("path", PATHS, ids=_id)
def test_stored_result_matches_the_code(path):
    record = results.read(path)
    assert results.verify(record, path) == []
    worst, where = results.prefix_check(record)
    assert worst <= results.RTOL, f"{path}: re-run differs by {worst:.3g} ({where})"


def _small_record():
    """The cheapest stored run (Figure 6b: 1500 Sim-LN epochs)."""
    path = results.path_of("paper", "fig6b", 0)
    if not path.exists():
        pytest.fail(f"{path} is missing; run `make reproduce PRESET=fig6b`.")
    return results.read(path), path


def test_hand_edit_is_detected():
    record, path = _small_record()
    edited = copy.deepcopy(record)
    edited["final"]["test_error"] = 0.0
    problems = results.verify(edited, path)
    assert len(problems) == 1 and "does not match its digest" in problems[0]
    assert "make reproduce PRESET=fig6b" in problems[0]


def test_edit_with_a_recomputed_digest_fails_the_prefix_check():
    record, _ = _small_record()
    edited = copy.deepcopy(record)
    edited["history"]["test_error"][2] += 1e-6
    edited["digest"] = reproduce.digest(edited)
    worst, where = results.prefix_check(edited)
    assert worst > results.RTOL and where == "test_error at epoch 2"


def test_config_that_no_longer_matches_its_preset_names_it():
    record, path = _small_record()
    edited = copy.deepcopy(record)
    edited["config"]["width"] = 499
    edited["digest"] = reproduce.digest(edited)
    (problem,) = results.verify(edited, path)
    assert "no longer matches preset 'fig6b'" in problem and "width" in problem
    assert "`make reproduce PRESET=fig6b`" in problem
    assert problem.count(". ") == 0  # one sentence


def test_cheapest_run_reproduces_in_full():
    """Not only the prefix: the whole Figure 6b run, every log point, to RTOL."""
    record, _ = _small_record()
    worst, where = results.prefix_check(record, until=record["config"]["epochs"])
    assert worst <= results.RTOL, where


def test_plan_is_complete_and_caps_are_stated():
    jobs = reproduce.plan()
    names = {j.name for j in jobs if j.study == "paper"}
    assert names == set(reproduce.PAPER_PRESETS)
    for j in jobs:
        full = get_preset(j.name).config if j.study == "paper" else None
        if full is not None and j.config["epochs"] < full.validate().epochs:
            assert j.cap, f"{j.name} is shortened without a stated reason"
    assert {j.seed for j in jobs} == set(reproduce.SEEDS)


def test_time_to_memorize_and_outcome():
    rec = {
        "status": "completed",
        "message": "",
        "history": {"epoch": [0, 10, 100, 1000], "test_error": [0.5, 0.01, 0.02, 0.2]},
    }
    assert results.time_to_memorize(rec) == (10, 1000)
    assert results.outcome(rec) == "generalizes, then memorizes"
    rec["history"]["test_error"] = [0.5, 0.4, 0.3, 0.2]
    assert results.time_to_memorize(rec) == (None, None)
    assert results.outcome(rec) == "never generalizes"
    rec["history"]["test_error"] = [0.5, 0.04, 0.0, 0.05]
    assert results.outcome(rec) == "generalizes"
    rec["history"] = {
        "epoch": [0, 10, 20, 30, 40, 50],
        "test_error": [0.5, 0.04, 0.2, 0.01, 0.3, 0.4],
    }
    assert results.time_to_memorize(rec) == (
        10,
        40,
    )  # the early excursion does not count


def test_write_is_atomic_and_truncated_files_are_redone(tmp_path):
    job = reproduce.Job("paper", "x", 0, {"epochs": 1})
    path = tmp_path / job.relpath
    reproduce.write_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == [
        "seed0.json"
    ]  # no temporary left
    path.write_text(
        '{"format": 1, "dig'
    )  # as a kill in the middle of a plain write would
    assert not reproduce.is_done(job, tmp_path)


_SCRIPT = textwrap.dedent("""
    import sys
    from sharpness_lib import reproduce
    from sharpness_lib.training import TrainConfig
    jobs = [reproduce.Job("paper", "tiny", s, TrainConfig(arch="nobias", d=8, n=16, width=16,
            epochs=int(sys.argv[2]), seed=s, log_every=4000).validate().to_dict())
            for s in range(4)]
    reproduce.run_plan(jobs, jobs=1, root=sys.argv[1], command="test")
""")


@pytest.mark.timeout(300)
def test_killed_reproduction_resumes_without_redoing_finished_runs(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    folder = tmp_path / "paper" / "tiny"
    # the first run is long enough to be killed with some files written
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), "40000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(list(folder.glob("seed*.json"))) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in folder.glob("seed*.json")}
    assert 1 <= len(done) < 4, "kill the reproduction while runs are left"
    for p in folder.glob("seed*.json"):
        json.loads(p.read_text())  # every file there is whole
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "40000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert f"{len(done)} already stored" in out.stderr
    assert sorted(p.name for p in folder.glob("seed*.json")) == [
        f"seed{s}.json" for s in range(4)
    ]
    for name, mtime in done.items():
        assert (folder / name).stat().st_mtime_ns == mtime, f"{name} was redone"


def test_phase_regions_describe_each_init_scale():
    rows = [
        {
            "init_scale": 0.1,
            "rho": 0.05,
            "final_test_error": 0.0,
            "time_to_memorize": None,
            "outcome": "generalizes",
            "outcomes": {"generalizes": 3},
        },
        {
            "init_scale": 0.3,
            "rho": 0.05,
            "final_test_error": 0.2,
            "time_to_memorize": 9000.0,
            "outcome": "generalizes, then memorizes",
            "outcomes": {"generalizes, then memorizes": 2, "generalizes": 1},
        },
        {
            "init_scale": 1.0,
            "rho": 0.05,
            "final_test_error": 0.35,
            "time_to_memorize": None,
            "outcome": "never generalizes",
            "outcomes": {"never generalizes": 3},
        },
    ]
    text = results.phase_regions(rows)
    assert text.count("At init scale") == 3
    assert "0.1, 1-SAM still generalizes" in text
    assert (
        "first generalizes, then memorizes at ρ = 0.05 (test error above 5 % from "
        "epoch 9,000, median over the seeds that memorized; final test error 0.20)"
        in text
    )
    assert (
        "mixed seeds at ρ = 0.05 (2 generalizes, then memorizes, 1 generalizes)" in text
    )
    assert "1, 1-SAM never generalizes at ρ = 0.05 (final test error 0.35)" in text
