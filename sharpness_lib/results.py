"""Stored paper-scale results (``results/``): read, re-check against the code, summarize, draw.

The files are written by :mod:`sharpness_lib.reproduce` (``make reproduce``), one per run.
Three checks keep them honest (:func:`verify`, run over every file by ``make test``):

* the file's SHA-256 ``digest`` matches its content (a hand edit shows);
* its config is the one the current plan would run (a preset changed since shows, with the
  command that refreshes it);
* :func:`prefix_check`: re-running the config's first epochs reproduces the stored history's
  first log points to ``RTOL`` (the engine is deterministic).

The chapters read these files (no paper-scale run happens at build time) through
:func:`load`, :func:`paper_figure`, :func:`phase_summary` and :func:`phase_heatmaps`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from . import reproduce
from .reproduce import DEFAULT_ROOT, digest

RTOL = 1e-9
ATOL = 1e-12  # values that are 0 up to rounding (a train error of 0, ...)
PREFIX_EPOCHS = 3  # the prefix re-run: epochs 0-3 (four log points)
MEMORIZE_THRESHOLD = 0.05


def refresh_command(study: str, name: str, **_) -> str:
    """The command that (re)makes a stored run: one preset, or the study it belongs to
    (a reproduction only re-runs the files that are missing or stale)."""
    return (
        f"make reproduce PRESET={name}"
        if study == "paper"
        else f"make reproduce STUDY={study}"
    )


# ---------------------------------------------------------------------------- reading
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


# ---------------------------------------------------------------------------- summaries
def time_to_memorize(record: dict, threshold: float = MEMORIZE_THRESHOLD):
    """(first epoch with test error <= threshold, the epoch from which it stays above
    threshold to the end of the run), None where that does not happen.

    "Stays above" keeps a brief excursion early in training, while the test error is still
    noisy, from counting as memorization."""
    ep, te = record["history"]["epoch"], record["history"]["test_error"]
    gen = next((i for i, t in enumerate(te) if t is not None and t <= threshold), None)
    if gen is None:
        return None, None
    mem = None
    for i in range(
        len(te) - 1, gen, -1
    ):  # walk back over the final run above threshold
        if te[i] is not None and te[i] <= threshold:
            break
        mem = ep[i]
    return ep[gen], mem


def outcome(record: dict, threshold: float = MEMORIZE_THRESHOLD) -> str:
    """One of: "diverged", "collapsed", "never generalizes", "generalizes, then memorizes",
    "generalizes"."""
    if record["status"] == "diverged":
        return "diverged"
    if "collapsed" in record["message"]:
        return "collapsed"
    gen, mem = time_to_memorize(record, threshold)
    if gen is None:
        return "never generalizes"
    return "generalizes, then memorizes" if mem is not None else "generalizes"


def phase_summary(root=DEFAULT_ROOT) -> list[dict]:
    """One row per (init scale, rho) cell of the phase diagram: mean final test error,
    median time to memorize over the seeds that memorized, and the seeds' outcomes."""
    out = []
    for init in reproduce.PHASE_INIT_SCALES:
        for rho in reproduce.PHASE_RHOS:
            recs = load("phase", reproduce.phase_cell(init, rho), root)
            if not recs:
                continue
            mems = [time_to_memorize(r)[1] for r in recs]
            mems = [m for m in mems if m is not None]
            errs = [
                r["final"]["test_error"] for r in recs if r["status"] == "completed"
            ]
            counts = Counter(outcome(r) for r in recs)
            out.append(
                {
                    "init_scale": init,
                    "rho": rho,
                    "seeds": len(recs),
                    "cell": reproduce.phase_cell(init, rho),
                    "final_test_error": float(np.mean(errs)) if errs else None,
                    "final_trace": float(
                        np.mean(
                            [
                                r["final"]["hessian_trace"]
                                for r in recs
                                if r["status"] == "completed"
                            ]
                            or [np.nan]
                        )
                    ),
                    "memorized": len(mems),
                    "time_to_memorize": float(np.median(mems)) if mems else None,
                    "outcome": counts.most_common(1)[0][0],
                    "outcomes": dict(counts),
                }
            )
    return out


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


# ---------------------------------------------------------------------------- figures
def require(study: str, name: str, root=DEFAULT_ROOT) -> list[dict]:
    """:func:`load`, but a missing result is an error naming the command that makes it."""
    records = load(study, name, root)
    if not records:
        raise FileNotFoundError(
            f"no stored results for {study}/{name} under {root}; run "
            f"`{refresh_command(study, name)}`."
        )
    return records


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


def _span(values, fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}–{hi}"


