# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
from torch import nn

from medig import FundusIntegratedGradients
from medig.baselines import blur
from tests.conftest import small_cnn


def independent_relative_error(model, x, baseline, target, attributions):
    with torch.no_grad():
        fx = model(x).gather(1, target.view(-1, 1))[:, 0].double()
        fb = model(baseline).gather(1, target.view(-1, 1))[:, 0].double()
    total = attributions.double().flatten(1).sum(1)
    return (total - (fx - fb)).abs() / (fx - fb).abs()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["adaptive", "gausslegendre"])
def test_explain_meets_tolerance_on_every_image(seed, method):
    net = small_cnn(seed)
    torch.manual_seed(100 + seed)
    x = torch.rand(6, 3, 24, 24)
    expl = FundusIntegratedGradients(net).explain(x, completeness_tol=0.01, method=method)
    assert expl.converged.all()
    err = independent_relative_error(net, x, torch.zeros_like(x), expl.target, expl.attributions)
    assert (err <= 0.0101).all(), err
    assert torch.allclose(err, expl.relative_error.double(), rtol=1e-3, atol=1e-6)


def test_steps_are_chosen_per_image():
    net = small_cnn(3)
    torch.manual_seed(7)
    x = torch.rand(8, 3, 24, 24)
    tight = FundusIntegratedGradients(net).explain(x, completeness_tol=1e-3)
    loose = FundusIntegratedGradients(net).explain(x, completeness_tol=5e-2)
    assert tight.n_steps.unique().numel() > 1  # not one count for the whole batch
    assert (tight.n_steps >= loose.n_steps).all() and tight.n_steps.sum() > loose.n_steps.sum()
    assert (tight.relative_error <= 1e-3).all()


def test_cubic_model_converges_to_analytic_attribution():
    # F(x) = sum(x^3): IG with the black baseline is x^3 exactly; the path derivative is
    # quadratic, so the trapezoid rule needs refinement to reach the tolerance.
    class Cubic(nn.Module):
        def forward(self, x):
            return (x ** 3).flatten(1).sum(1, keepdim=True)

    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    expl = FundusIntegratedGradients(Cubic()).explain(x, target=0, completeness_tol=1e-4)
    assert torch.allclose(expl.attributions, x ** 3, rtol=2e-4, atol=1e-8)
    assert (expl.n_steps > 9).all()


def test_max_steps_hit_flags_the_image():
    net = small_cnn(4)
    x = torch.rand(2, 3, 24, 24)
    expl = FundusIntegratedGradients(net).explain(x, completeness_tol=1e-7, max_steps=12)
    assert (expl.n_steps <= 12).all()
    assert expl.flagged.any()
    assert torch.equal(expl.flagged, expl.relative_error > 1e-7)


def test_blur_baseline_completeness():
    net = small_cnn(5)
    x = torch.rand(4, 3, 32, 32)
    expl = FundusIntegratedGradients(net, baselines="blur").explain(x, completeness_tol=0.01)
    err = independent_relative_error(net, x, blur(x), expl.target, expl.attributions)
    assert ((err <= 0.0101) | (expl.delta.abs() <= 1e-6)).all()


# ---------------------------------------------------------------- the absolute tolerance
def test_rule_is_the_larger_of_absolute_and_relative_tolerance():
    from medig.attr.completeness import absolute_tolerance, is_complete

    score = torch.tensor([1.0, 0.50, 0.50, 0.30, 0.30])
    base = torch.tensor([0.0, 0.49, 0.49, 0.30, 0.30])
    delta = torch.tensor([0.009, 0.0009, 0.0011, 0.0, 2e-6])
    # gaps 1, 0.01, 0.01, 0, 0 -> allowed max(1e-3, 1% of gap) = 0.01, 1e-3, 1e-3, 1e-3, 1e-3
    allowed = absolute_tolerance(score, base, 0.01, 1e-3)
    assert torch.allclose(allowed, torch.tensor([0.01, 1e-3, 1e-3, 1e-3, 1e-3]))
    assert is_complete(delta, score, base, 0.01, 1e-3).tolist() == [True, True, False, True, True]
    # relative only (the float noise floor): the small gaps now ask for far more precision
    assert is_complete(delta, score, base, 0.01).tolist() == [True, False, False, True, False]


def _tiny_gap_model():
    # Two nearly tied classes: F(x) - F(0) is a few thousandths, like a healthy fundus whose
    # probability barely moves from the black baseline's.
    net = small_cnn(6)
    with torch.no_grad():
        net[-1].weight.mul_(0.02)
    return nn.Sequential(net, nn.Softmax(dim=1)).eval()


def test_absolute_tolerance_saves_evaluations_where_the_gap_is_tiny_and_holds():
    model = _tiny_gap_model()
    torch.manual_seed(8)
    x = torch.rand(6, 3, 24, 24)
    ig = FundusIntegratedGradients(model)
    rel_only = ig.explain(x, completeness_tol=0.01)
    atol = 1e-3
    both = ig.explain(x, completeness_tol=0.01, completeness_atol=atol)
    with torch.no_grad():
        fx = model(x).gather(1, both.target.view(-1, 1))[:, 0].double()
        fb = model(torch.zeros_like(x)).gather(1, both.target.view(-1, 1))[:, 0].double()
    gap = (fx - fb).abs()
    assert (0.01 * gap < atol).all()  # the absolute part of the rule decides here
    # the rule, recomputed independently from the attributions and the model's outputs
    allowed = torch.clamp(0.01 * gap, min=atol)
    delta = both.attributions.double().flatten(1).sum(1) - (fx - fb)
    assert (delta.abs() <= allowed * 1.001).all() and both.converged.all()
    assert torch.allclose(both.abs_tol.double(), allowed, rtol=1e-5)
    assert both.completeness_atol == atol
    assert both.n_steps.sum() < rel_only.n_steps.sum()
    # relative_error is reported as before: |delta| / |gap|, which may now exceed 1%
    assert torch.allclose(both.relative_error.double(), delta.abs() / gap, rtol=1e-3, atol=1e-7)


def test_flagged_means_the_rule_was_not_met():
    model = _tiny_gap_model()
    torch.manual_seed(9)
    x = torch.rand(6, 3, 24, 24)
    expl = FundusIntegratedGradients(model).explain(x, completeness_tol=1e-6,
                                                    completeness_atol=1e-7, max_steps=3)
    assert expl.flagged.any()
    assert torch.equal(expl.flagged, expl.delta.abs() > expl.abs_tol)
    assert torch.equal(expl.flagged, ~expl.converged)


def test_bad_absolute_tolerance_is_refused():
    x = torch.rand(1, 3, 8, 8)
    ig = FundusIntegratedGradients(small_cnn(0))
    for bad in (-1e-3, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="completeness_atol"):
            ig.explain(x, completeness_atol=bad)


def test_default_absolute_tolerance_depends_on_the_output():
    from medig.attr.completeness import ABSOLUTE_FLOOR, PROBABILITY_ATOL, default_atol

    assert default_atol("probability") == PROBABILITY_ATOL > ABSOLUTE_FLOOR
    assert default_atol("logit") == ABSOLUTE_FLOOR
