"""Exactness of the numba engine against a per-sample autograd reference (float64).

The reference below is deliberately naive and self-contained: functional torch, one sample at a
time, two autograd passes per 1-SAM step, written straight from the semantics in the docstring
of the ``sharpness_lib.engine`` package (Wen, Li, Ma 2023: 1-SAM, m-SAM, SGD, GD(+WD),
projected 1-SAM).
"""

import math

import numpy as np
import pytest
import torch

from sharpness_lib import engine

torch.set_default_dtype(torch.float64)


# ------------------------------------------------------------------------------ reference
def ref_forward(p, x, arch, eps, X):
    """f(x) for a batch x (B, d) or one sample (d,)."""
    z = x @ p["W1"].T
    if "b1" in p:
        z = z + p["b1"]
    if arch == "softplus":
        return torch.nn.functional.softplus(z) @ p["W2"]
    h = torch.relu(z)
    if arch == "sln":
        norm = torch.clamp(torch.linalg.vector_norm(h, dim=-1, keepdim=True), min=eps)
        return (h / norm) @ p["W2"]
    if arch == "sbn":
        Z = X @ p["W1"].T + p["b1"]
        s2 = torch.relu(Z).pow(2).mean(0)
        live = s2 > 0
        # dead neurons (s_j == 0) contribute 0 and get no gradient; keep sqrt away from 0
        s = torch.sqrt(torch.where(live, s2, torch.ones_like(s2)))
        return (h * p["gamma"] * live / s) @ p["W2"]
    return h @ p["W2"]


def ref_loss(p, idx, X, Y, arch, eps, loss="mse", label_smoothing=0.0):
    out = ref_forward(p, X[idx], arch, eps, X)
    if loss == "mse":
        return ((out - Y[idx]) ** 2).mean()
    # logistic loss with label smoothing: mass 1 - ls/2 on the true label, ls/2 on the other
    t = Y[idx] * out
    ls = label_smoothing
    return (
        -(1 - ls / 2) * torch.nn.functional.logsigmoid(t)
        - (ls / 2) * torch.nn.functional.logsigmoid(-t)
    ).mean()


def ref_train(
    params,
    X,
    Y,
    orders,
    *,
    arch,
    algo,
    lr,
    rho=0.0,
    wd=0.0,
    batch_size=1,
    eps=1e-6,
    project_norm=None,
    epochs=None,
    loss="mse",
    label_smoothing=0.0,
):
    names = list(params)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    n = X.shape[0]
    E = epochs if (algo == "gd" and epochs is not None) else len(orders)
    bsz = 1 if algo == "sam1" else batch_size
    for ep in range(E):
        if algo == "gd":
            chunks = [torch.arange(n)]
        else:
            o = torch.tensor(orders[ep])
            chunks = [o[c : c + bsz] for c in range(0, n, bsz)]
        for idx in chunks:
            lv = ref_loss(p, idx, Xt, Yt, arch, eps, loss, label_smoothing)
            g = torch.autograd.grad(lv, [p[k] for k in names])
            if algo in ("sam1", "msam"):
                gn = torch.sqrt(sum((gi**2).sum() for gi in g))
                c = rho / gn if gn > 0 else 0.0
                pp = {
                    k: (p[k] + c * gi).detach().requires_grad_(True)
                    for k, gi in zip(names, g)
                }
                lv = ref_loss(pp, idx, Xt, Yt, arch, eps, loss, label_smoothing)
                g = torch.autograd.grad(lv, [pp[k] for k in names])
            with torch.no_grad():
                for k, gi in zip(names, g):
                    p[k] -= lr * (gi + wd * p[k])
                if project_norm is not None:
                    nrm = torch.sqrt((p["W1"] ** 2).sum() + (p["b1"] ** 2).sum())
                    p["W1"] *= project_norm / nrm
                    p["b1"] *= project_norm / nrm
    return {k: v.detach().numpy() for k, v in p.items()}


