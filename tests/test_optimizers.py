"""Base optimizers for SAM: AdaBound / AdaShift against numpy transcriptions of the published
rules, the registry against torch.optim, SAM over every base, errors, and training."""

import copy
import inspect
import math
import warnings

import numpy as np
import pytest
import torch

from sharpness_lib import SAM, TrainConfig, make_model, make_parity_xor, train
from sharpness_lib.losses import mean_loss
from sharpness_lib.optimizers import (
    BASE_OPTIMIZERS,
    AdaBound,
    AdaShift,
    get_spec,
    make_optimizer,
)
from sharpness_lib.training import build_model

STEPS = 50


# ----------------------------------------------------------------------------------------
# A small stochastic least-squares problem: loss_t = 0.5 ||X_t W + b - Y_t||^2
# ----------------------------------------------------------------------------------------
def problem(seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(3, 2)),
        rng.normal(size=2),
        rng.normal(size=(steps, 5, 3)),
        rng.normal(size=(steps, 5, 2)),
    )


def np_grads(params, X, Y):
    W, b = params
    R = X @ W + b - Y
    return [X.T @ R, R.sum(0)]


def run_torch(make_opt, seed=0, steps=STEPS, lr_at=None):
    W0, b0, Xs, Ys = problem(seed, steps)
    W = torch.nn.Parameter(torch.tensor(W0))
    b = torch.nn.Parameter(torch.tensor(b0))
    opt = make_opt([W, b])
    for t in range(1, steps + 1):
        if lr_at is not None:
            for g in opt.param_groups:
                g["lr"] = lr_at(t)
        opt.zero_grad()
        X, Y = torch.tensor(Xs[t - 1]), torch.tensor(Ys[t - 1])
        (0.5 * (X @ W + b - Y).square().sum()).backward()
        opt.step()
    return [W.detach().numpy(), b.detach().numpy()]


def adabound_numpy(
    lr_at, betas, final_lr, gamma, eps, wd, amsbound, seed=0, steps=STEPS
):
    """Luo et al. (2019), as in the official code: Adam moments, the per-coordinate step
    lr_t sqrt(1 - b2^t) / ((1 - b1^t)(sqrt(v) + eps)) clipped into
    [fl (1 - 1/(gamma t + 1)), fl (1 + 1/(gamma t))], fl = final_lr lr_t / lr_1."""
    W0, b0, Xs, Ys = problem(seed, steps)
    params = [W0.copy(), b0.copy()]
    b1, b2 = betas
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    vmax = [np.zeros_like(p) for p in params]
    clipped = 0
    for t in range(1, steps + 1):
        lr = lr_at(t)
        fl = final_lr * lr / lr_at(1)
        lo, hi = fl * (1 - 1 / (gamma * t + 1)), fl * (1 + 1 / (gamma * t))
        grads = np_grads(params, Xs[t - 1], Ys[t - 1])
        for k, p in enumerate(params):
            g = grads[k] + wd * p
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            vmax[k] = np.maximum(vmax[k], v[k])
            vv = vmax[k] if amsbound else v[k]
            eta = lr / (np.sqrt(vv) + eps) * math.sqrt(1 - b2**t) / (1 - b1**t)
            clipped += int(np.sum((eta < lo) | (eta > hi)))
            params[k] = p - np.clip(eta, lo, hi) * m[k]
    return params, clipped


def adashift_numpy(lr, betas, n, eps, wd, reduce, seed=0, steps=STEPS):
    """Zhou et al. (2019), Algorithm 3 with the authors' bias correction and eps: from the
    full gradient history, m_t = sum_i b1^i g_{t-i} / sum_i b1^i (i < n),
    v_t = b2 v_{t-1} + (1 - b2) phi(g_{t-n}^2), step lr m_t / (sqrt(v_t / (1 - b2^k)) + eps),
    k = steps since v first became > 0 (per block), no step while k = 0."""
    W0, b0, Xs, Ys = problem(seed, steps)
    params = [W0.copy(), b0.copy()]
    b1, b2 = betas
    phi = {"max": np.max, "mean": np.mean, "none": lambda a: a}[reduce]
    hist = [[], []]
    v = [0.0, 0.0]
    ks = [0.0, 0.0]
    for t in range(1, steps + 1):
        grads = np_grads(params, Xs[t - 1], Ys[t - 1])
        for k, p in enumerate(params):
            hist[k].append(grads[k] + wd * p)  # hist[k][t - 1] = g_t
            if t <= n:
                continue
            norm = sum(b1**i for i in range(n))
            m = sum(b1**i * hist[k][t - 1 - i] for i in range(n)) / norm
            v[k] = b2 * v[k] + (1 - b2) * phi(hist[k][t - 1 - n] ** 2)
            ks[k] = ks[k] + ((np.asarray(v[k]) > 0) | (ks[k] > 0))
            with np.errstate(divide="ignore", invalid="ignore"):
                vhat = v[k] / (1 - b2 ** ks[k])
                params[k] = p - np.where(ks[k] > 0, lr * m / (np.sqrt(vhat) + eps), 0.0)
    return params


