"""sharpness_lib.threads.configure_threads: one thread everywhere, idempotent, in a fresh process
(the setting is process-wide, so each check runs in a subprocess and leaves this one alone)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sharpness_lib.threads import ENV_VARS, configure_threads

PROBE = r"""
import json, os, sys
import numpy, torch, numba
from threadpoolctl import threadpool_info
from sharpness_lib.threads import configure_threads
n = int(sys.argv[1])
torch.set_num_threads(2)            # what a 2-core kernel starts with
before = torch.get_num_threads()
configure_threads(n)
configure_threads(n)                # idempotent
numpy.ones((64, 64)) @ numpy.ones((64, 64))
from sharpness_lib import get_preset, train
import dataclasses
train(dataclasses.replace(get_preset("book-playground").config, epochs=2, width=8))
print(json.dumps({
    "before": before,
    "torch": torch.get_num_threads(),
    "numba": numba.get_num_threads(),
    "blas": sorted({p["num_threads"] for p in threadpool_info()}),
    "env": {v: os.environ[v] for v in %r},
    "child": __import__("subprocess").run(
        [sys.executable, "-c", "import os; print(os.environ['OMP_NUM_THREADS'])"],
        capture_output=True, text=True).stdout.strip(),
}))
""" % (ENV_VARS,)


def _probe(n: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(n)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_thread_for_torch_blas_numba_and_children():
    # still 1 after a training run (numba's threading layer once reset torch's OpenMP pool)
    r = _probe(1)
    assert r["before"] == 2 and r["torch"] == 1 and r["numba"] == 1
    assert r["blas"] == [1], (
        r
    )  # numpy's OpenBLAS (and torch's OpenMP) pools, already loaded
    assert set(r["env"].values()) == {"1"} and r["child"] == "1"


def test_two_threads_when_asked():
    r = _probe(2)
    assert r["torch"] == 2 and r["blas"] == [2] and r["env"]["OMP_NUM_THREADS"] == "2"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1", True])
def test_invalid_thread_count_is_one_sentence(bad):
    with pytest.raises(ValueError, match=r"must be an integer >= 1\.$"):
        configure_threads(bad)
