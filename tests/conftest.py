import pytest
import torch

from sharpness_lib import make_model, make_parity_xor

ARCH_OPTIONS = {
    "nobias": {},
    "bias": {},
    "softplus": {},
    "sln": {},
    "sbn": {},
    "deep_bias": {"depth": 3},
}


@pytest.fixture(scope="session")
def small_data():
    return make_parity_xor(6, 12, seed=3)


def build(arch, data, width=7, seed=0, **kw):
    opts = dict(ARCH_OPTIONS[arch])
    if arch == "sbn":
        opts["x_ref"] = data.x
    opts.update(kw)
    return make_model(arch, data.d, width, seed=seed, **opts)


def interpolate_output_layer(model, data):
    """Solve for the output weights so the model interpolates (f is linear in W2)."""
    with torch.no_grad():
        model.W2.zero_()
    W2 = model.W2
    phi = torch.autograd.functional.jacobian(
        lambda w: torch.func.functional_call(model, {"W2": w}, (data.x,)), W2.detach()
    )
    phi = phi.detach().contiguous()
    sol = phi.T @ torch.linalg.solve(phi @ phi.T, data.y)  # minimum-norm interpolant
    with torch.no_grad():
        model.W2.copy_(sol)
    assert float((model(data.x) - data.y).abs().max()) < 1e-9
    return model
