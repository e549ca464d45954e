"""Test doubles for sharpness_lib.ui: a deterministic stand-in for the training loop."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sharpness_lib.panel_state import basic_validate


@dataclass
class FakeResult:
    status: str
    message: str | None = None


def fake_run_fn(
    config: Mapping[str, Any],
    callback,
    should_stop,
    *,
    delay: float = 0.0,
    diverge_at: int | None = None,
    log_every: int | None = None,
):
    """Smooth synthetic curves in place of training: the loss decays, the test error falls
    toward a level set by ``rho``, the trace decays toward a plateau. Honours ``should_stop``
    at each log point and, with ``diverge_at``, reports a divergence as the real loop does."""
    basic_validate(config)
    epochs = int(config.get("epochs", 100))
    every = log_every or max(1, epochs // 50)
    rho = float(config.get("rho", 0.0))
    lr = float(config.get("lr", 0.01))
    seed = int(config.get("seed", 0))

    def wig(
        e, k
    ):  # seed-dependent but deterministic, so several seeds give a visible band
        return 1.0 + 0.15 * math.sin(0.7 * seed + k + e * (3 + seed) / max(epochs, 1))

    for epoch in range(0, epochs + 1, every):
        if should_stop():
            return FakeResult("stopped", f"stopped at epoch {epoch}; history kept.")
        if diverge_at is not None and epoch >= diverge_at:
            return FakeResult(
                "diverged", f"diverged at epoch {epoch}: loss became inf; history kept."
            )
        t = epoch / max(epochs, 1)
        callback(
            {
                "epoch": epoch,
                "train_loss": (math.exp(-8 * t) + 1e-4) * wig(epoch, 0),
                "test_error": min(
                    0.5 * math.exp(-6 * t * (1 + 10 * rho)) * wig(epoch, 1) + 0.02, 1
                ),
                "test_error_se": 0.005,
                "hessian_trace": (50 * math.exp(-4 * t * (1 + lr * 10)) + 5)
                * wig(epoch, 2),
            }
        )
        if delay:
            time.sleep(delay)
    return FakeResult("completed")
