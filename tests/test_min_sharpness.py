"""Minimum sharpness (Ibayashi et al. 2021): rescalings, closed forms against brute force."""

import math

import numpy as np
import pytest
import torch
from conftest import interpolate_output_layer
from scipy.optimize import minimize

from sharpness_lib import (
    hessian_trace,
    hessian_trace_autograd,
    make_model,
    make_parity_xor,
)
from sharpness_lib.data import hypercube
from sharpness_lib.losses import loss_derivatives
from sharpness_lib.min_sharpness import (
    MinSharpness,
    minimum_sharpness,
    path_norm,
    rescale,
)
from sharpness_lib.models import MODEL_CLASSES

D_IN, WIDTH = 5, 5
HAS_BN_LN = "bn" in MODEL_CLASSES and "ln" in MODEL_CLASSES


@pytest.fixture(scope="module")
def data():
    return make_parity_xor(D_IN, 8, seed=1)


def net(arch, data, width=WIDTH, seed=2, **kw):
    opts = {"init_scale": 1.3}
    if arch in ("sbn", "bn"):
        opts["x_ref"] = data.x
    opts.update(kw)
    return make_model(arch, D_IN, width, seed=seed, **opts)


def trace_of(model, data, loss="mse"):
    return hessian_trace(model, data.x, data.y, loss, 0.1)


