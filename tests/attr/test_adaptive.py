# SPDX-License-Identifier: Apache-2.0
"""The adaptive schedule: a first round that fits the path, reuse of the input's gradient, and the
reduced-precision path passes with their float32 check."""
from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from medig import FundusIntegratedGradients
from medig.attr.adaptive import adaptive_path_integral
from tests.conftest import small_cnn


class Affine(nn.Module):
    """F(x) = w . x + b: IG is exact with any quadrature that integrates constants."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(2, 3 * 8 * 8))
        self.b = nn.Parameter(torch.randn(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.T + self.b


def test_linear_path_costs_three_evaluations():
    model = Affine()
    x = torch.rand(4, 3, 8, 8)
    expl = FundusIntegratedGradients(model).explain(x, target=1, completeness_tol=1e-4,
                                                    baselines=["black", "uniform"])
    # the midpoint, checked against F(x) - F(x'), then the quarter points, whose two-point rule
    # shows that the map (not only its sum) is settled: a fixed grid pays its whole count
    assert (expl.n_steps == 6).all()  # three per baseline
    assert (expl.map_error <= 1e-6).all()
    assert torch.allclose(expl.attributions, model.w[1].view(1, 3, 8, 8) * (x - 0.5 * (
        __import__("medig").baselines.uniform(x))), atol=1e-5)
    assert expl.converged.all()


def test_midpoint_is_not_enough_where_the_path_leaves_and_comes_back():
    # F(alpha x) = 4 alpha (1 - alpha) s: F(x) = F(0) = 0, the path rises and falls. The midpoint's
    # derivative is 0 = F(x) - F(x'), so the midpoint rule alone would accept a zero attribution
    # for pixels that clearly matter; the check must also see F(1/2) - F(0) on the first half.
    class Arc(nn.Module):
        def forward(self, x):
            s = x.flatten(1).mean(1, keepdim=True)
            return 4 * s * (1 - s) + 0 * x.flatten(1)[:, :1]

    x = torch.ones(2, 3, 4, 4, dtype=torch.float64)
    expl = FundusIntegratedGradients(Arc()).explain(x, target=0, completeness_tol=1e-3)
    assert (expl.n_steps > 1).all()
    # IG of 4 s (1 - s) from 0 to s = 1: d/dx_i integrates to zero for every pixel (F(x) = F(0))
    assert torch.allclose(expl.attributions, torch.zeros_like(x), atol=1e-9)


def test_second_baseline_reuses_the_gradient_at_the_input():
    class Cubic(nn.Module):
        def forward(self, x):
            return (x ** 3).flatten(1).sum(1, keepdim=True)

    model = Cubic()
    x = torch.rand(3, 3, 8, 8) * 0.5 + 0.5
    rows_at_input = torch.zeros(3, dtype=torch.long)
    grad_rows = []

    def forward(points):
        if points.requires_grad:
            grad_rows.append(points.shape[0])
            close = (points.detach()[:, None] - x[None]).flatten(2).abs().amax(2) < 1e-6
            rows_at_input.add_(close.sum(0))
        return model(points)

    expl = FundusIntegratedGradients(forward).explain(
        x, target=0, baselines=["black", "uniform"], completeness_tol=1e-3)
    assert sum(grad_rows) == int(expl.n_steps.sum())  # n_steps counts every evaluated point
    assert rows_at_input.tolist() == [1, 1, 1]  # the input's gradient: once, for both baselines
    assert expl.converged.all()


def test_near_linear_path_costs_no_more_than_the_cheapest_fixed_grid():
    # A small ReLU CNN at its default initialisation: an almost linear path with a few kinks, as
    # an untrained network's. Captum's Gauss-Legendre grid must be searched per model; medig
    # must not cost more evaluations than the smallest grid that reaches the tolerance.
    net = small_cnn(0)
    with torch.no_grad():
        for p in net.parameters():
            p.div_(3.0)  # back to the default init scale
    torch.manual_seed(3)
    x = torch.rand(8, 3, 24, 24)
    # equal completeness (map_tol=None, the rule both sides are held to here); at equal map
    # accuracy see tests/attr/test_map_accuracy.py and bench/map_error.py
    expl = FundusIntegratedGradients(net).explain(x, target=0, completeness_tol=0.01,
                                                  map_tol=None)
    assert expl.converged.all()
    with torch.no_grad():
        gap = (net(x)[:, 0] - net(torch.zeros_like(x))[:, 0]).abs()
    cheapest = None
    for n in range(2, 65):
        _, delta = IntegratedGradients(net).attribute(
            x, baselines=0, target=0, n_steps=n, return_convergence_delta=True)
        if bool((delta.abs() <= torch.clamp(0.01 * gap, min=1e-6)).all()):
            cheapest = n
            break
    assert cheapest is not None
    assert expl.n_steps.float().mean() <= cheapest, (expl.n_steps.tolist(), cheapest)


def test_segments_are_refined_where_the_path_bends():
    # F(x) = relu(mean(x) - c), a ReLU's kink: along alpha * x the path is flat, then bends at
    # alpha0 = c / mean(x) and is linear after. A uniform grid's error is ~ its spacing wherever the
    # kink falls; the schedule must bisect towards the kink and need far fewer evaluations.
    class Kink(nn.Module):
        def forward(self, x):
            return torch.relu(x.flatten(1).mean(1, keepdim=True) - 0.3)

    torch.manual_seed(0)
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64) * 0.5 + 0.25
    model = Kink()
    expl = FundusIntegratedGradients(model).explain(x, target=0, completeness_tol=1e-3)
    assert expl.converged.all()
    uniform = None
    for n in (8, 16, 32, 64, 128, 256, 512, 1024, 2048):
        fixed = FundusIntegratedGradients(model).explain(x, target=0, completeness_tol=None,
                                                         n_steps=n)
        if bool((fixed.relative_error <= 1e-3).all()):
            uniform = n + 1
            break
    assert uniform is None or expl.n_steps.max() * 10 <= uniform, (expl.n_steps.tolist(), uniform)
    assert expl.n_steps.max() <= 40
    # and the attribution is the analytic one: the gradient is 1 / n_pixels past the kink, 0 before
    alpha0 = 0.3 / x.flatten(1).mean(1).view(-1, 1, 1, 1)
    assert torch.allclose(expl.attributions, x * (1 - alpha0) / x[0].numel(), rtol=2e-3)


def _fp32_delta(net, x, base, target, integrated):
    with torch.no_grad():
        f1 = net(x).gather(1, target.view(-1, 1))[:, 0].double()
        f0 = net(base).gather(1, target.view(-1, 1))[:, 0].double()
    total = (integrated.double() * (x - base).double()).flatten(1).sum(1)
    return total - (f1 - f0), f0, f1


def test_reduced_precision_falls_back_to_float32_where_the_tolerance_is_missed():
    net = small_cnn(2)
    torch.manual_seed(5)
    x = torch.rand(6, 3, 24, 24)
    base = torch.zeros_like(x)
    target = torch.ones(6, dtype=torch.long)
    with torch.no_grad():
        f1 = net(x)[:, 1]
        f0 = net(base)[:, 1]
    tol = (1e-3 * (f1 - f0).abs()).double()
    with torch.enable_grad():
        low = adaptive_path_integral(net, x, base, target, tol, 256, 64,
                                     path_dtype=torch.bfloat16, endpoint_values=(f0, f1))
        full = adaptive_path_integral(net, x, base, target, tol, 256, 64)
    # bfloat16 keeps ~3 significant digits: a 0.1% tolerance is missed by some images ...
    assert low.fell_back is not None and bool(low.fell_back.any())
    # ... which were integrated again in float32: their result is the float32 result, and every
    # image meets the tolerance in float32, checked independently.
    fb = low.fell_back
    assert torch.allclose(low.integrated_grads[fb], full.integrated_grads[fb], rtol=1e-4, atol=1e-6)
    delta, _, _ = _fp32_delta(net, x, base, target, low.integrated_grads)
    assert (delta.abs() <= tol).all(), (delta, tol)
    # the cost of both passes is counted
    assert (low.n_evals[fb] > full.n_evals[fb]).all()


def test_reduced_precision_keeps_images_that_meet_the_tolerance():
    net = small_cnn(2)
    torch.manual_seed(6)
    x = torch.rand(4, 3, 24, 24)
    # completeness alone (map_tol=None): the float32 fallback is on completeness; bfloat16's
    # gradient noise would also move the map estimate, and with it the refinement
    expl = FundusIntegratedGradients(net).explain(x, target=1, completeness_tol=0.2,
                                                  path_dtype=torch.bfloat16, map_tol=None)
    ref = FundusIntegratedGradients(net).explain(x, target=1, completeness_tol=0.2, map_tol=None)
    assert expl.converged.all()
    # the loose tolerance holds in bfloat16: no image was redone, so the cost is that of one pass
    assert expl.n_steps.sum() <= ref.n_steps.sum() + 4
    assert not torch.equal(expl.attributions, ref.attributions)  # computed in bfloat16 indeed


def test_reduced_precision_needs_float32_endpoint_values():
    net = small_cnn(0)
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="endpoint_values"), torch.enable_grad():
        adaptive_path_integral(net, x, torch.zeros_like(x), torch.zeros(1, dtype=torch.long),
                               torch.ones(1), 16, 8, path_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="adaptive"):
        FundusIntegratedGradients(net).explain(x, method="gausslegendre",
                                               path_dtype=torch.bfloat16)


def test_the_gradient_at_the_input_is_passed_on_by_images_done_in_the_midpoint_round():
    """A third baseline reuses the gradient at alpha = 1 even when the second baseline's path
    was accepted after its midpoint alone (and so never evaluated alpha = 1 itself)."""
    from medig.attr.adaptive import adaptive_path_integral

    w = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def linear(x):  # a linear model: every path is straight, the midpoint round accepts it
        return (x * w).flatten(1).sum(1, keepdim=True)

    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    base = torch.zeros_like(x)
    ends = (linear(base)[:, 0].detach(), linear(x)[:, 0].detach())
    given = [(float(ends[1][i]), w[0].clone()) for i in range(2)]
    out = adaptive_path_integral(linear, x, base, None, torch.full((2,), 1e-6), 64, 8,
                                 endpoint_values=ends, end=given)
    assert out.n_evals.tolist() == [3, 3]  # the midpoint and the quarter points
    assert out.end is not None and all(e is g for e, g in zip(out.end, given))
