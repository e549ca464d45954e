"""Scenario II's long runs read as outcomes: when a run first generalizes and from when it
stays a memorizer (:func:`time_to_memorize`, :func:`outcome`), and the phase diagram of
1-SAM on 2-MLP-Bias over init scale x rho built from them, as rows, words, heatmaps and a
caption. Re-exported by :mod:`sharpness_lib.results`."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from . import reproduce
from .reproduce import DEFAULT_ROOT
from .stored_runs import load

MEMORIZE_THRESHOLD = 0.05


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


def _heatmap_cells(summary: list[dict]):
    """The two heatmaps' values and cell texts over (init scale, rho): mean final test error
    (or how the run ended), and log10 of the median time to memorize (or why there is
    none). Cells without a stored run stay NaN and blank."""
    inits = list(reproduce.PHASE_INIT_SCALES)
    rhos = list(reproduce.PHASE_RHOS)
    err = np.full((len(inits), len(rhos)), np.nan)
    mem = np.full_like(err, np.nan)
    err_text = [["" for _ in rhos] for _ in inits]
    mem_text = [["" for _ in rhos] for _ in inits]
    for row in summary:
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
    return (err, err_text), (mem, mem_text)


def phase_heatmaps(root=DEFAULT_ROOT, title: str | None = None):
    """Two heatmaps over init scale x rho, one above the other: mean final test error, and
    the median epoch from which the test error stays above MEMORIZE_THRESHOLD (with the
    share of seeds that memorized)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    (err, err_text), (mem, mem_text) = _heatmap_cells(phase_summary(root))
    xs = [f"ρ = {r:g}" for r in reproduce.PHASE_RHOS]
    ys = [f"init {s:g}" for s in reproduce.PHASE_INIT_SCALES]
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
