"""Sharpness-Aware Minimization (Foret et al., 2021) as a ``torch.optim`` optimizer.

One SAM step on a loss L:  eps = rho * g / ||g|| with g = grad L(theta), then the base
optimizer steps with the gradient taken at theta + eps. With batch size 1 this is the
paper's 1-SAM (Section 2); with batch size m it is m-SAM.

Usage, like any torch optimizer::

    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.01)
    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss
    opt.step(closure)            # or: first_step / closure / second_step by hand
"""

from __future__ import annotations

import torch


class SAM(torch.optim.Optimizer):
    """SAM over any ``torch.optim`` base optimizer class.

    ``SAM(params, base_optimizer_cls, rho=..., **base_kwargs)``; ``rho`` may differ per
    parameter group. Weight decay belongs to the base optimizer and is applied at the
    unperturbed parameters (the perturbation is undone before the base step: the saved
    parameters are copied back, so theta is restored bit for bit -- subtracting the
    perturbation again, theta + e - e, can be off by a rounding error).
    """

    def __init__(self, params, base_optimizer, rho: float = 0.05, **kwargs):
        if not (isinstance(rho, (int, float)) and rho >= 0):
            raise ValueError(f"rho must be a number >= 0; got {rho!r}.")
        if not (
            isinstance(base_optimizer, type)
            and issubclass(base_optimizer, torch.optim.Optimizer)
        ):
            raise ValueError(
                "base_optimizer must be a torch.optim.Optimizer class, "
                f"e.g. torch.optim.SGD; got {base_optimizer!r}."
            )
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        # share the groups, so changing lr or rho on SAM changes the base optimizer too
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = [
            p.grad.norm(2)
            for g in self.param_groups
            for p in g["params"]
            if p.grad is not None
        ]
        return torch.stack(norms).norm(2) if norms else torch.tensor(0.0)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to theta + rho g/||g|| (no move where ||g|| = 0)."""
        norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / norm if norm > 0 else 0.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.detach().clone()
                p.add_(p.grad * scale)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to theta (the saved copy) and let the base optimizer step with the perturbed
        gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                old = self.state[p].pop("old_p", None)
                if old is not None:
                    p.copy_(old)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure=None):
        """One SAM step; ``closure`` must zero the grads, compute the loss and backward."""
        if closure is None:
            raise ValueError(
                "SAM.step needs a closure that re-evaluates the loss "
                "(or call first_step and second_step yourself)."
            )
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
        return loss

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.base_optimizer.param_groups = self.param_groups
