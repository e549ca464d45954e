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
# "alone" names what algo "sgd" does with any base optimizer: its steps without SAM
# (``algo="alone", optimizer="adam"`` is Adam alone); TrainConfig.validate maps it to "sgd".
ALGO_ALIASES = {"alone": "sgd"}
LOSSES = ("mse", "logistic")
DATASETS = ("xor", "ball")


class ArgumentError(ValueError, TypeError):
    """A bad argument: a value out of range or of the wrong type. Both a ValueError (what the
    CLI and the widgets catch) and a TypeError (what Python code expects for a wrong type)."""


def check_tensor(name: str, value, ndim: int | None = None):
    """A floating-point torch tensor (float32/float64) with ``ndim`` dimensions."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise ArgumentError(
            f"{name} must be a torch tensor; got {type(value).__name__}."
        )
    if value.dtype not in (torch.float32, torch.float64):
        raise ArgumentError(
            f"{name} must be a float32 or float64 tensor; got {value.dtype}."
        )
    if ndim is not None and value.ndim != ndim:
        raise ArgumentError(
            f"{name} must have {ndim} dimension{'s' * (ndim != 1)}; got shape "
            f"{tuple(value.shape)}."
        )
    return value


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}."
        )
    return value


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        # a float such as 1e3 is accepted when whole (JSON and widgets give floats)
        if (
            not isinstance(value, bool)
            and isinstance(value, Real)
            and math.isfinite(float(value))
            and float(value).is_integer()
        ):
            value = int(value)
        else:
            raise ValueError(
                f"{name} must be a whole number{_in_range(low, high)}; got {value!r}."
            )
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(
            f"{name} must be {_violated(value, low, high)}; got {_short(value)}."
        )
    return value


def check_float(
    name: str,
    value,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(
            f"{name} must be a number{_in_range(low, high, low_open)}; got {value!r}."
        )
    try:
        value = float(value)
    except OverflowError:  # an int beyond the float range, e.g. 10**400
        raise ValueError(
            f"{name} must be a finite number{_in_range(low, high, low_open)}; "
            f"got {_short(value)}."
        ) from None
    if not math.isfinite(value):
        raise ValueError(
            f"{name} must be a finite number{_in_range(low, high, low_open)}; "
            f"got {value}."
        )
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and value > high
    if bad_low or bad_high:
        raise ValueError(
            f"{name} must be {_violated(value, low, high, low_open)}; got {value:g}."
        )
    return value


MAX_SEED = 2**62  # torch.Generator takes 64-bit seeds; models add small offsets
MAX_ABS_INIT = 1e6  # init_scale, first_layer_scale, |gamma_init|: beyond, overflow


def check_n(n, d: int) -> int:
    """Training-set size: at least 1 and at most the 2^d points of the hypercube."""
    n = check_int("n", n, 1)
    if d < 63 and n > 2**d:
        raise ValueError(
            f"n must be between 1 and 2^d = {2**d} (distinct points of the "
            f"hypercube for d = {d}); got {n}."
        )
    return n


def _num(v) -> str:
    """A bound as text: whole numbers exactly (2^62 as 4611686018427387904), floats with %g."""
    return str(v) if isinstance(v, int) else f"{v:g}"


def _short(v) -> str:
    """An offending int as text, shortened when it has more than 30 digits."""
    s = str(v)
    return s if len(s) <= 30 else f"{s[:8]}...({len(s)} digits)"


def _violated(value, low, high, low_open=False) -> str:
    """The range as text, the violated bound first: "> 0 (and <= 1e+06)"."""
    if low is None or high is None:
        return _range_text(low, high, low_open)
    lo = _range_text(low, None, low_open)
    hi = _range_text(None, high)
    return f"{hi} (and {lo})" if value > high else f"{lo} (and {hi})"


def _in_range(low, high, low_open=False) -> str:
    text = _range_text(low, high, low_open)
    return "" if text == "valid" else f" ({text})"


def _range_text(low, high, low_open=False) -> str:
    if low is not None and high is not None:
        return f"between {_num(low)} and {_num(high)}" + (
            f" (excluding {_num(low)})" if low_open else ""
        )
    if low is not None:
        return f"> {_num(low)}" if low_open else f">= {_num(low)}"
    if high is not None:
        return f"<= {_num(high)}"
    return "valid"
