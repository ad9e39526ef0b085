# SPDX-License-Identifier: Apache-2.0
"""The audit's plan: settings (what the user asked for, frozen) + the loaded model -> AuditPlan."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

from medig.attr.class_group import ClassGroup
from medig.attr.completeness import ABSOLUTE_FLOOR, PROBABILITY_ATOL
from medig.audit import AuditSettings, read_results, run_audit
from medig.audit.errors import AuditError, AuditUsageError
from medig.audit.model_setup import load_for_audit
from medig.audit.plan import AuditPlan, resolve
from medig.cli import _settings, build_parser
from medig.models import LoadedModel
from medig.models.metadata import ModelMetadata
from tests.audit.conftest import make_audit_folder
from tests.audit.tiny_models import make_tiny

GRADES = ["none", "mild", "moderate", "severe", "proliferative"]


def _loaded(default_target=None, input_size=None, names=GRADES) -> LoadedModel:
    meta = ModelMetadata(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                         sources={"target": "checkpoint m.pt positive_class"})
    return LoadedModel(torch.nn.Identity(), names, input_size=input_size, spec="m",
                       weights_sha256="ab" * 32, metadata=meta, default_target=default_target)


def test_target_declared_given_or_predicted():
    group = ClassGroup("referable", [2, 3, 4])
    declared = resolve(AuditSettings(), _loaded(default_target=group))
    assert declared.target == group and declared.target_spec == "referable=2,3,4"
    assert declared.model_metadata["target_source"] == \
        "declared by the model (checkpoint m.pt positive_class)"
    given = resolve(AuditSettings(target="severe"), _loaded(default_target=group))
    assert given.target == 3 and given.target_spec == "severe"
    assert given.model_metadata["target_source"] == "argument"
    predicted = resolve(AuditSettings(), _loaded())
    assert predicted.target is None and predicted.target_spec == "pred"
    assert predicted.model_metadata["target_source"] == "default (the predicted class)"
    assert resolve(AuditSettings(target="pred"), _loaded(default_target=group)).target is None


def test_bad_targets_and_class_counts_stop_before_the_audit():
    with pytest.raises(AuditUsageError, match="--target: target 9 is out of range"):
        resolve(AuditSettings(target="9"), _loaded())
    with pytest.raises(AuditUsageError, match="the model declares the target"):
        resolve(AuditSettings(output="logit"), _loaded(default_target=ClassGroup("r", [3, 4])))
    with pytest.raises(AuditError, match="--classes names 2 classes but the model has 5"):
        resolve(AuditSettings(class_names=["a", "b"]), _loaded())


def test_tolerance_default_follows_the_output():
    assert resolve(AuditSettings(), _loaded()).completeness_atol == PROBABILITY_ATOL
    assert resolve(AuditSettings(output="logit"), _loaded()).completeness_atol == ABSOLUTE_FLOOR
    given = resolve(AuditSettings(output="logit", completeness_atol=0.25), _loaded())
    assert given.completeness_atol == 0.25


def test_size_from_the_model_when_not_given():
    assert resolve(AuditSettings(size=0), _loaded(input_size=384)).size == 384
    assert resolve(AuditSettings(size=0), _loaded()).size == 512  # nothing declared
    assert resolve(AuditSettings(size=224), _loaded(input_size=384)).size == 224


def test_plan_holds_what_the_model_brought():
    plan = resolve(AuditSettings(class_names=list("abcde")), _loaded())
    assert plan.class_names == tuple("abcde")  # --classes win over the model's names
    assert plan.mean == (0.5, 0.5, 0.5) and plan.std == (0.25, 0.25, 0.25)
    assert plan.weights_sha256 == "ab" * 32
    assert plan.model_metadata["pieces"]["mean"] == {"value": [0.5, 0.5, 0.5], "source": None}
    assert plan.compile is None  # decided by the schedule
    assert plan.scheduled(torch.device("cpu"), 10_000).compile is False  # no CPU break-even
    on = dataclasses.replace(plan.settings, compile=True)
    assert resolve(on, _loaded()).scheduled(torch.device("cpu"), 1).compile is True


def test_settings_are_frozen_and_unchanged_by_resolve():
    settings = AuditSettings(size=0, class_names=GRADES, baselines=["black"])
    before = dataclasses.replace(settings)
    plan = resolve(settings, _loaded(default_target=1, input_size=300))
    assert settings == before and settings.target is None and settings.size == 0
    assert settings.completeness_atol is None and settings.mean is None
    assert plan.settings is settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.size = 96  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.size = 96  # type: ignore[misc]
    assert settings.baselines == ("black",)  # lists are held as tuples
    assert settings.to_dict()["baselines"] == ["black"]  # and written as lists


def test_settings_dict_records_the_values_in_effect():
    plan = resolve(AuditSettings(size=0), _loaded(input_size=300, default_target=3))
    d = plan.settings_dict()
    fields = [f.name for f in dataclasses.fields(AuditSettings)]
    # every field of the settings, with the two the model brings where the manifest had them
    assert [k for k in d if k not in ("weights_sha256", "model_metadata")] == fields
    assert list(d).index("weights_sha256") == fields.index("weights") + 1
    assert list(d).index("model_metadata") == fields.index("model_args") + 2
    assert (d["size"], d["target"], d["completeness_atol"]) == (300, "severe", PROBABILITY_ATOL)
    assert d["class_names"] == GRADES and d["mean"] == [0.5, 0.5, 0.5]
    assert json.loads(json.dumps(d)) == d  # JSON-ready: a resumed audit compares equal
    assert plan.changed_from(d) == []
    assert plan.changed_from({**d, "size": 512}) == ["size"]


def _old_key(numeric: dict) -> str:
    """The settings key as medig 0.1.0 computed it (the key of existing audit folders)."""
    blob = json.dumps(numeric, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@pytest.mark.parametrize("options, key", [
    # computed by medig 0.1.0 (main before the plan) for the demo model: existing audit folders
    # made with these options resume instead of re-auditing
    ([], "4d39aebe46f11e94"),
    (["--target", "pred", "--size", "128", "--output", "logit"], "c4efb94f5cc61e7c"),
    (["--classes", "no referable DR", "referable DR", "--completeness-atol", "0.02",
      "--baseline", "black"], "01771b9827d7147f"),
    (["--target", "referable DR=0,1", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25",
      "0.25", "--quality", "skip", "--cross-check", "occlusion", "--no-trust-checks"],
     "d962578ae75af1c0"),
    (["--size", "0", "--input-size", "300", "--path-dtype", "bfloat16", "--max-steps", "64",
      "--graham"], "1f911571dceb82f8"),
])
def test_key_is_the_key_of_existing_audits(options, key):
    settings = _settings(build_parser().parse_args(["audit", "in", "--out", "o", *options]))
    plan = resolve(settings, load_for_audit(settings))
    assert plan.weights_sha256 == \
        "c12306bdb5c44bca478eb7e529d00a47f43abdcb08c368a7d24dc698175dbf4f", \
        "the demo weights changed: recompute these keys with the previous release"
    # The key is still made the way medig 0.1.0 made it, but the map-accuracy rule (map_tol, a
    # new numeric setting, and the schedule that meets it) changed every image's numbers: folders
    # audited before it are recomputed (or refused without --force), never mixed with new work.
    assert _old_key(plan.numeric()) == plan.key()
    assert plan.key() != key and "map_tol" in plan.numeric()


def test_one_settings_object_runs_two_audits(tmp_path):
    # Nothing is written back into the settings: the second audit (another folder) computes the
    # same numbers under the same key, and a third (the first folder) resumes all of it.
    folder = make_audit_folder(tmp_path / "in", n=2, seed=5)
    settings = AuditSettings(model="tests.audit.tiny_models:make_tiny", size=0, input_size=96,
                             batch_size=4, workers=0, baselines=["black"],
                             class_names=["healthy", "referable"])
    before = dataclasses.replace(settings)
    first = run_audit([folder], tmp_path / "a", settings, progress=False)
    second = run_audit([folder], tmp_path / "b", settings, progress=False)
    assert settings == before
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab"]
    assert manifests[0]["settings_key"] == manifests[1]["settings_key"]
    assert manifests[0]["settings"]["size"] == 96  # resolved there, not in the settings
    numbers = [{r["path"]: (r["status"], r.get("score"), r.get("delta")) for r in
                read_results(tmp_path / d / "results.jsonl")} for d in "ab"]
    assert numbers[0] == numbers[1] and first.computed == second.computed > 0
    assert run_audit([folder], tmp_path / "a", settings, progress=False).computed == 0


def test_model_loader_returns_a_loaded_model(tmp_path):
    folder = make_audit_folder(tmp_path / "in", n=1, seed=6)
    seen = []

    def loader(settings: AuditSettings) -> LoadedModel:
        seen.append(settings)
        return LoadedModel(make_tiny(), ["healthy", "referable"], input_size=96,
                           weights_sha256="cd" * 32, default_target=1)

    settings = AuditSettings(size=0, batch_size=4, workers=0, baselines=["black"])
    summary = run_audit([folder], tmp_path / "out", settings, progress=False, model_loader=loader)
    assert seen == [settings]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["weights_sha256"] == "cd" * 32
    assert manifest["model"]["input_size"] == 96 and manifest["target"]["name"] == "referable"
    ok = [r for r in summary.rows if r["status"] == "ok"]
    assert ok and all(r["target"] == "referable" for r in ok)


def test_a_plan_made_by_hand_records_the_values_as_given():
    # A plan made by hand (the MONAI handler's: values as given) records them unchanged.
    settings = AuditSettings(class_names=["a", "b"], target="b", size=0)
    plan = AuditPlan(settings, class_names=settings.class_names, target=1, target_spec="b",
                     size=0)
    d = plan.settings_dict()
    assert d == {**settings.to_dict(), "weights_sha256": None, "model_metadata": {}}


@pytest.mark.parametrize("change", [
    {"device": "cpu"}, {"batch_size": 1}, {"workers": 0}, {"threads": 3},
    {"overlay_scale": "image"}, {"percentile": 90.0}, {"template": "my.toml"},
    {"sanity_sample": 0}, {"compile": True}, {"include_phi": True}, {"save_attributions": True},
    {"weights": "other/path.pt"}, {"per_study": True}, {"jpeg_on_device": False},
])
def test_key_ignores_how_fast_or_how_shown(change):
    settings = AuditSettings()
    base = resolve(settings, _loaded())
    other = resolve(dataclasses.replace(settings, **change), _loaded())
    assert other.key() == base.key() and other.changed_from(base.settings_dict()) == []


@pytest.mark.parametrize("change, changed", [
    ({"max_steps": 64}, ["max_steps"]), ({"baselines": ("black",)}, ["baselines"]),
    ({"graham": True}, ["graham"]), ({"quality": "off"}, ["quality"]),
    ({"trust_checks": False}, ["trust_checks"]), ({"cross_check": ("occlusion",)}, ["cross_check"]),
    ({"size": 256}, ["size"]), ({"mask_dilation": 3}, ["mask_dilation"]),
    ({"path_dtype": "bfloat16"}, ["path_dtype"]), ({"target": "severe"}, ["target"]),
    ({"completeness_tol": 0.05}, ["completeness_tol"]),
    ({"output": "logit"}, ["output", "completeness_atol"]),  # the default tolerance follows it
    ({"completeness_atol": 0.5}, ["completeness_atol"]),
    ({"class_names": tuple("abcde")}, ["class_names"]),
])
def test_key_follows_every_setting_that_changes_the_numbers(change, changed):
    settings = AuditSettings()
    base = resolve(settings, _loaded())
    other = resolve(dataclasses.replace(settings, **change), _loaded())
    assert other.key() != base.key() and other.changed_from(base.settings_dict()) == changed


def test_key_follows_the_weights_bytes_not_their_path():
    other = _loaded()
    other.weights_sha256 = "cd" * 32
    assert resolve(AuditSettings(), other).key() != resolve(AuditSettings(), _loaded()).key()