# ------------------------------------------------------------------------------ fixtures
def make_problem(arch, n=100, d=20, m=32, seed=0, w1_scale=1.0, gamma0=0.3):
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 1.0], size=(n, d))
    Y = X[:, 0] * X[:, 1]
    p = {"W1": rng.standard_normal((m, d)) * w1_scale / math.sqrt(d)}
    if arch != "nobias":
        p["b1"] = rng.standard_normal(m) * 0.1
    p["W2"] = rng.standard_normal(m) / math.sqrt(m)
    if arch == "sbn":
        p["gamma"] = np.full(m, gamma0)
    return X, Y, p


def orders_for(E, n, seed=1):
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(E)]).astype(np.int64)


def assert_close(got, want, start, rtol=1e-6):
    moved = 0.0
    for k in want:
        a, b = got[k], want[k]
        scale = np.linalg.norm(b)
        err = np.linalg.norm(a - b) / scale
        assert err < rtol, f"{k}: relative error {err:.3e}"
        np.testing.assert_allclose(
            a, b, rtol=rtol, atol=rtol * np.abs(b).max(), err_msg=k
        )
        moved = max(
            moved, np.linalg.norm(b - start[k]) / max(np.linalg.norm(start[k]), 1e-12)
        )
    # the comparison is only meaningful if training actually moved the parameters
    assert moved > 1e-3, f"parameters hardly moved ({moved:.2e})"


def check(arch, algo, E=10, seed=0, prob=None, pm_tables=True, **kw):
    X, Y, p0 = prob or make_problem(arch, seed=seed)
    n = X.shape[0]
    orders = orders_for(E, n, seed + 1)
    want = ref_train(p0, X, Y, orders, arch=arch, algo=algo, **kw)
    got = {k: v.copy() for k, v in p0.items()}
    st = engine.run_epochs(
        got, X, Y, orders, arch=arch, algo=algo, pm_tables=pm_tables, **kw
    )
    assert st.finite and st.epochs_done == E, st
    assert_close(got, want, p0)
    return got


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("arch", ["nobias", "bias", "softplus", "sln", "sbn"])
@pytest.mark.parametrize("wd", [0.0, 0.02])
def test_sam1_matches_reference(arch, wd):
    lr = {"sbn": 0.02, "sln": 0.05}.get(arch, 0.02)
    check(arch, "sam1", lr=lr, rho=0.1, wd=wd, eps=1e-6)


@pytest.mark.parametrize(
    "arch,rho,lr",
    [
        ("nobias", 0.5, 0.01),
        ("bias", 0.05, 0.01),
        ("softplus", 0.5, 0.01),
        ("sln", 0.5, 0.1),
    ],
)
def test_sam1_other_sizes(arch, rho, lr):
    prob = make_problem(arch, d=30, m=64, seed=3)
    check(arch, "sam1", lr=lr, rho=rho, wd=0.0, seed=3, prob=prob)


def test_sam1_projected_sln():
    # Figure 6b: 1-SAM on 2-MLP-Sim-LN with ||(W1, b1)|| held at 10
    X, Y, p = make_problem("sln", seed=2)
    got = check(
        "sln", "sam1", seed=2, prob=(X, Y, p), lr=0.05, rho=0.5, project_norm=10.0
    )
    assert math.isclose(
        math.sqrt((got["W1"] ** 2).sum() + (got["b1"] ** 2).sum()), 10.0, rel_tol=1e-12
    )


@pytest.mark.parametrize("arch", ["nobias", "bias", "softplus", "sln", "sbn"])
@pytest.mark.parametrize(
    "algo,bs", [("sgd", 1), ("sgd", 10), ("gd", 100), ("msam", 10)]
)
def test_minibatch_algos_match_reference(arch, algo, bs):
    E = 200 if algo == "gd" else 10
    check(arch, algo, E=E, lr=0.02, rho=0.1, wd=0.01, batch_size=bs)


def _sbn_active_pattern(p, X):
    return (X @ p["W1"].T + p["b1"]) > 0


