# SPDX-License-Identifier: Apache-2.0
"""Audit step ``RecordTarget``: what the audit explains (what green means), in the manifest."""
from __future__ import annotations

import pytest

from medig.audit.steps.target import RecordTarget
from tests.audit.steps.kit import CLASSES, finished, make_context, settings


@pytest.mark.parametrize("target, expected", [
    (None, {"kind": "predicted", "name": None, "members": None, "indices": None, "spec": "pred",
            "source": "default (the predicted class)"}),
    ("referable", {"kind": "class", "name": "referable", "members": ["referable"], "indices": [1],
                   "spec": "referable", "source": "argument"}),
    ("sick=1", {"kind": "group", "name": "sick", "members": ["referable"], "indices": [1],
                "spec": "sick=1", "source": "argument"}),
])
def test_the_target_is_described_in_the_manifest(tmp_path, target, expected) -> None:
    audit = finished(make_context(tmp_path / "out", settings(target=target)), [], [])
    RecordTarget()(audit)
    got = audit.manifest["target"]
    assert {k: got[k] for k in expected} == expected and got["output"] == "probability"
    if expected["kind"] == "group":
        assert "referable" in got["formula"]
    assert audit.manifest["model_metadata"]["target_source"] == expected["source"]
    assert audit.plan.class_names == CLASSES
