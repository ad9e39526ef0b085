# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch

from medig.attr.class_group import ClassGroup
from medig.audit import AuditSettings
from medig.audit.errors import AuditUsageError
from medig.audit.model_setup import load_for_audit
from medig.audit.plan import resolve
from medig.audit.targets import checked_target, describe_target, resolve_target, target_spec

GRADES = ["none", "mild", "moderate", "severe", "proliferative"]


def test_resolve_target_forms():
    assert resolve_target("pred", GRADES) is None and resolve_target(None, GRADES) is None
    assert resolve_target("severe", GRADES) == 3 and resolve_target("1", GRADES) == 1
    group = resolve_target("referable DR=moderate,severe,4", GRADES)
    assert group == ClassGroup("referable DR", [2, 3, 4])
    assert target_spec(group, GRADES) == "referable DR=2,3,4"
    assert target_spec(3, GRADES) == "severe" and target_spec(None, GRADES) == "pred"


@pytest.mark.parametrize("target, output, match", [
    ("referable DR=2,3,sever", "probability", "--target: class group 'referable DR': 'sever' is "
                                              "not a class of the model"),
    ("9", "probability", "--target: target 9 is out of range for 5 classes"),
    ("referable DR=2,3,4", "logit", "--output logit has no group equivalent"),
])
def test_bad_targets_are_usage_errors(target, output, match):
    with pytest.raises(AuditUsageError, match=match):
        resolve_target(target, GRADES, output)


def test_describe_target_for_the_manifest():
    group = resolve_target("referable DR=2,3,4", GRADES)
    assert describe_target(group, "referable DR=2,3,4", GRADES, "probability", "argument") == {
        "spec": "referable DR=2,3,4", "source": "argument", "kind": "group",
        "name": "referable DR", "members": ["moderate", "severe", "proliferative"],
        "indices": [2, 3, 4],
        "formula": "P(referable DR) = P(moderate) + P(severe) + P(proliferative)",
        "output": "probability"}
    assert describe_target(None, "pred", GRADES, "probability", None)["kind"] == "predicted"
    assert describe_target(3, "severe", GRADES, "logit", None)["members"] == ["severe"]


def test_demo_model_declares_referable_dr():
    settings = AuditSettings()
    assert settings.target is None
    plan = resolve(settings, load_for_audit(settings))
    assert plan.target_spec == "referable DR" and plan.target == 1  # a class of the demo
    assert plan.model_metadata["target_source"] == \
        "declared by the model (JSON demo.json positive_class)"
    assert plan.describe_target()["name"] == "referable DR"
    assert settings.target is None  # the declaration is the plan's, never written back
    given = AuditSettings(target="pred")
    plan = resolve(given, load_for_audit(given))
    assert plan.target is None and plan.target_spec == "pred"
    assert plan.model_metadata["target_source"] == "argument"


def test_declared_group_with_logit_output_says_where_it_came_from(tmp_path):
    from tests.audit.tiny_models import make_tiny

    weights = tmp_path / "tiny.pt"
    torch.save({"model": make_tiny().state_dict(), "classes": ["healthy", "referable"],
                "positive_class": {"name": "any", "classes": [0, 1]}}, weights)
    settings = AuditSettings(model="tests.audit.tiny_models:make_tiny", weights=str(weights),
                             output="logit")
    loaded = load_for_audit(settings)
    with pytest.raises(AuditUsageError, match=r"the model declares the target 'any=0,1' "
                                              r"\(checkpoint tiny.pt positive_class\), which "
                                              r"does not work here .*pass --target pred"):
        resolve(settings, loaded)
    # Not declared (the default "pred"), the same output is fine; a given group is an error
    # about --target itself.
    assert checked_target("pred", ["healthy", "referable"], "logit", "default") is None
    with pytest.raises(AuditUsageError, match="^--target 'any=0,1' is a group"):
        checked_target("any=0,1", ["healthy", "referable"], "logit", "argument")