@pytest.mark.parametrize(
    "gamma,wd,amsbound,lr_change",
    [
        (1e-3, 0.0, False, False),  # published defaults
        (
            0.1,
            0.01,
            False,
            True,
        ),  # fast bounds: clipping from both sides; lr change at t=25
        (0.1, 0.0, True, False),  # AMSBound
    ],
)
def test_adabound_matches_numpy_transcription(gamma, wd, amsbound, lr_change):
    lr0 = 0.02
    lr_at = (lambda t: lr0 if t < 25 else 0.3 * lr0) if lr_change else (lambda t: lr0)
    hyper = dict(betas=(0.9, 0.999), final_lr=0.1, gamma=gamma, eps=1e-8)
    got = run_torch(
        lambda ps: AdaBound(ps, lr=lr0, weight_decay=wd, amsbound=amsbound, **hyper),
        lr_at=lr_at,
    )
    want, clipped = adabound_numpy(lr_at, wd=wd, amsbound=amsbound, **hyper)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    if gamma == 0.1:
        assert clipped > 0  # the bounds are active, so the clamp is tested


@pytest.mark.parametrize(
    "n,reduce,wd",
    [(10, "max", 0.0), (3, "mean", 0.01), (1, "none", 0.0), (4, "max", 0.05)],
)
def test_adashift_matches_numpy_transcription(n, reduce, wd):
    hyper = dict(lr=0.05, betas=(0.9, 0.999), eps=1e-10)
    got = run_torch(
        lambda ps: AdaShift(ps, keep_num=n, reduce=reduce, weight_decay=wd, **hyper)
    )
    want = adashift_numpy(n=n, reduce=reduce, wd=wd, **hyper)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    start = problem()[:2]
    assert all(np.abs(g - s).max() > 1e-3 for g, s in zip(got, start))


def test_adashift_first_keep_num_steps_only_fill_the_queue():
    for steps, moved in ((10, False), (11, True)):
        got = run_torch(lambda ps: AdaShift(ps, lr=0.1), steps=steps)
        start = problem(steps=steps)[:2]
        assert all((not np.array_equal(g, s)) == moved for g, s in zip(got, start))


def test_adashift_block_with_zero_shifted_gradient_stays_put():
    # the gradient is 0 for steps 1..3 and 1 afterwards: with keep_num 3, v stays 0 until
    # step 7 (g_{t-3} = g_4 is the first nonzero), so the parameter must not move before
    q = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = AdaShift([q], lr=0.1, keep_num=3)
    for t in range(1, 8):
        opt.zero_grad()
        (q.sum() * (0.0 if t <= 3 else 1.0)).backward()
        opt.step()
        assert bool((q == 0).all()) == (t < 7), t
    assert float(q.detach()[0]) == pytest.approx(-0.1 / (1 + 1e-10), rel=1e-14)


@pytest.mark.parametrize(
    "cls,kw",
    [
        (AdaBound, dict(lr=0.02, gamma=0.1, weight_decay=0.01)),
        (AdaShift, dict(lr=0.05, keep_num=4, weight_decay=0.01)),
    ],
)
def test_state_dict_round_trip_continues_identically(cls, kw):
    W0, b0, Xs, Ys = problem()

    def fresh():
        ps = [
            torch.nn.Parameter(torch.tensor(W0)),
            torch.nn.Parameter(torch.tensor(b0)),
        ]
        return ps, cls(ps, **kw)

    def steps(ps, opt, ts):
        for t in ts:
            opt.zero_grad()
            (
                0.5
                * (torch.tensor(Xs[t]) @ ps[0] + ps[1] - torch.tensor(Ys[t]))
                .square()
                .sum()
            ).backward()
            opt.step()

    pa, oa = fresh()
    steps(pa, oa, range(30))
    pb, ob = fresh()
    steps(pb, ob, range(12))
    saved = copy.deepcopy(ob.state_dict())
    pc, oc = fresh()
    with torch.no_grad():
        for c, b in zip(pc, pb):
            c.copy_(b)
    oc.load_state_dict(saved)
    steps(pc, oc, range(12, 30))
    for a, c in zip(pa, pc):
        assert torch.equal(a, c)


