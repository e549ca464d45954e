"""Argument checks shared by the Python API, the CLI and the widgets.

Every check raises :class:`ValueError` with one sentence that names the offending
value and the valid range, so that a user never sees a traceback from deep inside
torch and the CLI can print the message as a single line.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

ARCHS = ("nobias", "bias", "sbn", "sln", "softplus", "deep_bias", "bn", "ln")
ARCH_NAMES = {
    "nobias": "2-MLP-No-Bias",
    "bias": "2-MLP-Bias",
    "sbn": "2-MLP-Sim-BN",
    "sln": "2-MLP-Sim-LN",
    "softplus": "2-MLP-Bias with softplus",
    "deep_bias": "MLP-Bias of depth D",
    "bn": "2-MLP-BN",
    "ln": "2-MLP-LN",
}
ALGOS = ("gd", "sgd", "sam1", "msam")
LOSSES = ("mse", "logistic")
DATASETS = ("xor", "ball")


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}.")
    return value


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        if isinstance(value, Real) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a whole number; got {value!r}.")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_range_text(low, high)}; got {value}.")
    return value


def check_float(name: str, value, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number; got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value}.")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and value > high
    if bad_low or bad_high:
        raise ValueError(f"{name} must be {_range_text(low, high, low_open)}; got {value:g}.")
    return value


def check_n(n, d: int) -> int:
    """Training-set size: at least 1 and at most the 2^d points of the hypercube."""
    n = check_int("n", n, 1)
    if d < 63 and n > 2**d:
        raise ValueError(f"n must be between 1 and 2^d = {2**d} (distinct points of the "
                         f"hypercube for d = {d}); got {n}.")
    return n


def _range_text(low, high, low_open=False) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}" + (f" (excluding {low:g})" if low_open else "")
    if low is not None:
        return f"> {low:g}" if low_open else f">= {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return "valid"
