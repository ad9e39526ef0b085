# SPDX-License-Identifier: Apache-2.0
"""Batch step ``Explain``: the explanation is ``FundusIntegratedGradients.explain`` with the
audit's settings, and ``maps`` its channel sum."""
from __future__ import annotations

import pytest
import torch

from medig.attr import FundusIntegratedGradients
from medig.attr.completeness import PROBABILITY_ATOL
from medig.attr.outputs import explained_output
from medig.audit.steps.explain import Explain
from medig.audit.steps.predict import Predict
from medig.audit.steps.preprocess import Preprocess
from tests.audit.steps.kit import make_batch, make_context, settings
from tests.audit.tiny_models import make_tiny


def _explained(tmp_path, **changes):
    ctx = make_context(tmp_path / "out", settings(**changes))
    batch = make_batch(ctx, tmp_path / "in", n=3, seed=8)
    for step in (Preprocess(ctx), Predict(ctx), Explain(ctx)):
        step(batch)
    return ctx, batch


@pytest.mark.parametrize("changes", [
    {},
    {"baselines": ("black", "blur"), "output": "logit", "completeness_tol": 0.05},
    {"method": "gausslegendre", "max_steps": 32, "completeness_atol": 0.01},
])
def test_attributions_are_those_of_fundus_integrated_gradients(tmp_path, changes) -> None:
    ctx, batch = _explained(tmp_path, **changes)
    s = ctx.settings
    # the same explainer built independently, on a fresh copy of the model
    ig = FundusIntegratedGradients(explained_output(make_tiny(), s.output),
                                   baselines=list(s.baselines))
    expected = ig.explain(batch.images, target=batch.target, completeness_tol=s.completeness_tol,
                          max_steps=s.max_steps, method=s.method,
                          completeness_atol=ctx.plan.completeness_atol)
    got = batch.explanation
    assert torch.allclose(got.attributions, expected.attributions, rtol=1e-5, atol=1e-7)
    for name in ("score", "baseline_score", "delta"):
        assert torch.allclose(getattr(got, name), getattr(expected, name), atol=1e-6), name
    assert torch.equal(got.n_steps, expected.n_steps) and torch.equal(got.target, batch.target)
    assert got.baselines == list(s.baselines) and got.method == s.method
    assert got.completeness_atol == ctx.plan.completeness_atol


def test_default_probability_tolerance_is_the_plans(tmp_path) -> None:
    _, batch = _explained(tmp_path)
    assert batch.explanation.completeness_atol == PROBABILITY_ATOL


def test_maps_are_the_channel_sums_and_keep_completeness(tmp_path) -> None:
    _, batch = _explained(tmp_path, output="logit", baselines=("black",))
    expl = batch.explanation
    assert batch.maps.shape == (3, 1, *batch.images.shape[-2:])
    assert torch.allclose(batch.maps, expl.attributions.sum(dim=1, keepdim=True))
    assert not batch.maps.requires_grad
    # delta = sum of attributions - (F(x) - F(x')), with F the logit of the explained class
    with torch.no_grad():
        logits = make_tiny()(batch.images)
        zero = make_tiny()(torch.zeros_like(batch.images))
    f_x = logits.gather(1, batch.target[:, None])[:, 0]
    f_0 = zero.gather(1, batch.target[:, None])[:, 0]
    assert torch.allclose(expl.score, f_x, atol=1e-5)
    assert torch.allclose(expl.baseline_score, f_0, atol=1e-5)
    assert torch.allclose(batch.maps.sum(dim=(1, 2, 3)) - (f_x - f_0), expl.delta, atol=1e-4)
