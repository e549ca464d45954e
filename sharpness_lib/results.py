"""Stored paper-scale results (``results/``): re-check them against the code, and what the
chapters show of the paper's runs (captions, figures, tables, numbers glued into the text).

The files are written by :mod:`sharpness_lib.reproduce` (``make reproduce``), one per run.
Three checks keep them honest (:func:`verify`, run over every file by ``make test``):

* the file's SHA-256 ``digest`` matches its content (a hand edit shows);
* its config is the one the current plan would run (a preset changed since shows, with the
  command that refreshes it);
* :func:`prefix_check`: re-running the config's first epochs reproduces the stored history's
  first log points to ``RTOL`` (the engine is deterministic).

This module is the chapters' one import for stored results (no paper-scale run happens at
build time): it re-exports the reading of the files (:mod:`sharpness_lib.stored_runs`:
:func:`load`, :func:`require`, :func:`stats`, ...) and the Scenario II outcomes and phase
diagram (:mod:`sharpness_lib.phase_diagram`).
"""

from __future__ import annotations

import math

import numpy as np

from . import reproduce
from .phase_diagram import (
    MEMORIZE_THRESHOLD,
    outcome,
    phase_caption,
    phase_heatmaps,
    phase_regions,
    phase_summary,
    time_to_memorize,
)
from .reproduce import DEFAULT_ROOT, digest
from .stored_runs import (
    all_paths,
    final_values,
    load,
    path_of,
    range_over,
    read,
    refresh_command,
    require,
    rows,
    stats,
    value_at,
)

__all__ = [
    "ATOL",
    "MEMORIZE_THRESHOLD",
    "PREFIX_EPOCHS",
    "RTOL",
    "all_paths",
    "caption",
    "column_norms",
    "figure_with_caption",
    "final_values",
    "glue_stats",
    "load",
    "outcome",
    "overview",
    "paper_figure",
    "paper_rows",
    "path_of",
    "phase_caption",
    "phase_heatmaps",
    "phase_regions",
    "phase_summary",
    "prefix_check",
    "range_over",
    "read",
    "refresh_command",
    "require",
    "rows",
    "stats",
    "time_to_memorize",
    "value_at",
    "verify",
]

RTOL = 1e-9
ATOL = 1e-12  # values that are 0 up to rounding (a train error of 0, ...)
PREFIX_EPOCHS = 3  # the prefix re-run: epochs 0-3 (four log points)


# ---------------------------------------------------------------------------- checks
def verify(record: dict, path) -> list[str]:
    """Problems of one stored file, each one sentence (empty when it is sound)."""
    problems = []
    if record.get("format") != reproduce.FORMAT:
        problems.append(
            f"{path}: format {record.get('format')!r} is not "
            f"{reproduce.FORMAT}; regenerate it with `make reproduce`."
        )
        return problems
    if record.get("digest") != digest(record):
        problems.append(
            f"{path}: its content does not match its digest (edited by hand?); "
            f"restore it from git or regenerate it with "
            f"`{refresh_command(**record)}`."
        )
    try:
        job = reproduce.expected_job(record["study"], record["name"], record["seed"])
    except ValueError as exc:
        problems.append(f"{path}: {exc}")
        return problems
    if job.config != record["config"]:
        diff = sorted(
            k
            for k in set(job.config) | set(record["config"])
            if job.config.get(k) != record["config"].get(k)
        )
        what = (
            record["preset"]
            and f"preset {record['preset']!r}"
            or f"the {record['study']} study's run {record['name']!r}"
        )
        problems.append(
            f"{path}: the stored config no longer matches {what} (differs in "
            f"{', '.join(diff)}); refresh it with `{refresh_command(**record)}`."
        )
    if job.cap != record["cap"]:
        problems.append(
            f"{path}: the stored cap reason differs from the current plan's; "
            f"refresh it with `{refresh_command(**record)}`."
        )
    return problems


def prefix_check(record: dict, until: int = PREFIX_EPOCHS) -> tuple[float, str]:
    """Re-run the stored config to epoch ``until`` and compare every logged number.

    Returns (largest relative difference, the metric and epoch where it occurs). A log
    point stored as null (NaN) must be NaN again.
    """
    from .training import train

    result = train(record["config"], until=until)
    stored = rows(record)
    worst, where = 0.0, ""
    if len(result.history) > len(stored):
        return (
            math.inf,
            f"{len(result.history)} log points re-run, {len(stored)} stored",
        )
    for new, old in zip(result.history, stored):
        for key, value in new.items():
            ref = old.get(key)
            if isinstance(value, float) and not math.isfinite(value):
                ok = ref is None
                err = 0.0 if ok else math.inf
            elif ref is None:
                err = math.inf
            else:
                gap = abs(float(value) - float(ref))
                err = (
                    0.0
                    if gap <= ATOL
                    else gap / max(abs(float(value)), abs(float(ref)))
                )
            if err > worst:
                worst, where = err, f"{key} at epoch {new['epoch']}"
    return worst, where


# ---------------------------------------------------------------------------- paper runs
def caption(records: list[dict]) -> str:
    """What was run and how it was produced, for the text next to a stored figure."""
    if not records:
        return "no stored result: run `make reproduce`."
    r0 = records[0]
    from .training import TrainConfig

    cfg = TrainConfig.from_dict(r0["config"])
    seeds = ", ".join(str(r["seed"]) for r in records)
    prov = r0["provenance"]
    wall = sum(r["provenance"]["wall_time"] for r in records)
    text = (
        f"Stored paper-scale run: {cfg.describe().rsplit(', seed', 1)[0]}; seeds {seeds}; "
        f"test error on {cfg.test_samples} fresh samples. Produced by `{prov['command']}` "
        f"at commit {prov['commit'][:10]} (torch {prov['torch']}, numba {prov['numba']}, "
        f"{prov['cores']} cores; {wall / 60:.1f} min of compute in all)."
    )
    if r0.get("cap"):
        text += f" Schedule capped: {r0['cap']}"
    return text


