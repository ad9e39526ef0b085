# SPDX-License-Identifier: Apache-2.0
"""The map's own error estimate: an image is done when completeness holds and the estimated
relative L2 error of its whole map is within ``map_tol``."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medig import FundusIntegratedGradients


def _rel_l2(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (a - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)


class CancellingCubes(nn.Module):
    """F(x) = sum(x^3 on the left half) - sum(x^3 on the right half).

    With x = 1 on both halves and the black baseline, F is zero along the whole path: the
    completeness gap of any quadrature is exactly zero, yet the midpoint rule gives each pixel
    3/4 instead of its exact +-1 (the errors of the two halves cancel in the sum).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        cubes = (left ** 3).flatten(1).sum(1) - (right ** 3).flatten(1).sum(1)
        return cubes.unsqueeze(1)


def test_exact_completeness_with_a_wrong_map_is_not_accepted():
    x = torch.ones(2, 3, 4, 4, dtype=torch.float64)
    exact = torch.cat([torch.ones(2, 3, 4, 2), -torch.ones(2, 3, 4, 2)], dim=-1).double()
    model = CancellingCubes()
    # completeness alone is satisfied by the cheapest rule: its map is wrong
    alone = FundusIntegratedGradients(model).explain(x, target=0, completeness_tol=1e-3,
                                                     map_tol=None)
    assert alone.delta.abs().max() < 1e-12 and not alone.flagged.any()
    assert (_rel_l2(alone.attributions, exact) > 0.05).all()
    # with the map rule, the same path is refined until the map itself is accurate
    expl = FundusIntegratedGradients(model).explain(x, target=0, completeness_tol=1e-3,
                                                    map_tol=0.01)
    assert (expl.n_steps > alone.n_steps).all()
    truth = _rel_l2(expl.attributions, exact)
    assert (truth <= 0.01).all(), truth
    assert (expl.map_error <= 0.01).all() and not expl.flagged.any()
    assert (truth <= 1.5 * expl.map_error).all(), (truth, expl.map_error)


def test_the_estimate_of_the_straight_path_round_sees_the_cancelling_errors():
    # the one-evaluation midpoint would accept this path (its sum is exact); the first round's
    # estimate (two-point minus one-point midpoint rule) must not call the map settled
    x = torch.ones(1, 3, 4, 4, dtype=torch.float64)
    expl = FundusIntegratedGradients(CancellingCubes()).explain(x, target=0,
                                                                completeness_tol=1e-3,
                                                                map_tol=0.05)
    assert int(expl.n_steps[0]) > 3


