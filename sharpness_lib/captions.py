"""Captions: a one-line summary of a run's hyperparameters, printed next to its figure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["caption", "format_value"]


def format_value(v: Any) -> str:
    """Compact number formatting for captions and slider labels (100000 -> 1e5)."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        v = int(v)
        if abs(v) >= 10_000:
            mant, exp = f"{v:e}".split("e")
            mant = mant.rstrip("0").rstrip(".")
            return f"{mant}e{int(exp)}"
        return str(v)
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


# Display names and order for caption(); unknown keys follow in their own order.
_CAPTION_KEYS = {
    "arch": "architecture",
    "architecture": "architecture",
    "width": "width m",
    "bias": "bias",
    "norm": "normalization",
    "normalization": "normalization",
    "activation": "activation",
    "algorithm": "algorithm",
    "algo": "algorithm",
    "optimizer": "base optimizer",
    "batch_size": "batch",
    "schedule": "schedule",
    "lr": "lr η",
    "rho": "ρ",
    "weight_decay": "weight decay",
    "wd": "weight decay",
    "init_scale": "init scale",
    "epochs": "epochs",
    "d": "d",
    "n": "n",
    "seed": "seed",
    "seeds": "seeds",
}


def caption(
    config: Any,
    *,
    seeds: Sequence[int] | None = None,
    label: str | None = None,
    html: bool = False,
) -> str:
    """A one-line summary of a run's hyperparameters, to print next to its figure.

    Returns Markdown (``**lr η** 0.01 · **ρ** 0.05 · …``; display it with
    ``IPython.display.Markdown``) or, with ``html=True``, the same as an HTML ``<p>``.
    Keys with value ``None`` are skipped; lists (schedules) are joined with ``→``.
    """
    if hasattr(config, "summary"):  # a TrainConfig: only the settings that matter
        config = config.summary()
    if (
        seeds is not None
    ):  # several seeds of one config: list them instead of the one seed
        config = {k: v for k, v in config.items() if k != "seed"}
        config["seeds"] = ", ".join(map(str, seeds))
    order = list(
        dict.fromkeys([k for k in _CAPTION_KEYS if k in config] + list(config))
    )
    parts = []
    for k in order:
        v = config[k]
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            val = " → ".join(format_value(x) for x in v)
        else:
            val = format_value(v)
        name = _CAPTION_KEYS.get(k, str(k).replace("_", " "))
        parts.append(f"<b>{name}</b> {val}" if html else f"**{name}** {val}")
    body = " · ".join(parts)
    if label:
        body = f"<b>{label}</b>: {body}" if html else f"**{label}**: {body}"
    return f'<p class="run-caption">{body}</p>' if html else body