def paper_figure(
    runs: dict,
    metrics=("train_loss", "test_error", "hessian_trace"),
    root=DEFAULT_ROOT,
    title: str | None = None,
):
    """Stored runs on a log-epoch axis, each the mean and min-max band over its seeds.

    ``runs`` maps a legend label to ``(study, name)``, e.g.
    ``{"1-SAM": ("paper", "fig4b"), "GD+WD": ("paper", "fig4a")}``.
    """
    from .plotting import history_figure

    curves = {
        label: [rows(r) for r in require(study, name, root)]
        for label, (study, name) in runs.items()
    }
    fig = history_figure(curves, title=title, metrics=metrics)
    fig.update_xaxes(type="log", title_text="epoch (log scale)")
    return fig


def figure_with_caption(
    runs: dict,
    metrics=("train_loss", "test_error", "hessian_trace"),
    title: str | None = None,
    root=DEFAULT_ROOT,
):
    """(Markdown caption naming each stored run's settings and provenance, figure)."""
    text = "  \n".join(
        f"**{label}.** " + caption(require(study, name, root))
        for label, (study, name) in runs.items()
    )
    return text, paper_figure(runs, metrics=metrics, root=root, title=title)


def column_norms(records: list[dict]) -> list[dict]:
    """Per seed: the two largest final first-layer column norms and the largest other one
    (Figure 2b's numbers: the xor coordinates x1, x2 should be the two largest)."""
    out = []
    for r in records:
        norms = (r.get("first_layer") or {}).get("column_norms")
        if not norms:
            continue
        order = np.argsort(norms)[::-1]
        out.append(
            {
                "seed": r["seed"],
                "x1": norms[0],
                "x2": norms[1],
                "largest other": max(norms[2:]),
                "top two are x1, x2": set(order[:2].tolist()) == {0, 1},
            }
        )
    return out


def overview(root=DEFAULT_ROOT) -> list[dict]:
    """One row per paper preset: epochs run vs the paper's, seeds, final test error and
    trace over seeds, compute time, and the cap (if any)."""
    from .experiments import spread
    from .presets import get_preset

    out = []
    for name in reproduce.PAPER_PRESETS:
        recs = load("paper", name, root)
        preset = get_preset(name)
        paper_epochs = preset.config.validate().epochs
        row = {"preset": name, "figure": preset.figure, "paper epochs": paper_epochs}
        if not recs:
            out.append({**row, "epochs run": "not stored"})
            continue
        errs = final_values(recs, "test_error")
        traces = final_values(recs, "hessian_trace")
        out.append(
            {
                **row,
                "epochs run": recs[0]["config"]["epochs"],
                "seeds": len(recs),
                "test error": spread(errs, ".3f") if errs else "-",
                "Tr ∇²L": spread(traces, ".3g") if traces else "-",
                "status": ", ".join(sorted({r["status"] for r in recs})),
                "compute (min)": round(
                    sum(r["provenance"]["wall_time"] for r in recs) / 60, 1
                ),
                "capped": "yes" if recs[0]["cap"] else "no",
            }
        )
    return out


_SHORT_ARCH = {
    "nobias": "No-Bias",
    "bias": "Bias",
    "sbn": "Sim-BN",
    "sln": "Sim-LN",
    "softplus": "softplus Bias",
    "deep_bias": "depth-3 Bias",
}


def paper_rows(root=DEFAULT_ROOT) -> list[dict]:
    """One row per stored paper run (preset x seed): the figure's setting, the algorithm
    (1-SAM or the baseline) and the final test error and trace, for a strip figure."""
    from .presets import get_preset

    out = []
    for name in reproduce.PAPER_PRESETS:
        preset = get_preset(name)
        cfg = preset.config
        setting = (
            _SHORT_ARCH.get(cfg.arch, cfg.arch)
            + "".join(
                extra
                for flag, extra in (
                    (cfg.loss == "logistic", ", logistic"),
                    (cfg.dataset == "ball", ", ball"),
                    (cfg.project_norm is not None, ", projected"),
                )
                if flag
            )
            + f" (Fig. {preset.figure.rstrip('ab')})"
        )
        for rec in load("paper", name, root):
            out.append(
                {
                    "setting": setting,
                    "preset": name,
                    "seed": rec["seed"],
                    "algorithm": "1-SAM"
                    if cfg.algo in ("sam1", "msam")
                    else "GD/SGD + WD",
                    "test_error": rec["final"]["test_error"],
                    "hessian_trace": rec["final"]["hessian_trace"],
                    "status": rec["status"],
                }
            )
    return out


def glue_stats(glue, names, study: str = "paper", root=DEFAULT_ROOT) -> dict:
    """Hand each stored run's final test error (mean, min, max) and mean trace to the
    page's text: ``glue`` is myst-nb's (names ``ps_<name>_err``, ``_err_min``,
    ``_err_max``, ``_tr``). Returns ``{name: {"err": stats, "tr": stats}}``."""
    out = {}
    for name in names:
        err = stats(study, name, "test_error", root=root)
        tr = stats(study, name, "hessian_trace", root=root)
        key = f"ps_{name}".replace("-", "_").replace(".", "_")
        glue(f"{key}_err", err["mean"], display=False)
        glue(f"{key}_err_min", err["min"], display=False)
        glue(f"{key}_err_max", err["max"], display=False)
        glue(f"{key}_tr", tr["mean"], display=False)
        out[name] = {"err": err, "tr": tr}
    return out
