"""Closed-form Tr nabla^2 L against brute-force autograd Hessians; Lemma 4.1; Hutchinson."""

import pytest
import torch
from conftest import ARCH_OPTIONS, build, interpolate_output_layer

from sharpness_lib import (
    hessian_trace,
    hessian_trace_autograd,
    hessian_trace_hutchinson,
    lemma41_trace,
    make_parity_xor,
    sharpness_lower_bound,
)

ARCHS = list(ARCH_OPTIONS)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_exact_trace_matches_autograd_at_random_params(arch, seed, loss, small_data):
    model = build(arch, small_data, seed=seed, init_scale=1.5)
    exact = hessian_trace(model, small_data.x, small_data.y, loss, 0.2)
    brute = hessian_trace_autograd(model, small_data.x, small_data.y, loss, 0.2)
    assert exact == pytest.approx(brute, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_exact_trace_matches_autograd_at_interpolation(arch, small_data):
    model = interpolate_output_layer(
        build(arch, small_data, width=20, seed=4), small_data
    )
    exact = hessian_trace(model, small_data.x, small_data.y)
    brute = hessian_trace_autograd(model, small_data.x, small_data.y)
    assert exact == pytest.approx(brute, rel=1e-9)
    # Lemma 4.1: at interpolation the trace is (2/n) sum ||grad f||^2
    assert lemma41_trace(model, small_data.x) == pytest.approx(exact, rel=1e-9)


def test_sbn_trace_on_other_inputs_uses_reference_statistic(small_data):
    other = make_parity_xor(6, 9, seed=11)
    model = build("sbn", small_data, width=6)
    assert hessian_trace(model, other.x, other.y) == pytest.approx(
        hessian_trace_autograd(model, other.x, other.y), rel=1e-10
    )


def test_lemma41_differs_away_from_interpolation(small_data):
    model = build("softplus", small_data)
    assert (
        abs(
            lemma41_trace(model, small_data.x)
            - hessian_trace(model, small_data.x, small_data.y)
        )
        > 1e-3
    )


@pytest.mark.parametrize(
    "arch,depth",
    [("bias", 2), ("nobias", 2), ("deep_bias", 3), ("deep_bias", 4), ("sln", 2)],
)
def test_lower_bound_holds_for_random_interpolating_nets(arch, depth):
    data = make_parity_xor(5, 10, seed=7)
    bound = sharpness_lower_bound(arch, data.x, data.y, depth=depth)
    for seed in range(8):
        kw = {"depth": depth} if arch == "deep_bias" else {}
        model = interpolate_output_layer(
            build(arch, data, width=32, seed=seed, init_scale=0.5 + 0.25 * seed, **kw),
            data,
        )
        assert hessian_trace(model, data.x, data.y) >= bound * (1 - 1e-12)


def test_hutchinson_interval_covers_exact_trace(small_data):
    model = build("softplus", small_data)
    exact = hessian_trace(model, small_data.x, small_data.y)
    est = hessian_trace_hutchinson(
        model, small_data.x, small_data.y, num_samples=400, seed=1
    )
    assert est.stderr > 0
    assert abs(est.mean - exact) < 4 * est.stderr
    assert est.ci_low < est.mean < est.ci_high


def test_jacobian_terms_rejects_unknown_models(small_data):
    with pytest.raises(TypeError, match="hutchinson"):
        hessian_trace(torch.nn.Linear(6, 1).double(), small_data.x, small_data.y)


def test_a_new_activation_is_refused_not_given_relus_trace(small_data):
    # a TwoLayerNet subclass the closed form does not know must not fall back to ReLU's
    # derivatives (a plausible but wrong trace: found by following CONTRIBUTING.md)
    from sharpness_lib.models import TwoLayerNet

    class TwoMLPLeaky(TwoLayerNet):
        arch = "leaky"

        def hidden(self, x):
            return torch.nn.functional.leaky_relu(self.preactivation(x), 0.1)

    model = TwoMLPLeaky(small_data.d, 5).double()
    with pytest.raises(TypeError, match="_elementwise_terms"):
        hessian_trace(model, small_data.x, small_data.y)