def random_scales(shape, seed, low=-1.0, high=1.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.exp(
        torch.rand(shape, generator=gen, dtype=torch.float64) * (high - low) + low
    )


def random_layer_scales(D, seed):
    u = torch.log(random_scales((D,), seed))
    return torch.exp(u - u.mean())  # product exactly 1 up to rounding


# ------------------------------------------------------------------ rescale
RESCALINGS = [
    ("nobias", {}, "neuron", (WIDTH,)),
    ("bias", {}, "neuron", (WIDTH,)),
    ("bias", {}, "layer", None),
    ("deep_bias", {"depth": 3}, "neuron", (2, WIDTH)),
    ("deep_bias", {"depth": 4}, "layer", None),
    ("sbn", {}, "neuron", (2, WIDTH)),
    ("sbn", {}, "layer", (2,)),
    ("sln", {}, "layer", (1,)),
]


@pytest.mark.parametrize("arch,kw,group,shape", RESCALINGS)
def test_rescale_preserves_function_but_not_trace(arch, kw, group, shape, data):
    model = net(arch, data, **kw)
    alpha = (
        random_scales(shape, 3) if shape else random_layer_scales(kw.get("depth", 2), 3)
    )
    new = rescale(model, alpha, group)
    cube = hypercube(D_IN)
    with torch.no_grad():
        assert float((new(cube) - model(cube)).abs().max()) < 1e-12
    assert abs(trace_of(new, data) - trace_of(model, data)) > 1e-3
    # the original is untouched
    assert rescale(model, torch.ones_like(alpha), group).W1.equal(model.W1)


def test_rescale_scalar_shorthand_for_two_layers(data):
    model = net("bias", data)
    a, b = rescale(model, 2.0), rescale(model, [2.0, 0.5])
    assert (
        torch.equal(a.W1, b.W1) and torch.equal(a.W2, b.W2) and torch.equal(a.b1, b.b1)
    )
    assert torch.allclose(a.W1, 2 * model.W1) and torch.allclose(a.W2, model.W2 / 2)


# ------------------------------------------------------------------ closed forms vs brute force
def brute_force(model, data, group, shape, loss="mse", layer_D=None):
    """scipy minimize over log-scales of hessian_trace(rescale(model, exp(u)))."""
    if layer_D is not None:  # product-one constraint: u_D = -sum(u)

        def alpha(u):
            return torch.from_numpy(np.exp(np.append(u, -u.sum())))

        n = layer_D - 1
    else:

        def alpha(u):
            return torch.from_numpy(np.exp(u)).reshape(shape)

        n = int(np.prod(shape))
    res = minimize(
        lambda u: trace_of(rescale(model, alpha(u), group), data, loss),
        np.zeros(n),
        method="BFGS",
        options={"gtol": 1e-9},
    )
    return res.fun


CASES = [
    ("nobias", {}, "neuron", (WIDTH,)),
    ("bias", {}, "neuron", (WIDTH,)),
    ("nobias", {}, "layer", None),
    ("bias", {}, "layer", None),
    ("deep_bias", {"depth": 3}, "layer", None),
    ("deep_bias", {"depth": 4}, "layer", None),
    ("deep_bias", {"depth": 3}, "neuron", (2, WIDTH)),
]


@pytest.mark.parametrize("arch,kw,group,shape", CASES)
@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_relu_minimum_equals_brute_force(arch, kw, group, shape, loss, data):
    model = net(arch, data, **kw)
    r = minimum_sharpness(model, data.x, data.y, group, loss, 0.1)
    assert isinstance(r, MinSharpness) and r.attained
    assert r.method == (
        "numerical" if arch == "deep_bias" and group == "neuron" else "closed form"
    )
    D = kw.get("depth", 2)
    brute = brute_force(model, data, group, shape, loss, layer_D=None if shape else D)
    assert r.value == pytest.approx(brute, rel=1e-8)
    assert r.value < r.trace == pytest.approx(trace_of(model, data, loss), rel=1e-14)
    # the returned scales attain it
    assert trace_of(rescale(model, r.scales, r.group), data, loss) == pytest.approx(
        r.value, rel=1e-10
    )


def test_deep_numerical_minimum_depth4_and_random_restarts(data):
    model = net("deep_bias", data, depth=4, width=4)
    r = minimum_sharpness(model, data.x, data.y)
    assert r.method == "numerical" and r.scales.shape == (3, 4)
    assert r.value == pytest.approx(
        brute_force(model, data, "neuron", (3, 4)), rel=1e-8
    )
    for seed in range(20):  # no rescaling does better
        a = random_scales((3, 4), seed, -2, 2)
        assert trace_of(rescale(model, a, "neuron"), data) >= r.value * (1 - 1e-12)


def test_one_dimensional_grid(data):
    """Layer group of a 2-layer net: Tr(a) = A/a^2 + B a^2 on a fine grid around the argmin."""
    model = net("bias", data)
    r = minimum_sharpness(model, data.x, data.y, "layer")
    a_star = float(r.scales[0])
    grid = a_star * np.exp(np.linspace(-2, 2, 401))
    vals = np.array([trace_of(rescale(model, a), data) for a in grid])
    assert vals.min() >= r.value * (1 - 1e-12)
    assert vals.min() == pytest.approx(r.value, rel=1e-12)  # the grid contains a_star
    assert abs(grid[vals.argmin()] - a_star) < 1e-9
    # the exact shape A/a^2 + B a^2, with A = B a*^4 and A + B the trace at a = 1
    B = r.value / (2 * a_star**2)
    A = B * a_star**4
    assert np.allclose(vals, A / grid**2 + B * grid**2, rtol=1e-10)
    assert A + B == pytest.approx(r.trace, rel=1e-12)


def test_neuron_minimum_is_below_layer_minimum_and_trace(data):
    for arch, kw in [("bias", {}), ("deep_bias", {"depth": 3})]:
        for seed in range(3):
            model = net(arch, data, seed=seed, **kw)
            rn = minimum_sharpness(model, data.x, data.y, "neuron")
            rl = minimum_sharpness(model, data.x, data.y, "layer")
            assert rn.value <= rl.value * (1 + 1e-12) and rl.value <= rl.trace


def test_dead_and_silent_neurons_make_the_infimum_unattained(data):
    model = net("bias", data)
    with torch.no_grad():
        model.W2[0] = 0.0  # live neuron, zero output weight: A_0 = 0 < B_0
        model.W1[1] = 0.0
        model.b1[1] = -1.0  # dead neuron: A_1 = B_1 = 0
    r = minimum_sharpness(model, data.x, data.y)
    assert not r.attained and r.direction.tolist()[:2] == [-1.0, 0.0]
    assert (r.direction[2:] == 0).all()
    limit = [
        trace_of(rescale(model, r.scales * torch.exp(t * r.direction), "neuron"), data)
        for t in (0.0, 5.0, 10.0)
    ]
    assert limit[0] > limit[1] > limit[2] and limit[2] == pytest.approx(
        r.value, rel=1e-7
    )


def test_deep_unattained_infimum_follows_the_escape_direction(data):
    model = net("deep_bias", data, depth=3)
    with torch.no_grad():
        model.hidden_layers[0][:, 2] = (
            0.0  # layer-1 neuron 2 feeds nothing: not on a cycle
        )
    r = minimum_sharpness(model, data.x, data.y)
    assert not r.attained and r.method == "numerical" and r.direction[0, 2] < 0
    vals = [
        trace_of(rescale(model, r.scales * torch.exp(t * r.direction), "neuron"), data)
        for t in (0.0, 4.0, 12.0)
    ]
    assert vals[0] > r.value and vals[2] == pytest.approx(r.value, rel=1e-9)
    for seed in range(10):
        assert (
            trace_of(
                rescale(model, random_scales((2, WIDTH), seed, -2, 2), "neuron"), data
            )
            >= r.value
        )


# ------------------------------------------------------------------ invariance
INVARIANCE = [
    ("nobias", {}, "neuron", (WIDTH,)),
    ("bias", {}, "neuron", (WIDTH,)),
    ("bias", {}, "layer", None),
    ("deep_bias", {"depth": 3}, "neuron", (2, WIDTH)),
    ("deep_bias", {"depth": 3}, "layer", None),
    ("sbn", {"width": 12}, "neuron", (2, 12)),
    ("sln", {"width": 12}, "layer", (1,)),
]


@pytest.mark.parametrize("arch,kw,group,shape", INVARIANCE)
def test_minimum_sharpness_is_invariant(arch, kw, group, shape, data):
    model = net(arch, data, **kw)
    if arch in ("sbn", "sln"):
        model = interpolate_output_layer(model, data)
    r0 = minimum_sharpness(model, data.x, data.y, group)
    for seed in range(3):
        alpha = (
            random_scales(shape, seed)
            if shape
            else random_layer_scales(kw.get("depth", 2), seed)
        )
        r = minimum_sharpness(rescale(model, alpha, group), data.x, data.y, group)
        assert r.value == pytest.approx(r0.value, rel=1e-8)
        assert r.trace != pytest.approx(r0.trace, rel=1e-6)


@pytest.mark.parametrize("arch", ["nobias", "bias", "deep_bias", "sbn", "sln"])
@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_minimum_never_exceeds_trace(arch, loss, data):
    for seed in range(4):
        model = net(arch, data, seed=seed, init_scale=0.5 + 0.5 * seed)
        for group in ("neuron", "layer"):
            r = minimum_sharpness(model, data.x, data.y, group, loss, 0.1)
            assert r.value <= r.trace * (1 + 1e-12) or r.value <= r.trace


# ------------------------------------------------------------------ Sim-BN
def test_simbn_decomposition_and_infimum_at_interpolation(data):
    model = interpolate_output_layer(net("sbn", data, width=12, seed=4), data)
    with torch.no_grad():
        model.gamma.copy_(torch.linspace(0.5, 2.0, 12))
        model.W2.div_(model.gamma)  # same function, gamma != 1
    r = minimum_sharpness(model, data.x, data.y)
    assert not r.attained and r.method == "closed form" and r.value < r.trace
    # the (W1_j, b1_j) block decays as 1/a_j^2: trace(a) -> value
    for t, rel in ((6.0, 1e-4), (12.0, 1e-9)):
        big = rescale(model, r.scales * torch.exp(t * r.direction), "neuron")
        assert trace_of(big, data) == pytest.approx(r.value, rel=rel)

    # brute force over the (gamma_j, W2_j) scales with the first layer scaled up by 1e6
    def at(u):
        alpha = torch.stack(
            [torch.full((12,), 1e6, dtype=torch.float64), torch.from_numpy(np.exp(u))]
        )
        return trace_of(rescale(model, alpha, "neuron"), data)

    assert minimize(at, np.zeros(12), method="BFGS").fun == pytest.approx(
        r.value, rel=1e-8
    )
    # the closed form 2 Z_j |gamma_j W2_j| with Z_j = (2/n) sum_i z_ij^2
    with torch.no_grad():
        z = torch.relu(model.preactivation(data.x))
        z = z / torch.sqrt(z.square().mean(0))
        expected = float(
            (2 * 2 * z.square().mean(0) * (model.gamma * model.W2).abs()).sum()
        )
    assert r.value == pytest.approx(expected, rel=1e-12)


def test_simbn_first_layer_block_can_be_negative_off_interpolation(data):
    """Off interpolation the (W1_j, b1_j) block C_j includes l' Tr d^2 f / d w_j^2; f is
    0-homogeneous in w_j, so the block is C_j / a_j^2 and C_j < 0 sends it to -inf."""
    model = net("sbn", data, seed=0)
    r = minimum_sharpness(model, data.x, data.y)
    assert r.value == -math.inf and not r.attained and (r.direction[0] < 0).any()
    vals = [
        trace_of(rescale(model, r.scales * torch.exp(t * r.direction), "neuron"), data)
        for t in (0.0, 1.0, 3.0)
    ]
    assert vals[0] > vals[1] > vals[2] and vals[2] < -1e3
    # checked against the dense Hessian, not only the closed-form trace
    small = rescale(model, r.scales * torch.exp(r.direction), "neuron")
    assert hessian_trace_autograd(small, data.x, data.y) == pytest.approx(
        vals[1], rel=1e-9
    )


# ------------------------------------------------------------------ Sim-LN
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simln_minimum_is_the_same_constant_for_every_interpolator(seed, data):
    model = interpolate_output_layer(
        net("sln", data, width=10 + 5 * seed, seed=seed, init_scale=0.5 + seed), data
    )
    r = minimum_sharpness(model, data.x, data.y)  # group "neuron" falls back to layer
    assert r.group == "layer" and not r.attained and r.trace > 3
    assert r.value == pytest.approx(2.0, rel=1e-12)  # (1/n) sum_i l''_i, l'' = 2
    for a in (10.0, 1e3, 1e6):  # the (W1, b1) block decays exactly as 1/a^2
        assert trace_of(rescale(model, a), data) - 2.0 == pytest.approx(
            (r.trace - 2.0) / a**2, rel=1e-6
        )
    logi = minimum_sharpness(model, data.x, data.y, loss="logistic")
    with torch.no_grad():
        _, d2 = loss_derivatives(model(data.x), data.y, "logistic")
    assert logi.value == pytest.approx(float(d2.mean()), rel=1e-12)


def test_simln_points_with_zero_hidden_vector_do_not_count(data):
    """A point with h_i = 0 has f_i = 0 and no gradient: the constant is (2/n) #{h_i != 0}."""
    x, y = data.x, data.y.clone()
    y[0] = 0.0  # so that the net can interpolate x_0
    model = net("sln", data, width=12, seed=5)
    with torch.no_grad():
        model.b1.copy_(
            -model.W1 @ x[0] - 0.1
        )  # every neuron's preactivation -0.1 at x_0
        h = torch.relu(model.preactivation(x))
        assert (h[0] == 0).all() and (h[1:].norm(dim=1) > 0.1).all()
        phi = h / h.norm(dim=1, keepdim=True).clamp_min(model.eps)
        p = phi[1:]  # minimum-norm fit of the other points
        model.W2.copy_(p.T @ torch.linalg.solve(p @ p.T, y[1:]))
        assert float((model(x) - y).abs().max()) < 1e-9
    r = minimum_sharpness(model, x, y)
    assert r.value == pytest.approx(2 * 7 / 8, rel=1e-12)
    assert hessian_trace(rescale(model, 1e6), x, y) == pytest.approx(
        2 * 7 / 8, rel=1e-9
    )


def test_simln_negative_first_layer_block_is_bounded_by_eps(data):
    """Off interpolation the (W1, b1) block can be negative; scaling down is a symmetry only
    while every ||h_i|| >= eps, so the minimum sits at that boundary."""
    model = net("sln", data, seed=0)
    r = minimum_sharpness(model, data.x, data.y)
    assert r.attained and r.value < r.trace < 0
    with torch.no_grad():
        r_min = float(torch.relu(model.preactivation(data.x)).norm(dim=1).min())
    assert float(r.scales) == pytest.approx(model.eps / r_min, rel=1e-12)
    at_edge = trace_of(rescale(model, r.scales * (1 + 1e-9)), data)
    assert at_edge == pytest.approx(r.value, rel=1e-6)
    assert trace_of(rescale(model, r.scales * 2), data) > r.value


def test_simln_with_hidden_norm_below_eps_has_no_symmetry(data):
    model = net("sln", data, init_scale=0.3)
    with torch.no_grad():
        r = torch.relu(model.preactivation(data.x)).norm(dim=1)
    model.eps = 2 * float(r[r > 0].min())  # some point now has 0 < ||h_i|| < eps
    r = minimum_sharpness(model, data.x, data.y)
    assert r.value == r.trace and r.attained and float(r.scales) == 1.0
    with torch.no_grad():  # indeed any rescaling changes f there
        assert float((rescale(model, 1.01)(data.x) - model(data.x)).abs().max()) > 1e-6


# ------------------------------------------------------------------ standard BN / LN
@pytest.mark.skipif(
    not HAS_BN_LN, reason="bn/ln archs not in this version of models.py"
)
@pytest.mark.parametrize("arch", ["bn", "ln"])
def test_bn_ln_pairs_and_first_layer_limit(arch, data):
    model = net(arch, data, width=12, eps=1e-12, init_scale=1.0)
    with torch.no_grad():
        model.beta.copy_(torch.linspace(-1, 1, 12))
    model = interpolate_output_layer(model, data)
    r = minimum_sharpness(model, data.x, data.y)
    assert r.trace == pytest.approx(
        hessian_trace_autograd(model, data.x, data.y), rel=1e-9
    )

    def at(u):  # first layer scaled up 1e6: its block -> 0
        first = torch.full((12,), 1e6, dtype=torch.float64)
        return trace_of(
            rescale(model, torch.stack([first, torch.from_numpy(np.exp(u))]), "neuron"),
            data,
        )

    assert minimize(at, np.zeros(12), method="BFGS").fun == pytest.approx(
        r.value, rel=1e-7
    )
    with torch.no_grad():
        big = rescale(model, r.scales * torch.exp(12 * r.direction), "neuron")
        assert float((big(data.x) - model(data.x)).abs().max()) < 1e-9  # eps = 1e-12
    assert trace_of(big, data) == pytest.approx(r.value, rel=1e-8)


# ------------------------------------------------------------------ path norm
def _ms_bounds(model, x, y, loss):
    """Lower (Cauchy-Schwarz) and upper (2 kappa PN) bounds of path_norm's docstring."""
    with torch.no_grad():
        _, d2 = loss_derivatives(model(x), y, loss, 0.1)
        xa = x if model.b1 is None else torch.cat([x, torch.ones_like(x[:, :1])], 1)
        h = torch.relu(model.preactivation(x))
        lower = 2 * float(
            (model.W2.abs() * ((d2 * xa.norm(dim=1))[:, None] * h).mean(0)).sum()
        )
        kappa = float((d2 * xa.square().sum(1)).mean())
    return lower, 2 * kappa * path_norm(model)


@pytest.mark.parametrize("arch", ["nobias", "bias"])
@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_path_norm_sandwiches_minimum_sharpness(arch, loss, data):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, D_IN, generator=gen, dtype=torch.float64)  # not only the cube
    y = torch.sign(torch.randn(12, generator=gen, dtype=torch.float64))
    for seed in range(5):
        model = make_model(arch, D_IN, 6, seed=seed, init_scale=0.3 + seed)
        ms = minimum_sharpness(model, x, y, loss=loss, label_smoothing=0.1).value
        lower, upper = _ms_bounds(model, x, y, loss)
        assert lower * (1 - 1e-12) <= ms <= upper * (1 + 1e-12)
        assert lower < upper
        a = random_scales((6,), seed, -2, 2)
        assert path_norm(rescale(model, a, "neuron")) == pytest.approx(
            path_norm(model), rel=1e-13
        )