def phase_regions(summary: list[dict]) -> str:
    """The phase diagram in words: a Markdown list, one sentence per init scale, grouping
    the rho values by the outcome most of their seeds had (mixed cells say so)."""
    verbs = {
        "generalizes": "still generalizes at 40 000 epochs",
        "generalizes, then memorizes": "first generalizes, then memorizes",
        "never generalizes": "never generalizes",
        "diverged": "diverges",
        "collapsed": "collapses to the zero function",
    }
    sentences = []
    for init in sorted({r["init_scale"] for r in summary}):
        cells = [r for r in summary if r["init_scale"] == init]
        parts = []
        for kind in verbs:
            group = [r for r in cells if r["outcome"] == kind]
            if not group:
                continue
            rhos = ", ".join(f"{r['rho']:g}" for r in group)
            errs = [
                r["final_test_error"]
                for r in group
                if r["final_test_error"] is not None
            ]
            detail = ""
            if kind == "generalizes, then memorizes":
                times = [r["time_to_memorize"] for r in group]
                detail = (
                    f" (test error above 5 % from epoch {_span(times, ',.0f')}, "
                    f"median over the seeds that memorized; final test error "
                    f"{_span(errs, '.2f')})"
                )
            elif errs:
                detail = f" (final test error {_span(errs, '.2f')})"
            mixed = [r for r in group if len(r["outcomes"]) > 1]
            if mixed:
                detail += "; mixed seeds at " + ", ".join(
                    f"ρ = {r['rho']:g} ("
                    + ", ".join(f"{n} {k}" for k, n in r["outcomes"].items())
                    + ")"
                    for r in mixed
                )
            parts.append(f"{verbs[kind]} at ρ = {rhos}{detail}")
        sentences.append(
            f"* At init scale {init:g}, 1-SAM " + "; it ".join(parts) + "."
        )
    return "\n".join(sentences)


def phase_heatmaps(root=DEFAULT_ROOT, title: str | None = None):
    """Two heatmaps over init scale x rho, one above the other: mean final test error, and
    the median epoch from which the test error stays above MEMORIZE_THRESHOLD (with the
    share of seeds that memorized)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    inits = list(reproduce.PHASE_INIT_SCALES)
    rhos = list(reproduce.PHASE_RHOS)
    err = np.full((len(inits), len(rhos)), np.nan)
    mem = np.full_like(err, np.nan)
    err_text = [["" for _ in rhos] for _ in inits]
    mem_text = [["" for _ in rhos] for _ in inits]
    for row in phase_summary(root):
        i, j = inits.index(row["init_scale"]), rhos.index(row["rho"])
        if row["final_test_error"] is not None:
            err[i, j] = row["final_test_error"]
            err_text[i][j] = f"{row['final_test_error']:.2f}"
        if row["outcome"] in ("diverged", "collapsed"):
            err_text[i][j] = row["outcome"]
        if row["time_to_memorize"] is not None:
            mem[i, j] = math.log10(row["time_to_memorize"])
            mem_text[i][j] = (
                f"{row['time_to_memorize']:,.0f} ({row['memorized']}/{row['seeds']} seeds)"
            )
        else:
            mem_text[i][j] = {
                "never generalizes": "from the start",
                "generalizes": "not by the end",
            }.get(row["outcome"], row["outcome"])
    xs = [f"ρ = {r:g}" for r in rhos]
    ys = [f"init {s:g}" for s in inits]
    fig = make_subplots(
        rows=2,
        cols=1,
        vertical_spacing=0.16,
        subplot_titles=(
            "Final test error (mean over seeds)",
            f"Epoch from which the test error stays above {MEMORIZE_THRESHOLD:g} "
            "(median over the seeds that memorized)",
        ),
    )
    common = {
        "x": xs,
        "y": ys,
        "texttemplate": "%{text}",
        "textfont": {"size": 13},
        "xgap": 2,
        "ygap": 2,
    }
    fig.add_trace(
        go.Heatmap(
            z=err,
            text=err_text,
            colorscale="Reds",
            zmin=0,
            zmax=0.5,
            colorbar={"title": "test error", "y": 0.79, "len": 0.42},
            **common,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Heatmap(
            z=mem,
            text=mem_text,
            colorscale="Blues_r",
            colorbar={"title": "log10 epoch", "y": 0.21, "len": 0.42},
            **common,
        ),
        row=2,
        col=1,
    )
    fig.update_layout(
        height=720,
        template="plotly_white",
        title=title,
        margin={"l": 70, "r": 20, "t": 90 if title else 60, "b": 40},
    )
    return fig


def phase_caption(root=DEFAULT_ROOT) -> str:
    """What the phase diagram's runs are and how they were produced (for its caption)."""
    records = [
        r for row in phase_summary(root) for r in load("phase", row["cell"], root)
    ]
    if not records:
        return "no stored phase-diagram runs: run `make reproduce STUDY=phase`."
    base = reproduce.PHASE_BASE
    prov = records[0]["provenance"]
    commits = sorted({r["provenance"]["commit"][:10] for r in records})
    seeds = sorted({r["seed"] for r in records})
    minutes = sum(r["provenance"]["wall_time"] for r in records) / 60
    return (
        f"Stored paper-scale runs: 2-MLP-Bias, width {base['width']}, 1-SAM at lr "
        f"{base['lr']:g} for {base['epochs']} epochs, d={base['d']}, n={base['n']}, over init "
        f"scale {', '.join(f'{s:g}' for s in reproduce.PHASE_INIT_SCALES)} × ρ "
        f"{', '.join(f'{r:g}' for r in reproduce.PHASE_RHOS)}, seeds "
        f"{', '.join(map(str, seeds))} in every cell; test error on {base['test_samples']} "
        f"fresh samples. Produced by `{prov['command']}` at commit {', '.join(commits)} "
        f"(torch {prov['torch']}, numba {prov['numba']}, {prov['cores']} cores; "
        f"{minutes:.0f} min of compute in all)."
    )


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