@pytest.mark.parametrize("wd,proj", [(0.0, None), (0.01, None), (0.0, 6.0)])
def test_sbn_sam1_packed_statistics_over_1200_steps(wd, proj):
    """The Sim-BN 1-SAM kernel keeps (q_j, Mw_j) per neuron and recomputes them only for the
    neurons active on the current sample (scaling the others).  Against the autograd reference
    (which recomputes the statistic from scratch at every gradient) over 12 epochs = 1200
    steps, called epoch by epoch, in a regime where pre-activations change sign many times
    (points leave and re-enter the support of neurons) and some neurons are nearly dead."""
    X, Y, p0 = make_problem("sbn", m=32, seed=5, gamma0=0.5)
    p0["b1"][:6] = -1.2  # active on few points: these neurons come close to dying
    orders = orders_for(12, 100, 6)
    kw = dict(arch="sbn", algo="sam1", lr=0.02, rho=0.1, wd=wd, project_norm=proj)
    ref = {k: v.copy() for k, v in p0.items()}
    got = {k: v.copy() for k, v in p0.items()}
    on_off = off_on = 0
    patterns = [_sbn_active_pattern(ref, X)]
    for ep in range(12):
        ref = ref_train(ref, X, Y, orders[ep : ep + 1], **kw)
        st = engine.run_epochs(got, X, Y, orders[ep : ep + 1], **kw)
        assert st.finite
        patterns.append(_sbn_active_pattern(ref, X))
        on_off += int((patterns[-2] & ~patterns[-1]).sum())
        off_on += int((~patterns[-2] & patterns[-1]).sum())
    # the regime is the intended one: many sign changes in both directions
    assert on_off > 20 and off_on > 20, (on_off, off_on)
    # a neuron active on at most 3 training points at some epoch
    assert min(int(pt.sum(0).min()) for pt in patterns) <= 3
    assert_close(got, ref, p0)


@pytest.mark.parametrize("algo,bs", [("sgd", 1), ("msam", 1)])
def test_sbn_batch_one_algos_use_the_packed_kernel(algo, bs):
    # SGD / m-SAM with batch size 1 run through the same per-sample Sim-BN kernel
    check("sbn", algo, E=10, lr=0.02, rho=0.1, wd=0.01, batch_size=bs)


@pytest.mark.parametrize("arch", ["nobias", "bias", "softplus", "sln", "sbn"])
@pytest.mark.parametrize("algo,bs", [("sgd", 3), ("msam", 7), ("sgd", 100)])
def test_minibatch_chunks_not_multiple_of_four(arch, algo, bs):
    # the batch gradient processes samples 4 at a time; ragged chunks pad with zero rows
    check(arch, algo, E=4, lr=0.02, rho=0.2, wd=0.01, batch_size=bs)


@pytest.mark.parametrize("arch", ["nobias", "sbn"])
def test_gd_1000_epochs(arch):
    # 1000 full-batch steps (m=32, d=20) against the reference
    X, Y, p0 = make_problem(arch, d=20, m=32, seed=7)
    kw = dict(arch=arch, algo="gd", lr=0.05, wd=0.01, epochs=1000)
    want = ref_train(p0, X, Y, None, **kw)
    got = {k: v.copy() for k, v in p0.items()}
    st = engine.run_epochs(got, X, Y, None, **kw)
    assert st.finite and st.epochs_done == 1000
    assert_close(got, want, p0)


def test_sbn_dead_neuron_gets_no_gradient():
    X, Y, p = make_problem("sbn", m=8)
    p["W1"][0] = 0.0
    p["b1"][0] = -1.0  # relu(W1 x + b1) == 0 on every training point: s_0 == 0
    before = {k: v.copy() for k, v in p.items()}
    st = engine.run_epochs(
        p, X, Y, orders_for(2, 100), arch="sbn", algo="sam1", lr=0.01, rho=0.1
    )
    assert st.finite
    for k in p:
        np.testing.assert_array_equal(p[k][0], before[k][0], err_msg=k)


