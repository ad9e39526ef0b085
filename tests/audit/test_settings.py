# SPDX-License-Identifier: Apache-2.0
"""``AuditSettings`` (what the user asked for, frozen) and ``settings_problem`` (the first reason
they cannot run, before anything is loaded)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from medig.audit.plan import AuditPlan
from medig.audit.settings import NUMERIC_SETTINGS, AuditSettings, settings_problem


def test_sequences_are_held_as_tuples_and_the_callers_dict_stays_theirs() -> None:
    args = {"depth": 18}
    s = AuditSettings(class_names=["a", "b"], baselines=["black"], mean=[0.5, 0.5, 0.5],
                      std=[0.2, 0.2, 0.2], cross_check=["occlusion"], model_args=args)
    assert (s.class_names, s.baselines, s.cross_check) == (("a", "b"), ("black",), ("occlusion",))
    assert s.mean == (0.5, 0.5, 0.5) and s.std == (0.2, 0.2, 0.2)
    args["depth"] = 50
    assert s.model_args == {"depth": 18}
    assert AuditSettings().mean is None  # None stays None: "the model's"
    assert hash(dataclasses.replace(s, model_args={}).class_names) is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_steps = 2  # type: ignore[misc]


def test_to_dict_is_json_ready_and_covers_every_field() -> None:
    s = AuditSettings(class_names=["a", "b"], cross_check=["occlusion"])
    d = s.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(AuditSettings)]
    assert d["class_names"] == ["a", "b"] and d["baselines"] == ["black", "blur"]
    assert json.loads(json.dumps(d)) == d
    assert AuditSettings(**{k: v for k, v in d.items()}) == s  # and builds the same settings


def test_numeric_settings_are_the_plans_numbers() -> None:
    names = {f.name for f in dataclasses.fields(AuditSettings)} | {"weights_sha256"}
    assert set(NUMERIC_SETTINGS) <= names and len(set(NUMERIC_SETTINGS)) == len(NUMERIC_SETTINGS)
    # how fast or how shown: never part of the numbers' key
    for name in ("device", "batch_size", "workers", "threads", "overlay_scale", "percentile",
                 "template", "include_phi", "sanity_sample", "compile", "weights"):
        assert name not in NUMERIC_SETTINGS
    plan = AuditPlan(AuditSettings(), ("a", "b"), None, "pred", 512)
    assert list(plan.numeric()) == list(NUMERIC_SETTINGS)


@pytest.mark.parametrize("changes, dicom, pages", [
    ({}, False, False),
    ({"per_study": True}, False, True),
    ({"dicom_out": True}, True, True),
    ({"send": "PACS@host:104"}, True, True),
])
def test_dicom_output_implies_study_pages(changes, dicom, pages) -> None:
    s = AuditSettings(**changes)
    assert (s.wants_dicom, s.wants_study_pages) == (dicom, pages)


@pytest.mark.parametrize("changes, problem", [
    ({"baselines": ("black", "sunset")}, "unknown baseline 'sunset'; known: "),
    ({"baselines": ()}, "--baseline: give at least one baseline"),  # not one error row per image
    ({"completeness_tol": 0.0}, "--completeness-tol must be > 0"),
    ({"completeness_tol": float("nan")}, "--completeness-tol must be > 0"),
    ({"max_steps": 1}, "--max-steps >= 2"),
    ({"batch_size": 0}, "--batch-size >= 1"),
    ({"completeness_atol": -1e-3}, "--completeness-atol must be a finite number >= 0"),
    ({"completeness_atol": float("inf")}, "--completeness-atol must be a finite number >= 0"),
    ({"completeness_atol": float("nan")}, "--completeness-atol must be a finite number >= 0"),
    ({"sanity_sample": -1}, "--sanity-sample must be >= 0"),
])
def test_each_problem_is_one_line_naming_the_option(changes, problem) -> None:
    found = settings_problem(AuditSettings(**changes))
    assert found is not None and problem in found and "\n" not in found


def test_a_template_is_read_before_the_audit(tmp_path) -> None:
    bad = tmp_path / "report.toml"
    bad.write_text("[report\nbroken", encoding="utf-8")
    found = settings_problem(AuditSettings(template=str(bad)))
    assert found is not None and found.startswith("--template: ") and "report.toml" in found
    missing = settings_problem(AuditSettings(template=str(tmp_path / "none.toml")))
    assert missing is not None and missing.startswith("--template: ")


def test_defaults_and_edge_values_have_no_problem() -> None:
    assert settings_problem(AuditSettings()) is None
    assert settings_problem(AuditSettings(completeness_atol=0.0, sanity_sample=0, max_steps=2,
                                          batch_size=1)) is None
