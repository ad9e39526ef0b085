# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients

import medig
from medig.attr.class_group import ClassGroup, GroupExplanation
from medig.attr.outputs import GroupProbability, SoftmaxOutput, explained_output
from tests.conftest import small_cnn

GRADES = ["none", "mild", "moderate", "severe", "proliferative"]
REFERABLE = ClassGroup("referable DR", [2, 3, 4])


@pytest.fixture(scope="module")
def five() -> torch.nn.Module:
    return small_cnn(seed=3, classes=5)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(7))


def test_group_by_index_or_name():
    assert medig.ClassGroup is ClassGroup
    group = ClassGroup("referable DR", ["moderate", "severe", 4])
    assert group.resolve(GRADES) == REFERABLE and REFERABLE.indices == (2, 3, 4)
    assert REFERABLE.formula(GRADES) == ("P(referable DR) = P(moderate) + P(severe) + "
                                         "P(proliferative)")
    assert REFERABLE.spec() == "referable DR=2,3,4"
    with pytest.raises(ValueError, match="resolve it with group.resolve"):
        group.indices  # noqa: B018


@pytest.mark.parametrize("members, match", [
    ([2, "sever"], r"'sever' is not a class of the model; classes: none, mild, moderate"),
    ([2, 5], r"class 5 is out of range for 5 classes \(0 to 4\)"),
    ([2, "moderate"], "lists a class twice"),
])
def test_bad_members_name_the_problem(members, match):
    with pytest.raises(ValueError, match=match):
        ClassGroup("referable DR", members).resolve(GRADES)
    with pytest.raises(ValueError, match="non-empty list"):
        ClassGroup("g", [])


def test_group_probability_is_the_sum_of_the_class_probabilities(five, x):
    forward = explained_output(five, target=REFERABLE)
    assert isinstance(forward, GroupProbability) and not forward.training
    with torch.no_grad():
        probs = torch.softmax(five(x).double(), dim=1)
        torch.testing.assert_close(forward(x)[:, 0].double(), probs[:, 2:].sum(dim=1),
                                   atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="output='logit' has no group equivalent"):
        explained_output(five, "logit", target=REFERABLE)


def test_explain_with_a_group_target_is_the_sum_of_the_class_attributions(five, x):
    # IG is linear in the explained output: with the same quadrature nodes (a fixed Captum rule),
    # the group's attributions are the sum of its classes' attributions, exactly.
    ig = medig.FundusIntegratedGradients(explained_output(five), baselines="black")
    options = {"method": "riemann_trapezoid", "n_steps": 16, "completeness_tol": None}
    grouped = ig.explain(x, target=REFERABLE, **options)
    assert isinstance(grouped, GroupExplanation) and grouped.group == REFERABLE
    assert grouped.target is None
    per_class = [ig.explain(x, target=c, **options) for c in (2, 3, 4)]
    torch.testing.assert_close(grouped.attributions,
                               sum(e.attributions for e in per_class), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(grouped.score, sum(e.score for e in per_class), atol=1e-6, rtol=0)
    # The default adaptive schedule: completeness of P(group) holds on every unflagged image.
    adaptive = ig.explain(x, target=REFERABLE, completeness_tol=0.01, max_steps=64)
    gap = (adaptive.attributions.flatten(1).sum(dim=1).double()
           - (adaptive.score - adaptive.baseline_score).double()).abs()
    change = (adaptive.score - adaptive.baseline_score).double().abs()
    ok = adaptive.converged
    assert bool(ok.any())
    assert bool((gap[ok] <= 0.01 * change[ok] + 1e-6).all())


def test_wrapped_forward_and_explain_target_agree(five, x):
    via_target = medig.FundusIntegratedGradients(explained_output(five)).explain(
        x, target=REFERABLE, max_steps=64)
    via_forward = medig.FundusIntegratedGradients(explained_output(five, target=REFERABLE))\
        .explain(x, max_steps=64)
    torch.testing.assert_close(via_target.attributions, via_forward.attributions)
    torch.testing.assert_close(via_target.score, via_forward.score)


def test_group_target_on_logits_is_refused(five, x):
    ig = medig.FundusIntegratedGradients(five)
    with pytest.raises(ValueError, match="does not return probabilities"):
        ig.explain(x, target=REFERABLE)
    with pytest.raises(ValueError, match="does not index the model's outputs"):
        medig.FundusIntegratedGradients(SoftmaxOutput(five)).explain(
            x, target=ClassGroup("g", [4, 5]))


def test_two_classes_explain_the_same_evidence_up_to_sign(x):
    # P(0) = 1 - P(1): the adaptive schedule sees mirrored paths and picks the same nodes.
    net = small_cnn(seed=4, classes=2)
    ig = medig.FundusIntegratedGradients(explained_output(net), baselines="black")
    one, zero = ig.explain(x, target=1), ig.explain(x, target=0)
    torch.testing.assert_close(one.attributions, -zero.attributions, atol=1e-6, rtol=1e-4)
    assert torch.equal(one.n_steps, zero.n_steps)


def _summed_probability(model: torch.nn.Module, members: list[int]):
    """P(group) written out here, independently of medig's GroupProbability."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x), dim=1)[:, members].sum(dim=1, keepdim=True)
    return forward


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_attribute_with_a_group_target_is_captums_ig_of_the_summed_probability(five, x, method):
    ig = medig.FundusIntegratedGradients(explained_output(five), baselines="black")
    attr, delta = ig.attribute(x, target=REFERABLE, n_steps=12, method=method,
                               return_convergence_delta=True)
    ref, ref_delta = IntegratedGradients(_summed_probability(five, [2, 3, 4])).attribute(
        x, baselines=torch.zeros_like(x), n_steps=12, method=method,
        return_convergence_delta=True)
    torch.testing.assert_close(attr, ref, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(delta, ref_delta, atol=1e-6, rtol=1e-4)
    # Not the attribution of one member class: the group's output is what is explained.
    one = ig.attribute(x, target=2, n_steps=12, method=method)
    assert not torch.allclose(attr, one, atol=1e-4)


def test_attribute_and_explain_share_the_group_path(five, x):
    # Named and averaged baselines, names of classes resolved first: the same group evidence
    # through attribute() (Captum's contract) and explain() (medig's) on a fixed rule.
    ig = medig.FundusIntegratedGradients(explained_output(five), baselines=["black", "blur"])
    group = ClassGroup("referable DR", ["moderate", "severe", "proliferative"]).resolve(GRADES)
    attr = ig.attribute(x, target=group, n_steps=8, method="riemann_trapezoid")
    expl = ig.explain(x, target=group, n_steps=8, method="riemann_trapezoid",
                      completeness_tol=None)
    torch.testing.assert_close(attr, expl.attributions, atol=1e-7, rtol=1e-5)
    with pytest.raises(ValueError, match="resolve it with group.resolve"):
        ig.attribute(x, target=ClassGroup("g", ["severe"]))
    with pytest.raises(ValueError, match="does not return probabilities"):
        medig.FundusIntegratedGradients(five).attribute(x, target=REFERABLE)
