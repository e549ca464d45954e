"""Kendall's tau-b (against brute force and an exact permutation p-value), grouping."""

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from sharpness_lib.correlation import (
    DroppedNaNWarning,
    generalization_gap,
    kendall_tau,
    sharpness_correlation,
)


def tau_b_brute(x, y):
    """O(n^2) pair count: (n_c - n_d) / sqrt((n_0 - n_1)(n_0 - n_2))."""
    n = len(x)
    nc = nd = n1 = n2 = 0
    for i in range(n):
        for j in range(i + 1, n):
            sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            n1 += sx == 0
            n2 += sy == 0
            nc += sx * sy > 0
            nd += sx * sy < 0
    n0 = n * (n - 1) // 2
    return (nc - nd) / math.sqrt((n0 - n1) * (n0 - n2))


@pytest.mark.parametrize("seed", range(6))
def test_tau_b_equals_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    x = rng.integers(0, 6, n).astype(float)  # many ties in x
    y = x + rng.integers(-3, 4, n) * (seed % 3)  # ties in y; seed 0, 3: y == x
    tau, p = kendall_tau(x, y)
    assert tau == pytest.approx(tau_b_brute(x, y), abs=1e-12)
    assert 0.0 <= p <= 1.0


def test_tau_b_without_ties_and_signs():
    rng = np.random.default_rng(7)
    x = rng.normal(size=25)
    y = 0.5 * x + rng.normal(size=25)
    assert kendall_tau(x, y)[0] == pytest.approx(tau_b_brute(x, y), abs=1e-12)
    assert kendall_tau(x, x)[0] == pytest.approx(1.0)
    assert kendall_tau(x, -x)[0] == pytest.approx(-1.0)


def exact_p_by_permutations(x, y):
    """Two-sided p: the share of all n! orderings of y with |tau| >= |tau_observed|."""
    obs = abs(tau_b_brute(x, y))
    taus = [abs(tau_b_brute(x, np.asarray(perm))) for perm in itertools.permutations(y)]
    return np.mean(np.asarray(taus) >= obs - 1e-12)


@pytest.mark.parametrize("seed,n", [(0, 4), (1, 5), (2, 6), (3, 7), (4, 7)])
def test_small_n_p_value_is_the_exact_one(seed, n):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n), rng.normal(size=n)
    y[:2] = x[:2] * 3  # some association
    tau, p = kendall_tau(x, y)
    assert p == pytest.approx(exact_p_by_permutations(x, y), abs=1e-12)
    assert p == pytest.approx(stats.kendalltau(x, y, method="exact").pvalue, abs=1e-12)


def test_nan_pairs_are_dropped_and_counted():
    x = [1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]
    y = [2.0, 1.0, 3.0, float("nan"), 5.0, 7.0]
    with pytest.warns(DroppedNaNWarning, match="dropped 2 of 6 pairs"):
        tau, p = kendall_tau(x, y)
    assert tau == pytest.approx(tau_b_brute([1, 2, 5, 6], [2, 1, 5, 7]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kendall_tau([1, 2, 3], [3, 1, 2])  # no NaN, no warning


@pytest.mark.parametrize(
    "x,y,msg",
    [
        ([1, 2], [1, 2], "at least 3 pairs without NaN; got 2."),
        ([1, 2, float("nan")], [1, 2, 3], r"got 2 \(1 with a NaN dropped\)"),
        ([1, 2, 3], [1, 2], "same length"),
        ([[1, 2, 3]], [[1, 2, 3]], "one-dimensional"),
        (["a", "b", "c"], [1, 2, 3], "sequence of numbers"),
    ],
)
def test_kendall_errors_are_one_sentence(x, y, msg):
    with pytest.raises(ValueError, match=msg) as err:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DroppedNaNWarning)
            kendall_tau(x, y)
    assert str(err.value).endswith(".") and "\n" not in str(err.value)


def test_constant_input_gives_nan():
    tau, p = kendall_tau([1, 1, 1, 1], [1, 2, 3, 4])
    assert math.isnan(tau) and math.isnan(p)


def test_generalization_gap():
    assert generalization_gap(
        {"test_error": 0.3, "train_error": 0.05}
    ) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="needs train_error"):
        generalization_gap({"test_error": 0.3})


def test_sharpness_correlation_groups_and_measures():
    rng = np.random.default_rng(0)
    rows = []
    for arch in ("bias", "sbn"):
        for i in range(8):
            tr = float(rng.uniform(0, 0.1))
            gap = float(rng.uniform(0, 0.5))
            rows.append(
                {
                    "arch": arch,
                    "seed": i,
                    "train_error": tr,
                    "test_error": tr + gap,
                    "hessian_trace": gap * (1 if arch == "bias" else -1) + 0.01 * i,
                    "min_sharpness": float(rng.normal()),
                }
            )
    rows[3]["min_sharpness"] = float("nan")
    del rows[12]["hessian_trace"]
    out = sharpness_correlation(rows)
    assert [(r["arch"], r["measure"]) for r in out] == [
        ("bias", "hessian_trace"),
        ("bias", "min_sharpness"),
        ("sbn", "hessian_trace"),
        ("sbn", "min_sharpness"),
    ]
    for r in out:
        members = [
            row
            for row in rows
            if row["arch"] == r["arch"]
            and not math.isnan(row.get(r["measure"], math.nan))
        ]
        x = [row[r["measure"]] for row in members]
        y = [generalization_gap(row) for row in members]
        assert r["n"] == len(members) and r["n_dropped"] == 8 - len(members)
        assert r["tau"] == pytest.approx(tau_b_brute(x, y), abs=1e-12)
        assert r["p"] == pytest.approx(stats.kendalltau(x, y).pvalue, abs=1e-12)
    assert (out[1]["n"], out[2]["n"]) == (7, 7)
    assert out[0]["tau"] > 0.5 and out[2]["tau"] < -0.5


def test_sharpness_correlation_options():
    rows = [
        {"arch": a, "wd": w, "gap": g, "hessian_trace": h}
        for a, w, g, h in [
            ("bias", 0, 0.1, 1),
            ("bias", 0, 0.2, 2),
            ("bias", 0, 0.3, 4),
            ("bias", 1, 0.1, 3),
            ("bias", 1, 0.2, 2),
            ("bias", 1, 0.3, 1),
            ("sln", 1, 0.3, 1),
        ]
    ]
    everything = sharpness_correlation(
        rows, gap="gap", measures="hessian_trace", by=None
    )
    assert (
        len(everything) == 1 and everything[0]["n"] == 7 and "arch" not in everything[0]
    )
    two = sharpness_correlation(
        rows, gap="gap", measures=["hessian_trace"], by=("arch", "wd")
    )
    assert [(r["arch"], r["wd"], r["tau"]) for r in two[:2]] == [
        ("bias", 0, 1.0),
        ("bias", 1, -1.0),
    ]
    assert two[2]["n"] == 1 and math.isnan(two[2]["tau"]) and math.isnan(two[2]["p"])
    with pytest.raises(ValueError, match="row 0 has no 'optimizer' to group by"):
        sharpness_correlation(rows, gap="gap", by="optimizer")
