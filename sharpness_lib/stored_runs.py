"""Where the stored paper-scale runs live (``results/<study>/<name>/seed<k>.json``) and how
to read numbers from them: a run's records, its history as rows, a value at an epoch, the
spread over seeds. Everything the chapters use is re-exported by
:mod:`sharpness_lib.results`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .reproduce import DEFAULT_ROOT


def refresh_command(study: str, name: str, **_) -> str:
    """The command that (re)makes a stored run: one preset, or the study it belongs to
    (a reproduction only re-runs the files that are missing or stale)."""
    return (
        f"make reproduce PRESET={name}"
        if study == "paper"
        else f"make reproduce STUDY={study}"
    )


def path_of(study: str, name: str, seed: int, root=DEFAULT_ROOT) -> Path:
    return Path(root) / study / name / f"seed{seed}.json"


def read(path) -> dict:
    """One stored run (the JSON object written by :func:`reproduce.run_job`)."""
    return json.loads(Path(path).read_text())


def load(study: str, name: str, root=DEFAULT_ROOT) -> list[dict]:
    """Every stored seed of one run, by seed; an empty list when none is stored."""
    folder = Path(root) / study / name
    return sorted((read(p) for p in folder.glob("seed*.json")), key=lambda r: r["seed"])


def all_paths(root=DEFAULT_ROOT) -> list[Path]:
    return sorted(Path(root).glob("*/*/seed*.json"))


def require(study: str, name: str, root=DEFAULT_ROOT) -> list[dict]:
    """:func:`load`, but a missing result is an error naming the command that makes it."""
    records = load(study, name, root)
    if not records:
        raise FileNotFoundError(
            f"no stored results for {study}/{name} under {root}; run "
            f"`{refresh_command(study, name)}`."
        )
    return records


def rows(record: dict) -> list[dict]:
    """A stored (columnar) history as a list of records, as :func:`training.train` logs."""
    cols = record["history"]
    n = len(cols["epoch"])
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def final_values(records: list[dict], key: str) -> list[float]:
    return [r["final"][key] for r in records if r["final"].get(key) is not None]


def value_at(record: dict, key: str, epoch: int) -> float:
    """The stored value of ``key`` at the last log point <= ``epoch``."""
    cols = record["history"]
    i = int(np.searchsorted(np.asarray(cols["epoch"]), epoch, side="right")) - 1
    if i < 0:
        raise ValueError(f"no log point at or before epoch {epoch}.")
    return cols[key][i]


def stats(
    study: str,
    name: str,
    key: str = "test_error",
    epoch: int | None = None,
    root=DEFAULT_ROOT,
) -> dict:
    """Mean, min, max and per-seed values of ``key`` over the stored seeds of one run, at
    the end (default) or at the last log point <= ``epoch``."""
    records = require(study, name, root)
    if epoch is None:
        values = [r["final"].get(key) for r in records]
    else:
        values = [value_at(r, key, epoch) for r in records]
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        raise ValueError(f"{study}/{name} has no finite {key} stored.")
    return {
        "mean": float(np.mean(finite)),
        "min": min(finite),
        "max": max(finite),
        "values": values,
        "seeds": [r["seed"] for r in records],
    }


def range_over(study: str, name: str, key: str, start: int, root=DEFAULT_ROOT):
    """(min, max) of ``key`` over every seed's log points from epoch ``start`` on."""
    vals = [
        v
        for r in require(study, name, root)
        for e, v in zip(r["history"]["epoch"], r["history"][key])
        if e >= start and v is not None
    ]
    return min(vals), max(vals)
