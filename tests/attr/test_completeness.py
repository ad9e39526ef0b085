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