# ----------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------
def test_registry_names_and_default_lrs():
    assert tuple(BASE_OPTIMIZERS) == (
        "sgd",
        "momentum",
        "adam",
        "adagrad",
        "adabound",
        "adashift",
    )
    lrs = {k: s.default_lr for k, s in BASE_OPTIMIZERS.items()}
    assert lrs == {
        "sgd": 0.1,
        "momentum": 0.1,
        "adam": 1e-3,
        "adagrad": 1e-2,
        "adabound": 1e-3,
        "adashift": 1e-3,
    }
    assert BASE_OPTIMIZERS["momentum"].hyper == {
        "momentum": 0.9,
        "dampening": 0.0,
        "nesterov": False,
    }


@pytest.mark.parametrize("name", list(BASE_OPTIMIZERS))
def test_registry_hyperparameters_are_the_class_defaults(name):
    spec = get_spec(name)
    sig = inspect.signature(spec.cls.__init__).parameters
    for key, value in spec.hyper.items():
        if name == "momentum" and key == "momentum":
            continue
        assert sig[key].default == value, (name, key)
    assert sig["lr"].default == spec.default_lr or name in ("sgd", "momentum")


DIRECT = {
    "sgd": lambda ps, lr, wd: torch.optim.SGD(ps, lr=lr, weight_decay=wd),
    "momentum": lambda ps, lr, wd: torch.optim.SGD(
        ps, lr=lr, momentum=0.9, weight_decay=wd
    ),
    "adam": lambda ps, lr, wd: torch.optim.Adam(ps, lr=lr, weight_decay=wd),
    "adagrad": lambda ps, lr, wd: torch.optim.Adagrad(ps, lr=lr, weight_decay=wd),
}
DIRECT_CLS = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "adam": (torch.optim.Adam, {}),
    "adagrad": (torch.optim.Adagrad, {}),
}


@pytest.mark.parametrize("name", list(DIRECT))
def test_registry_gives_the_torch_optim_trajectory(name):
    lr, wd = 0.01, 0.01
    got = run_torch(lambda ps: make_optimizer(name, ps, lr, weight_decay=wd), steps=20)
    want = run_torch(lambda ps: DIRECT[name](ps, lr, wd), steps=20)
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
    cls, extra = DIRECT_CLS[name]
    got = _sam_run(
        lambda ps: make_optimizer(name, ps, lr, weight_decay=wd, sam_rho=0.1)
    )
    want = _sam_run(lambda ps: SAM(ps, cls, rho=0.1, lr=lr, weight_decay=wd, **extra))
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_make_optimizer_defaults_and_overrides():
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = make_optimizer("adashift", p, None)
    assert isinstance(opt, AdaShift) and opt.param_groups[0]["lr"] == 1e-3
    assert (
        opt.param_groups[0]["keep_num"] == 10 and opt.param_groups[0]["reduce"] == "max"
    )
    opt = make_optimizer("momentum", p, 0.1, momentum=0.8)
    assert opt.param_groups[0]["momentum"] == 0.8
    sam = make_optimizer("adabound", p, 0.01, weight_decay=1e-4, sam_rho=0.05)
    assert isinstance(sam, SAM) and isinstance(sam.base_optimizer, AdaBound)
    g = sam.param_groups[0]
    assert (g["rho"], g["lr"], g["weight_decay"], g["final_lr"], g["base_lr"]) == (
        0.05,
        0.01,
        1e-4,
        0.1,
        0.01,
    )


@pytest.mark.parametrize(
    "args,kw,msg",
    [
        (("rmsprop", 0.1), {}, "optimizer must be one of sgd, momentum, adam"),
        (("sgd", 0.0), {}, "lr must be > 0"),
        (("sgd", -1.0), {}, "lr must be > 0"),
        (("adam", float("nan")), {}, "lr must be a finite number"),
        (("adam", 0.1), dict(weight_decay=-0.1), "weight_decay must be >= 0"),
        (("adam", 0.1), dict(sam_rho=-0.1), "sam_rho must be >= 0"),
        (("adam", 0.1), dict(sam_rho="big"), "sam_rho must be a number"),
        (
            ("adam", 0.1),
            dict(momentum=0.9),
            "'momentum' is not a hyperparameter of optimizer 'adam'",
        ),
        (("adashift", 0.1), dict(keep_num=0), "keep_num must be >= 1"),
        (
            ("adashift", 0.1),
            dict(reduce="min"),
            "reduce must be one of max, mean, none",
        ),
        (("adabound", 0.1), dict(betas=(0.9, 1.0)), r"betas\[1\] must be in \[0, 1\)"),
        (("adabound", 0.1), dict(gamma=0.0), "gamma must be > 0"),
    ],
)
def test_make_optimizer_errors_are_one_sentence(args, kw, msg):
    p = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match=msg) as err:
        make_optimizer(args[0], p, args[1], **kw)
    assert str(err.value).endswith(".") and "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------
