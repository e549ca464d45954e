"""Rank correlation between sharpness measures and the generalization gap.

* :func:`kendall_tau` -- Kendall's tau-b (ties handled) and its two-sided p-value, via
  ``scipy.stats.kendalltau`` (``method="auto"``: the exact null distribution for small
  samples without ties, the normal approximation otherwise). Pairs with a NaN are dropped;
  their number is reported in a :class:`DroppedNaNWarning`.
* :func:`sharpness_correlation` -- one row per group (e.g. per architecture) and measure, over
  a list of dict rows such as a sweep's ``finished`` table (one dict per run).
* :func:`generalization_gap` -- ``test_error - train_error`` of one history record or row.

Tau-b is ``(n_c - n_d) / sqrt((n_0 - n_1)(n_0 - n_2))`` with n_0 = n(n-1)/2 pairs, n_c / n_d
the concordant / discordant pairs, n_1 / n_2 the pairs tied in x / in y. It is undefined (NaN,
p NaN) when x or y is constant.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

__all__ = [
    "DroppedNaNWarning",
    "generalization_gap",
    "kendall_tau",
    "sharpness_correlation",
]

MIN_POINTS = 3


class DroppedNaNWarning(UserWarning):
    """Some (x, y) pairs had a NaN and were left out of a correlation."""


def generalization_gap(record: Mapping) -> float:
    """``test_error - train_error`` (zero-one errors) of a history record or a sweep row."""
    missing = [k for k in ("test_error", "train_error") if k not in record]
    if missing:
        raise ValueError(
            f"generalization_gap needs {' and '.join(missing)} in the record; "
            f"it has {', '.join(map(str, record)) or 'no keys'}."
        )
    return float(record["test_error"]) - float(record["train_error"])


def _as_vector(name: str, values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a sequence of numbers; got {values!r:.80}."
        ) from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape}.")
    return arr


def _kendall(x, y, method: str = "auto") -> tuple[float, float, int, int]:
    """(tau_b, p, n used, n dropped for NaN); ValueError below MIN_POINTS usable pairs."""
    x, y = _as_vector("x", x), _as_vector("y", y)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same length; got {x.size} and {y.size}."
        )
    keep = ~(np.isnan(x) | np.isnan(y))
    n, dropped = int(keep.sum()), int(x.size - keep.sum())
    if n < MIN_POINTS:
        extra = f" ({dropped} with a NaN dropped)" if dropped else ""
        raise ValueError(
            f"Kendall's tau needs at least {MIN_POINTS} pairs without NaN; got "
            f"{n}{extra}."
        )
    x, y = x[keep], y[keep]
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan, math.nan, n, dropped
    res = stats.kendalltau(x, y, variant="b", method=method)
    return float(res.statistic), float(res.pvalue), n, dropped


def kendall_tau(x, y, method: str = "auto") -> tuple[float, float]:
    """Kendall's tau-b of x and y and its two-sided p-value.

    Pairs where x or y is NaN are dropped (a :class:`DroppedNaNWarning` gives the count);
    fewer than 3 remaining pairs raise ValueError; a constant x or y gives (nan, nan).
    ``method`` is scipy's: ``"auto"``, ``"exact"`` or ``"asymptotic"``.
    """
    tau, p, n, dropped = _kendall(x, y, method)
    if dropped:
        warnings.warn(
            f"kendall_tau: dropped {dropped} of {n + dropped} pairs with a NaN; "
            f"tau uses the other {n}.",
            DroppedNaNWarning,
            stacklevel=2,
        )
    return tau, p


def _value(row: Mapping, key: str) -> float:
    if key in row:
        v = row[key]
    elif key == "generalization_gap" and "test_error" in row and "train_error" in row:
        v = generalization_gap(row)
    else:
        return math.nan
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def sharpness_correlation(
    rows: Iterable[Mapping],
    gap: str = "generalization_gap",
    measures: Sequence[str] = ("hessian_trace", "min_sharpness"),
    by: str | Sequence[str] | None = "arch",
) -> list[dict]:
    """Kendall's tau-b between each sharpness measure and ``gap``, per group of rows.

    ``rows`` are dicts (one per run, e.g. a sweep's ``finished`` rows); ``gap`` is a key,
    and ``"generalization_gap"`` falls back to ``test_error - train_error`` when absent.
    ``by`` is a key, a sequence of keys, or None (all rows in one group). Returns, in order of
    first appearance of each group, one dict per (group, measure): the group key(s), then
    ``measure``, ``tau``, ``p``, ``n`` (pairs used) and ``n_dropped`` (pairs with a NaN or a
    missing value). A group with fewer than 3 usable pairs gets tau = p = NaN.
    """
    if isinstance(measures, str):
        measures = (measures,)
    keys = () if by is None else ((by,) if isinstance(by, str) else tuple(by))
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"rows must be dicts; row {i} is {type(row).__name__}.")
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(
                f"row {i} has no {missing[0]!r} to group by; its keys are "
                f"{', '.join(map(str, row))}."
            )
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    out = []
    for group, members in groups.items():
        y = [_value(r, gap) for r in members]
        for measure in measures:
            x = [_value(r, measure) for r in members]
            try:
                tau, p, n, dropped = _kendall(x, y)
            except ValueError:
                tau = p = math.nan
                n = sum(not (math.isnan(a) or math.isnan(b)) for a, b in zip(x, y))
                dropped = len(members) - n
            out.append(
                {
                    **dict(zip(keys, group)),
                    "measure": measure,
                    "tau": tau,
                    "p": p,
                    "n": n,
                    "n_dropped": dropped,
                }
            )
    return out
