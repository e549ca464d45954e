"""Per-sample losses l(f, y) and their first two derivatives in f.

The paper trains with the squared error (f - y)^2 (Section 2) and, in its Appendix B
(Figures 8-10), with the logistic loss under label smoothing p: the target puts mass
1 - p/2 on the true label and p/2 on the other one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._validation import LOSSES, check_choice, check_float


def per_sample_loss(
    f: torch.Tensor, y: torch.Tensor, loss: str = "mse", label_smoothing: float = 0.0
) -> torch.Tensor:
    """l(f_i, y_i) for every sample."""
    check_choice("loss", loss, LOSSES)
    if loss == "mse":
        return (f - y).square()
    p = check_float("label_smoothing", label_smoothing, 0.0, 1.0)
    t = y * f
    return -(1 - p / 2) * F.logsigmoid(t) - (p / 2) * F.logsigmoid(-t)


def mean_loss(f, y, loss="mse", label_smoothing=0.0) -> torch.Tensor:
    """Training loss L = (1/n) sum_i l(f_i, y_i)."""
    return per_sample_loss(f, y, loss, label_smoothing).mean()


def loss_derivatives(
    f: torch.Tensor, y: torch.Tensor, loss: str = "mse", label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dl/df, d^2l/df^2) per sample, used by the closed-form Hessian trace."""
    check_choice("loss", loss, LOSSES)
    if loss == "mse":
        return 2 * (f - y), torch.full_like(f, 2.0)
    p = check_float("label_smoothing", label_smoothing, 0.0, 1.0)
    s = torch.sigmoid(y * f)
    return y * (s - 1 + p / 2), y.square() * s * (1 - s)