def test_full_hypercube_no_bias_minimum_is_2_sqrt_d_path_norm():
    d = 5
    x = hypercube(d)
    y = x[:, 0] * x[:, 1]
    model = make_model("nobias", d, 40, seed=3)
    r = minimum_sharpness(model, x, y)  # any parameters, interpolating or not
    assert r.value == pytest.approx(2 * math.sqrt(d) * path_norm(model), rel=1e-12)
    interp = interpolate_output_layer(
        make_model("nobias", d, 40, seed=3), type("D", (), {"x": x, "y": y})()
    )
    ri = minimum_sharpness(interp, x, y)
    assert ri.value == pytest.approx(2 * math.sqrt(d) * path_norm(interp), rel=1e-12)
    # a vertex on a neuron's hyperplane (p_j < 1/2) makes the inequality strict
    with torch.no_grad():
        model.W1[0] = torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    assert (
        minimum_sharpness(model, x, y).value
        < 2 * math.sqrt(d) * path_norm(model) - 1e-3
    )
    # the chapter's lower bound 4 sqrt(d) sum_j |W2_j| mean_i relu(W1_j x_i) holds for MS
    lower, _ = _ms_bounds(model, x, y, "mse")
    with torch.no_grad():
        chapter = (
            4
            * math.sqrt(d)
            * float((model.W2.abs() * torch.relu(x @ model.W1.T).mean(0)).sum())
        )
    assert lower == pytest.approx(chapter, rel=1e-12)