def test_gd_without_orders():
    X, Y, p0 = make_problem("bias")
    want = ref_train(
        p0, X, Y, None, arch="bias", algo="gd", lr=0.05, wd=0.05, epochs=50
    )
    got = {k: v.copy() for k, v in p0.items()}
    st = engine.run_epochs(
        got, X, Y, None, arch="bias", algo="gd", lr=0.05, wd=0.05, epochs=50
    )
    assert st.finite and st.epochs_done == 50
    assert_close(got, want, p0)


def test_chunked_calls_equal_one_call():
    """The caller runs the engine in chunks between log points: same result as one call."""
    X, Y, p0 = make_problem("bias")
    orders = orders_for(6, 100)
    a = {k: v.copy() for k, v in p0.items()}
    b = {k: v.copy() for k, v in p0.items()}
    engine.run_epochs(a, X, Y, orders, arch="bias", algo="sam1", lr=0.02, rho=0.1)
    for c in range(3):
        engine.run_epochs(
            b,
            X,
            Y,
            orders[2 * c : 2 * c + 2],
            arch="bias",
            algo="sam1",
            lr=0.02,
            rho=0.1,
        )
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_updates_torch_parameters_in_place():
    X, Y, p0 = make_problem("bias", m=16)
    W1 = torch.nn.Parameter(torch.tensor(p0["W1"]))
    b1 = torch.nn.Parameter(torch.tensor(p0["b1"]))
    W2 = torch.nn.Parameter(torch.tensor(p0["W2"]))
    views = {
        "W1": W1.detach().numpy(),
        "b1": b1.detach().numpy(),
        "W2": W2.detach().numpy(),
    }
    engine.run_epochs(
        views, X, Y, orders_for(1, 100), arch="bias", algo="sam1", lr=0.02, rho=0.1
    )
    assert not np.allclose(W1.detach().numpy(), p0["W1"])
    assert np.shares_memory(views["W1"], W1.detach().numpy())


@pytest.mark.parametrize(
    "arch,algo",
    [
        ("bias", "sam1"),
        ("sbn", "sam1"),
        ("bias", "gd"),
        ("sbn", "gd"),
        ("softplus", "sgd"),
    ],
)
def test_divergence_is_reported(arch, algo):
    X, Y, p = make_problem(arch)
    p0 = {k: v.copy() for k, v in p.items()}
    st = engine.run_epochs(
        p, X, Y, orders_for(50, 100), arch=arch, algo=algo, lr=50.0, rho=0.1, epochs=50
    )
    assert not st.finite
    assert st.fail_epoch is not None and st.fail_step is not None
    assert st.epochs_done == st.fail_epoch
    for k in p0:
        np.testing.assert_array_equal(st.start_params[k], p0[k])


def test_supports():
    assert engine.supports("bias", "sam1")
    assert engine.supports("sbn", "gd")
    assert engine.supports("bias", "sam1", loss="logistic")
    assert engine.supports(
        "sln", "msam", optimizer="adashift", options={"reduce": "none"}
    )
    assert not engine.supports("mlp3", "sam1")
    assert not engine.supports("bias", "sam1", loss="hinge")
    assert not engine.supports("bias", "sam1", optimizer="rmsprop")
    assert not engine.supports(
        "bias", "sam1", optimizer="adam", options={"momentum": 0.9}
    )
    assert not engine.supports(
        "bias", "sam1", optimizer="adashift", options={"reduce": "sum"}
    )


def test_run_many_matches_sequential():
    jobs, seq = [], []
    for s in range(4):
        X, Y, p = make_problem("bias", seed=s, m=16)
        orders = orders_for(3, 100, s)
        kw = dict(X=X, Y=Y, orders=orders, arch="bias", algo="sam1", lr=0.02, rho=0.1)
        jobs.append(dict(params={k: v.copy() for k, v in p.items()}, **kw))
        seq.append(dict(params={k: v.copy() for k, v in p.items()}, **kw))
    engine.run_many(jobs, n_threads=2)
    for j in seq:
        engine.run_epochs(**j)
    for a, b in zip(jobs, seq):
        for k in a["params"]:
            np.testing.assert_array_equal(a["params"][k], b["params"][k])