# SAM over every base optimizer on a small 2-MLP
# ----------------------------------------------------------------------------------------
DATA = make_parity_xor(6, 16, seed=3)


def _sam_run(make_opt, epochs=1, model=None):
    model = model or make_model("bias", 6, 16, seed=0)
    opt = make_opt(list(model.parameters()))
    for _ in range(epochs):
        for i in range(DATA.n):
            x, y = DATA.x[i : i + 1], DATA.y[i : i + 1]

            def closure(x=x, y=y):
                opt.zero_grad()
                loss = mean_loss(model(x), y, "mse", 0.0)
                loss.backward()
                return loss

            opt.step(closure)
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", list(BASE_OPTIMIZERS))
def test_one_sam_over_every_base_decreases_the_loss(name):
    model = make_model("bias", 6, 16, seed=0)

    def full():
        return float(mean_loss(model(DATA.x), DATA.y, "mse", 0.0).detach())

    before = full()
    lr = {"sgd": 0.05, "momentum": 0.005}.get(
        name, 0.01
    )  # heavy ball: 10x effective lr
    _sam_run(
        lambda ps: make_optimizer(name, ps, lr, sam_rho=0.05), epochs=3, model=model
    )
    after = full()
    assert math.isfinite(after) and after < 0.9 * before, (before, after)


# ----------------------------------------------------------------------------------------
# Through training.train (reference path)
# ----------------------------------------------------------------------------------------
TINY = dict(d=6, n=12, width=8, epochs=6, log_every=2)


@pytest.mark.parametrize("name", ["adabound", "adashift"])
def test_training_with_new_base_optimizers(name):
    cfg = TrainConfig(optimizer=name, algo="sam1", lr=0.01, rho=0.05, wd=1e-3, **TINY)
    r = train(cfg, engine="reference")
    assert r.status == "completed" and r.engine == "reference"
    assert [h["epoch"] for h in r.history] == [0, 2, 4, 6]
    assert all(math.isfinite(h["train_loss"]) for h in r.history)
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    label = BASE_OPTIMIZERS[name].label
    assert (
        f"1-SAM over {label}" in cfg.describe()
        and cfg.summary()["algo"] == f"1-SAM over {label}"
    )


@pytest.mark.parametrize("name", ["adabound", "adashift", "momentum"])
def test_training_builds_the_registry_optimizer(name):
    cfg = TrainConfig(
        optimizer=name,
        algo="gd",
        lr=0.02,
        wd=0.01,
        d=6,
        n=12,
        width=8,
        epochs=15,
        log_every=15,
    ).validate()
    r = train(cfg, engine="reference")
    model = build_model(cfg, make_parity_xor(cfg.d, cfg.n, cfg.seed))
    opt = make_optimizer(name, model.parameters(), 0.02, weight_decay=0.01)
    for _ in range(15):
        opt.zero_grad()
        mean_loss(model(r.data.x), r.data.y, "mse", 0.0).backward()
        opt.step()
    for a, b in zip(r.model.parameters(), model.parameters()):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------
# Cross-checks against third-party implementations, when they are importable
# ----------------------------------------------------------------------------------------
def test_adabound_equals_official_package():
    adabound = pytest.importorskip("adabound")
    kw = dict(
        lr=0.02,
        betas=(0.9, 0.999),
        final_lr=0.1,
        gamma=0.1,
        eps=1e-8,
        weight_decay=0.01,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        want = run_torch(lambda ps: adabound.AdaBound(ps, **kw))
    got = run_torch(lambda ps: AdaBound(ps, **kw))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-14, atol=1e-15)


def test_adashift_and_adabound_agree_with_pytorch_optimizer():
    po = pytest.importorskip("pytorch_optimizer")
    got = run_torch(lambda ps: AdaShift(ps, lr=0.05, keep_num=4))
    want = run_torch(
        lambda ps: po.AdaShift(
            ps, lr=0.05, keep_num=4, reduce_func=torch.max, eps=1e-10
        )
    )
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    kw = dict(lr=0.02, betas=(0.9, 0.999), final_lr=0.1, gamma=0.1, eps=1e-8)
    got = run_torch(lambda ps: AdaBound(ps, **kw))
    want = run_torch(lambda ps: po.AdaBound(ps, weight_decouple=False, **kw))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