# ------------------------------------------------------------------ errors
def _one_sentence(exc):
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0, msg


BAD_ALPHA = [
    ("bias", "neuron", [1.0] * 4, "shape"),
    ("bias", "neuron", [1, 1, -1, 1, 1], "positive"),
    ("bias", "neuron", [1, 1, float("nan"), 1, 1], "positive"),
    ("bias", "layer", [2.0, 2.0], "multiply to 1"),
    ("bias", "layer", float("inf"), "positive"),
    ("deep_bias", "layer", [1.0, 1.0], "shape"),
    ("bias", "layer", "two", "number"),
    ("sln", "neuron", [1.0] * WIDTH, "no per-neuron"),
    ("softplus", "layer", 2.0, "softplus"),
    ("bias", "rows", 2.0, "group"),
    ("sbn", "layer", 2.0, "shape"),
]


@pytest.mark.parametrize("arch,group,alpha,match", BAD_ALPHA)
def test_bad_rescalings_raise_one_sentence(arch, group, alpha, match, data):
    model = net(arch, data, **({"depth": 3} if arch == "deep_bias" else {}))
    with pytest.raises(ValueError, match=match) as exc:
        rescale(model, alpha, group)
    _one_sentence(exc)


def test_bad_inputs_to_minimum_sharpness_and_path_norm(data):
    model = net("bias", data)
    cases = [
        (lambda: minimum_sharpness(model, data.x[:, :3], data.y), "shape"),
        (lambda: minimum_sharpness(model, data.x, data.y[:3]), "shape"),
        (lambda: minimum_sharpness(model, data.x, data.y, group="rows"), "group"),
        (lambda: minimum_sharpness(model, data.x, data.y, loss="hinge"), "loss"),
        (lambda: minimum_sharpness(net("softplus", data), data.x, data.y), "softplus"),
        (
            lambda: minimum_sharpness(torch.nn.Linear(5, 1), data.x, data.y),
            "make_model",
        ),
        (lambda: path_norm(net("sbn", data)), "2-layer ReLU"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match) as exc:
            call()
        _one_sentence(exc)