class SoftplusPair(nn.Module):
    """F(x) = softplus(u . x + b1) - softplus(v . x + b2): IG has a closed form.

    Along x' + a (x - x') each unit's pre-activation is linear in a, s(a) = s0 + a ds, so
    IG_i = d_i [u_i (sp(s1(1)) - sp(s1(0))) / ds1 - v_i (sp(s2(1)) - sp(s2(0))) / ds2].
    """

    def __init__(self, numel: int, sharpness: float = 12.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.u = torch.randn(numel, generator=g, dtype=torch.float64) * sharpness / numel ** 0.5
        self.v = torch.randn(numel, generator=g, dtype=torch.float64) * sharpness / numel ** 0.5
        self.b1, self.b2 = -0.4 * sharpness, 0.3 * sharpness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(1)
        sp = nn.functional.softplus
        return (sp(f @ self.u + self.b1) - sp(f @ self.v + self.b2)).unsqueeze(1)

    def exact_ig(self, x: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        d = (x - base).flatten(1)
        sp = nn.functional.softplus
        out = torch.zeros_like(d)
        for w, b, sign in ((self.u, self.b1, 1.0), (self.v, self.b2, -1.0)):
            s0, ds = base.flatten(1) @ w + b, d @ w
            mean_sigmoid = (sp(s0 + ds) - sp(s0)) / ds
            out += sign * d * w * mean_sigmoid.unsqueeze(1)
        return out.view_as(x)


@pytest.mark.parametrize("map_tol", [0.1, 0.03, 0.01])
def test_estimate_bounds_the_true_error_on_an_analytic_model(map_tol):
    torch.manual_seed(1)
    x = torch.rand(6, 3, 6, 6, dtype=torch.float64)
    model = SoftplusPair(x[0].numel())
    exact = model.exact_ig(x, torch.zeros_like(x))
    expl = FundusIntegratedGradients(model).explain(x, target=0, completeness_tol=1e-2,
                                                    completeness_atol=1e-9, map_tol=map_tol)
    truth = _rel_l2(expl.attributions, exact)
    assert not expl.flagged.any()
    assert (expl.map_error <= map_tol).all()
    assert (truth <= map_tol).all(), (truth, expl.map_error)  # the accepted map meets map_tol
    assert (truth <= 1.5 * expl.map_error).all(), (truth, expl.map_error)


def test_tighter_map_tol_costs_more_and_gives_more_accurate_maps():
    torch.manual_seed(1)
    x = torch.rand(6, 3, 6, 6, dtype=torch.float64)
    model = SoftplusPair(x[0].numel())
    exact = model.exact_ig(x, torch.zeros_like(x))
    ig = FundusIntegratedGradients(model)
    loose = ig.explain(x, target=0, completeness_tol=1e-2, completeness_atol=1e-9, map_tol=0.1)
    tight = ig.explain(x, target=0, completeness_tol=1e-2, completeness_atol=1e-9, map_tol=0.005)
    assert tight.n_steps.sum() > loose.n_steps.sum()
    assert _rel_l2(tight.attributions, exact).max() < _rel_l2(loose.attributions, exact).max()


def test_averaged_baselines_are_held_to_the_rule_together():
    # the rule is on the saved map, the average of the baselines' maps
    torch.manual_seed(3)
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    model = SoftplusPair(x[0].numel())
    ig = FundusIntegratedGradients(model)
    expl = ig.explain(x, target=0, baselines=["black", "uniform"], completeness_tol=1e-2,
                      completeness_atol=1e-9, map_tol=0.02)
    exact = torch.stack([model.exact_ig(x, b.double()) for b in expl.baseline_inputs]).mean(0)
    truth = _rel_l2(expl.attributions, exact)
    assert (truth <= 0.02).all() and (expl.map_error <= 0.02).all(), (truth, expl.map_error)


def test_an_image_that_runs_out_of_steps_is_flagged_for_map_accuracy():
    x = torch.ones(1, 3, 4, 4, dtype=torch.float64)
    expl = FundusIntegratedGradients(CancellingCubes()).explain(
        x, target=0, completeness_tol=1e-3, map_tol=1e-6, max_steps=9)
    assert bool(expl.converged.all())  # complete: the sum is exact
    assert expl.flagged.tolist() == [True]
    assert expl.flag_reasons == ["map accuracy"]
    assert int(expl.n_steps[0]) <= 9


def test_map_tol_must_be_positive():
    with pytest.raises(ValueError, match="map_tol"):
        FundusIntegratedGradients(CancellingCubes()).explain(torch.ones(1, 3, 4, 4), target=0,
                                                             map_tol=0.0)


def test_a_tight_map_tol_converges_to_the_exact_map():
    torch.manual_seed(4)
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    model = SoftplusPair(x[0].numel())
    expl = FundusIntegratedGradients(model).explain(x, target=0, completeness_tol=1e-4,
                                                    completeness_atol=1e-12, map_tol=1e-4)
    assert int(expl.n_steps.max()) > 20
    assert (_rel_l2(expl.attributions, model.exact_ig(x, torch.zeros_like(x))) <= 1e-4).all()


def test_audit_defaults_give_accurate_maps_on_fresh_synthetic_images():
    """The acceptance in small: the demo model, the audit's defaults (black + blur averaged,
    P(predicted class), completeness 1% with a 0.001 floor, map_tol 0.05), fresh synthetic images
    at 64 px: every map within 5% relative L2 of converged IG (Gauss-Legendre, 512 steps per
    baseline) and its strongest 5% pixels overlapping the reference's by >= 0.95. The full
    measurement (four models, 96 px) is bench/map_error.py."""
    from captum.attr import IntegratedGradients

    import medig
    from medig.synthetic import generate

    model = medig.explained_output(medig.load_model("demo").model.eval())
    for p in model.parameters():
        p.requires_grad_(False)
    x = generate(2, 64, seed=9090)[0].float() / 255.0
    with torch.no_grad():
        target = model(x).argmax(1)
    expl = FundusIntegratedGradients(model).explain(
        x, target=target, baselines=["black", "blur"], completeness_tol=0.01,
        completeness_atol=1e-3, max_steps=256)
    ref = torch.stack([IntegratedGradients(model).attribute(
        x, baselines=b, target=target, n_steps=512, internal_batch_size=128)
        for b in expl.baseline_inputs]).mean(0)
    truth = _rel_l2(expl.attributions, ref)
    assert not expl.flagged.any()
    assert (truth <= 0.05).all(), truth
    k = int(0.05 * x[0, 0].numel())
    for mine, theirs in zip(expl.attributions.sum(1).abs().flatten(1),
                            ref.sum(1).abs().flatten(1)):
        shared = set(mine.topk(k).indices.tolist()) & set(theirs.topk(k).indices.tolist())
        assert len(shared) / k >= 0.95
