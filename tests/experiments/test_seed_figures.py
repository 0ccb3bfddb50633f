"""The seed paper's computational figures (Maier et al. 2019): every module at "tiny" through
the runner, the report over them, and the numbers each figure rests on checked independently."""

from __future__ import annotations

import json
import math

import pytest
import torch

from experiments import seed_activations, seed_backprop, seed_decision_tree, seed_xor
from experiments.__main__ import main

SEEDS = ("seed-xor", "seed-decision-tree", "seed-activations", "seed-backprop")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All four seed experiments at "tiny" through the command line, then the report."""
    root = tmp_path_factory.mktemp("runs")
    for name in SEEDS:
        assert main(["run", name, "--tiny", "--out", str(root)]) == 0, name
    assert main(["report", "--out", str(root)]) == 0
    return root


def _metrics(root, name):
    with open(root / name / "metrics.json") as f:
        return json.load(f)


@pytest.mark.parametrize("name", SEEDS)
def test_every_seed_figure_runs_writes_a_figure_and_its_claims_hold(runs, name):
    folder = runs / name
    with open(folder / "config.json") as f:
        cfg = json.load(f)
    assert cfg["status"] == "finished" and cfg["preset"] == "tiny"
    assert list(folder.glob("*.png")), "no figure written"
    claims = _metrics(runs, name)["claims"]
    assert claims and all(c["held"] for c in claims), claims
    html = (runs / "index.html").read_text()
    for png in folder.glob("*.png"):
        assert f"{name}/{png.name}" in html


# --------------------------------------------------------------------------- Fig. 2, XOR
def test_xor_single_neuron_fails_two_layers_succeed(runs):
    m = _metrics(runs, "seed-xor")
    for row in m["per_seed"]:
        assert row["single_neuron"]["train_accuracy"] < 1.0
        assert row["single_neuron"]["corner_accuracy"] <= 0.75
        assert row["two_layer"]["train_accuracy"] == 1.0


def test_no_linear_classifier_separates_the_xor_corners():
    # for any w, b: the sum of the logits on the class-1 corners equals the sum on the class-0
    # corners, so they cannot all have the right sign: at most 3 of 4 corners are right.
    gen = torch.Generator().manual_seed(0)
    x, y = seed_xor.CORNERS, seed_xor.CORNER_LABELS
    for _ in range(200):
        w, b = torch.randn(2, generator=gen), torch.randn((), generator=gen)
        logits = x @ w + b
        assert torch.isclose(logits[y == 1].sum(), logits[y == 0].sum(), atol=1e-5)
        assert float(((logits > 0).float() == y).float().mean()) <= 0.75


# --------------------------------------------------------------------------- Fig. 3, tree
def test_decision_tree_errors(runs):
    m = _metrics(runs, "seed-decision-tree")
    assert abs(m["one_layer"]["max_error"] - 0.7) < 0.05
    assert m["two_layer"]["max_error"] == 0.0
    assert len(m["one_layer"]["output_weights"]) == 6
    # the sweep: the one-layer error never drops to the level of a correct classification
    assert all(s["one_layer_max_error"] >= 0.5 - 1e-9 for s in m["sweep"])
    assert all(s["two_layer_max_error"] == 0.0 for s in m["sweep"])


def test_two_layer_mapping_equals_the_tree_on_random_points():
    gen = torch.Generator().manual_seed(1)
    for leaves in [(0, 1, 1, 0), (1, 1, 0, 1), (0, 0, 1, 1)]:
        cfg = seed_decision_tree.Config(root_threshold=0.37, left_threshold=0.61,
                                        right_threshold=0.23, leaves=leaves, sweep=())
        tree = seed_decision_tree.build_tree(cfg)
        pts = torch.rand(5000, 2, generator=gen, dtype=torch.float64)
        assert torch.equal(seed_decision_tree.two_layer_forward(tree, pts),
                           seed_decision_tree.evaluate_tree(tree, pts))
        assert seed_decision_tree.basis(tree, pts).shape == (5000, 6)


def test_one_layer_is_exact_for_an_additive_partition():
    # control: a partition that depends on x1 only (leaves equal per side) is a sum of steps,
    # so the least-squares one-layer fit is exact; the error of Fig. 3 comes from the AND.
    cfg = seed_decision_tree.Config(leaves=(0, 0, 1, 1), grid=60, sweep=())
    res = seed_decision_tree.analyse(cfg)
    assert res["one_layer_max_error"] < 1e-10
    xor = seed_decision_tree.analyse(seed_decision_tree.Config(grid=60, sweep=()))
    assert xor["one_layer_max_error"] > 0.5


# --------------------------------------------------------------------------- Fig. 5
def test_activation_gradients_match_closed_forms():
    x = torch.cat([torch.linspace(-8, 8, 1601, dtype=torch.float64),
                   torch.tensor([-1e-9, 1e-9, 30.0, -30.0], dtype=torch.float64)])
    x = x[x != 0]
    auto = seed_activations.autograd_derivatives(x, 0.05)
    expected = {
        "sign": torch.zeros_like(x),
        "sigmoid": 1 / (1 + torch.exp(-x)) / (1 + torch.exp(x)),  # s(x) (1 - s(x))
        "tanh": 4 / (torch.exp(x) + torch.exp(-x)) ** 2,
        "relu": (x > 0).double(),
        "leaky_relu": torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 0.05)),
    }
    for name, value in expected.items():
        torch.testing.assert_close(auto[name], value, rtol=1e-12, atol=1e-15, msg=name)
        torch.testing.assert_close(
            seed_activations.closed_form_derivatives(x, 0.05)[name], value,
            rtol=1e-12, atol=1e-15, msg=name)


def test_activation_subgradients_at_zero(runs):
    per = _metrics(runs, "seed-activations")["activations"]
    assert 0.0 <= per["relu"]["autograd_at_zero"] <= 1.0
    assert per["leaky_relu"]["subdifferential_at_zero"] == [0.1, 1.0]
    assert all(p["at_zero_in_subdifferential"] for p in per.values())
    assert per["sigmoid"]["max_derivative"] == pytest.approx(0.25, abs=1e-15)
    assert per["sigmoid"]["gradient_factor_depth"] == pytest.approx(0.25 ** 10)


# --------------------------------------------------------------------------- Eqs. 4-10
@pytest.mark.parametrize("sizes,batch", [((3, 5, 4, 2), 1), ((8, 16, 16, 4), 7)])
def test_backprop_closed_form_equals_autograd(sizes, batch):
    gen = torch.Generator().manual_seed(3)
    ws = seed_backprop.init_weights(sizes, gen)
    x = torch.randn(sizes[0], batch, generator=gen, dtype=torch.float64)
    y = torch.randn(sizes[3], batch, generator=gen, dtype=torch.float64)
    closed = seed_backprop.closed_form_gradients(ws, x, y)
    auto = seed_backprop.autograd_gradients(ws, x, y)
    for c, a, w in zip(closed, auto, ws):
        assert c.shape == w.shape
        torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-14)
    # the paper's per-sample formulas for one sample: dL/dW3 = e (W2 W1 x)^T, ...
    w1, w2, w3 = ws
    xs, ys = x[:, :1], y[:, :1]
    e = w3 @ w2 @ w1 @ xs - ys
    paper = [w2.T @ w3.T @ e @ xs.T, w3.T @ e @ (w1 @ xs).T, e @ (w2 @ w1 @ xs).T]
    for c, p in zip(seed_backprop.closed_form_gradients(ws, xs, ys), paper):
        torch.testing.assert_close(c, p, rtol=1e-12, atol=1e-14)


def test_backprop_gradient_against_finite_differences():
    gen = torch.Generator().manual_seed(4)
    sizes = (3, 4, 4, 2)
    ws = seed_backprop.init_weights(sizes, gen)
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    grads = seed_backprop.closed_form_gradients(ws, x, y)
    h = 1e-6
    for layer in range(3):
        for idx in [(0, 0), (1, 2)]:
            plus = [w.clone() for w in ws]
            minus = [w.clone() for w in ws]
            plus[layer][idx] += h
            minus[layer][idx] -= h
            fd = (seed_backprop.loss(plus, x, y) - seed_backprop.loss(minus, x, y)) / (2 * h)
            assert float(fd) == pytest.approx(float(grads[layer][idx]), rel=1e-6, abs=1e-9)


def test_learning_rate_behaviour(runs):
    m = _metrics(runs, "seed-backprop")
    row = m["per_seed"][0]
    assert row["too_high"]["diverged"] or row["too_high"]["ratio"] > 1
    assert row["too_low"]["ratio"] > 0.5
    assert row["good"]["ratio"] < 1e-3
    assert math.isfinite(row["good"]["final_loss"])
    assert max(row["gradient_relative_error"].values()) < 1e-12