# ------------------------------------------------------------------------------ Sim-BN statistics
def test_sbn_pm_tables_agree_with_dense_statistics():
    """For a +-1 design the Sim-BN 1-SAM kernel tabulates sign patterns (``_sbn_stats_pm``);
    the dense loops give the same run to rounding.  Shapes with ragged groups: d' = 41 (11
    column groups, two chunks of 8), n = 50 (13 row groups)."""
    X, Y, p0 = make_problem("sbn", n=50, d=40, m=24, seed=8, gamma0=0.5)
    orders = orders_for(6, 50, 9)
    kw = dict(arch="sbn", algo="sam1", lr=0.02, rho=0.1, wd=0.01)
    a = {k: v.copy() for k, v in p0.items()}
    assert engine.run_epochs(a, X, Y, orders, **kw).finite
    b = {k: v.copy() for k, v in p0.items()}
    assert engine.run_epochs(b, X, Y, orders, pm_tables=False, **kw).finite
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-11, atol=1e-13, err_msg=k)
    assert_close(a, ref_train(p0, X, Y, orders, **kw), p0)


@pytest.mark.parametrize("no_pm", [False, True])
def test_sbn_sam1_general_inputs(no_pm):
    """Inputs that are not +-1 (dense statistics) and, with the pm path forced off, +-1 ones."""
    X, Y, p0 = make_problem("sbn", seed=4)
    if not no_pm:
        X = X * np.random.default_rng(4).uniform(0.5, 1.5, size=X.shape)
    check(
        "sbn", "sam1", prob=(X, Y, p0), lr=0.02, rho=0.1, wd=0.01, pm_tables=not no_pm
    )


# ------------------------------------------------------------------------------ logistic loss
def test_loss_functions_match_losses_module():
    from sharpness_lib.losses import loss_derivatives, per_sample_loss

    f = torch.linspace(-800.0, 800.0, 4001)
    f = torch.cat([f, torch.linspace(-5, 5, 1001)])
    for y in (-1.0, 1.0):
        yt = torch.full_like(f, y)
        for ls in (0.0, 0.1, 1.0):
            d_ref = loss_derivatives(f, yt, "logistic", ls)[0].numpy()
            l_ref = per_sample_loss(f, yt, "logistic", ls).numpy()
            d = np.array([engine._dldf(float(v), y, engine._LOGISTIC, ls) for v in f])
            lv = np.array([engine._lval(float(v), y, engine._LOGISTIC, ls) for v in f])
            np.testing.assert_allclose(d, d_ref, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(lv, l_ref, rtol=1e-12, atol=1e-15)
    assert engine._dldf(0.3, -1.0, engine._MSE, 0.0) == 2 * 1.3


@pytest.mark.parametrize("arch", ["nobias", "bias", "softplus", "sln", "sbn"])
@pytest.mark.parametrize("algo,bs", [("sam1", 1)])
def test_logistic_matches_naive_reference(arch, algo, bs):
    # (Sim-BN at lr 0.1 is chaotic here: runs 1e-14 apart separate to O(1) within 6 epochs)
    check(
        arch,
        algo,
        E=6,
        lr=0.02 if arch == "sbn" else 0.1,
        rho=0.2,
        wd=0.01,
        batch_size=bs,
        loss="logistic",
        label_smoothing=0.2,
    )


# ------------------------------------------------------------------------------ dense optimizers
def test_engine_covers_every_registry_optimizer():
    """The engine takes its hyperparameters from the registry; a base optimizer added to
    ``BASE_OPTIMIZERS`` without an update kernel makes this fail."""
    from sharpness_lib.optimizers import BASE_OPTIMIZERS

    assert engine.OPTIMIZERS == tuple(BASE_OPTIMIZERS)
    for name, spec in BASE_OPTIMIZERS.items():
        assert engine.supports(
            "bias", "sam1", optimizer=name, options=dict(spec.hyper)
        ), name


@pytest.mark.parametrize(
    "optimizer,options",
    [("adam", {}), ("adashift", {"keep_num": 3}), ("momentum", {"nesterov": True})],
)
def test_optimizer_state_carries_across_calls(optimizer, options):
    """The caller keeps ``opt_state``; epoch-by-epoch calls equal one call."""
    X, Y, p0 = make_problem("sbn", m=16)
    orders = orders_for(4, 100)
    kw = dict(
        arch="sbn",
        algo="sam1",
        lr=1e-3,
        rho=0.1,
        wd=0.01,
        optimizer=optimizer,
        optimizer_options=options,
    )
    a = {k: v.copy() for k, v in p0.items()}
    st = engine.run_epochs(a, X, Y, orders, **kw)
    assert st.finite and st.opt_state.steps == 400
    b = {k: v.copy() for k, v in p0.items()}
    state = engine.new_opt_state(b, arch="sbn", optimizer=optimizer, options=options)
    for e in range(4):
        assert engine.run_epochs(
            b, X, Y, orders[e : e + 1], opt_state=state, **kw
        ).finite
    assert state.steps == 400
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(ValueError, match="opt_state"):
        engine.run_epochs(
            b,
            X,
            Y,
            orders[:1],
            opt_state=state,
            **{**kw, "optimizer": "adam", "optimizer_options": {}}
            if optimizer != "adam"
            else {**kw, "arch": "bias"},
        )


# ------------------------------------------------------------------------------ via training API
training = pytest.importorskip("sharpness_lib.training")


def _train_params(cfg, eng):
    res = training.train(cfg, engine=eng)
    assert res.status == "completed", res.message
    assert res.engine == eng
    return {k: p.detach().numpy().copy() for k, p in res.model.named_parameters()}, res


def _compare_engines(cfg, tol=1e-6):
    ref, rres = _train_params(cfg, "reference")
    got, gres = _train_params(cfg, "numba")
    assert ref.keys() == got.keys()
    c = training.TrainConfig.from_dict(cfg).validate()
    model0 = training.build_model(c, training.make_dataset(c.dataset, c.d, c.n, c.seed))
    start = {k: p.detach().numpy().copy() for k, p in model0.named_parameters()}
    moved = 0.0
    for k in ref:
        err = np.linalg.norm(got[k] - ref[k]) / np.linalg.norm(ref[k])
        assert err < tol, f"{k}: relative error {err:.2e}"
        moved = max(moved, np.linalg.norm(ref[k] - start[k]) / np.linalg.norm(start[k]))
    assert moved > 1e-3, f"parameters hardly moved ({moved:.2e})"
    for a, b in zip(rres.history, gres.history):
        assert a["epoch"] == b["epoch"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    "arch,algo,extra",
    [
        ("nobias", "sam1", {}),
        ("bias", "sam1", {"wd": 0.01}),
        ("softplus", "sam1", {}),
        ("sln", "sam1", {"lr": 0.05}),
        ("sln", "sam1", {"lr": 0.05, "project_norm": 5.0}),
        ("sbn", "sam1", {"gamma_init": 0.3}),
        ("bias", "gd", {"wd": 0.05, "epochs": 100}),
        ("bias", "sgd", {"batch_size": 10, "wd": 0.05}),
        ("nobias", "msam", {"batch_size": 10}),
    ],
)
def test_training_api_reference_vs_numba(arch, algo, extra):
    """train(cfg, engine="reference") and train(cfg, engine="numba") agree after 1000 steps."""
    cfg = dict(
        arch=arch,
        algo=algo,
        d=20,
        n=100,
        width=32,
        lr=0.01,
        rho=0.1,
        epochs=10,
        seed=0,
        log_every=5,
        test_samples=1000,
    )
    cfg.update(extra)
    _compare_engines(cfg)


_ALGOS = [
    ("sam1", 1, 3),
    ("sgd", 1, 3),
    ("sgd", 10, 10),
    ("msam", 10, 10),
    ("gd", 100, 50),
]


@pytest.mark.parametrize("arch", ["nobias", "bias", "softplus", "sln", "sbn"])
@pytest.mark.parametrize("algo,bs,epochs", _ALGOS)
def test_training_api_logistic_loss(arch, algo, bs, epochs):
    """Appendix B (Figures 8-10): logistic loss with label smoothing, every arch x algo (300
    steps for the per-sample algos, 100 / 50 for the others)."""
    cfg = dict(
        arch=arch,
        algo=algo,
        batch_size=bs,
        d=20,
        n=100,
        width=32,
        lr=0.05,
        rho=0.1,
        wd=0.01,
        epochs=epochs,
        seed=1,
        log_every=epochs,
        test_samples=200,
        loss="logistic",
        label_smoothing=0.2,
    )
    _compare_engines(cfg)


_OPT_LR = {
    "sgd": 0.01,
    "momentum": 0.002,
    "adam": 1e-3,
    "adagrad": 0.01,
    "adabound": 1e-3,
    "adashift": 1e-3,
}


@pytest.mark.parametrize("arch", ["nobias", "bias", "softplus", "sln", "sbn"])
@pytest.mark.parametrize(
    "optimizer", ["momentum", "adam", "adagrad", "adabound", "adashift"]
)
def test_training_api_sam1_over_base_optimizers(arch, optimizer):
    """1-SAM over heavy ball / Adam / Adagrad / AdaBound / AdaShift (the engine's dense path)
    against SAM(torch optimizer) of the reference path: 1000 steps, float64, weight decay."""
    cfg = dict(
        arch=arch,
        algo="sam1",
        d=20,
        n=100,
        width=32,
        lr=_OPT_LR[optimizer],
        rho=0.1,
        wd=0.01,
        epochs=10,
        seed=2,
        log_every=10,
        test_samples=200,
        optimizer=optimizer,
    )
    _compare_engines(cfg)


@pytest.mark.parametrize(
    "arch,algo,bs,optimizer,extra",
    [
        ("bias", "msam", 10, "adam", {"optimizer_options": {"amsgrad": True}}),
        (
            "sln",
            "gd",
            100,
            "adagrad",
            {
                "optimizer_options": {
                    "lr_decay": 0.01,
                    "initial_accumulator_value": 0.1,
                },
                "epochs": 100,
            },
        ),
        ("sbn", "sgd", 1, "momentum", {"optimizer_options": {"nesterov": True}}),
        (
            "softplus",
            "sgd",
            10,
            "sgd",
            {"optimizer_options": {"momentum": 0.5, "dampening": 0.3}},
        ),
        (
            "softplus",
            "sam1",
            1,
            "adashift",
            {"optimizer_options": {"reduce": "none", "keep_num": 3}},
        ),
        ("nobias", "msam", 5, "adashift", {"optimizer_options": {"reduce": "mean"}}),
        (
            "bias",
            "sam1",
            1,
            "adabound",
            {
                "optimizer_options": {"amsbound": True},
                "phases": (
                    {"epochs": 5, "lr": 1e-3, "rho": 0.1},
                    {"epochs": 5, "lr": 3e-4, "rho": 0.05},
                ),
            },
        ),
        ("sln", "sam1", 1, "adam", {"project_norm": 5.0, "lr": 0.01}),
        ("sbn", "sam1", 1, "adam", {"loss": "logistic", "label_smoothing": 0.1}),
        ("sbn", "gd", 100, "adabound", {"epochs": 100}),
    ],
)
def test_training_api_optimizer_options(arch, algo, bs, optimizer, extra):
    cfg = dict(
        arch=arch,
        algo=algo,
        batch_size=bs,
        d=20,
        n=100,
        width=32,
        lr=_OPT_LR[optimizer],
        rho=0.1,
        wd=0.01,
        epochs=10,
        seed=3,
        log_every=10,
        test_samples=200,
        optimizer=optimizer,
    )
    cfg.update(extra)
    cfg["log_every"] = max(1, cfg["epochs"] if "phases" not in cfg else 5)
    _compare_engines(cfg)
