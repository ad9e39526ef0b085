# SPDX-License-Identifier: Apache-2.0
"""The report says what the colours mean: a group or class for the cohort, or per image."""
from __future__ import annotations

import re
from pathlib import Path

import pypdf
from report_fake_audit import make_row, write_audit

from medig.report import build_report

GRADES = ["none", "mild", "moderate", "severe", "proliferative"]
MEMBERS = ["moderate", "severe", "proliferative"]


def _text(pdf: Path) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(str(pdf)).pages)


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _grade_row(path: str, probs: list[float], **kw) -> dict:
    probabilities = dict(zip(GRADES, probs))
    predicted = max(probabilities, key=probabilities.get)
    row = make_row(path, predicted=predicted, predicted_index=GRADES.index(predicted),
                   probabilities=probabilities)
    row.update(kw)
    return row


def _manifest(model_class_source: str = "checkpoint w.ckpt hyper_parameters.class_names"):
    return {
        "model": {"spec": "timm:efficientnet_b0", "class_names": GRADES, "input_size": 512},
        "target": {"spec": "referable DR=2,3,4", "kind": "group", "name": "referable DR",
                   "members": MEMBERS, "indices": [2, 3, 4],
                   "formula": "P(referable DR) = P(moderate) + P(severe) + P(proliferative)",
                   "source": "declared by the model (checkpoint w.ckpt positive_class)",
                   "output": "probability"},
        "model_metadata": {"pieces": {
            "class_names": {"value": GRADES, "source": model_class_source},
            "mean": {"value": [0.5] * 3, "source": "argument"}}},
        "output": "probability",
    }


def test_group_target_on_the_cover_and_per_image(tmp_path):
    probs = [[0.05, 0.10, 0.40, 0.30, 0.15], [0.70, 0.20, 0.06, 0.03, 0.01],
             [0.10, 0.10, 0.20, 0.30, 0.30]]
    rows = [_grade_row(f"eye_{i}.png", p, target="referable DR", target_index=None,
                       target_members=MEMBERS, score=sum(p[2:])) for i, p in enumerate(probs)]
    out = write_audit(tmp_path / "audit", rows, manifest_extra=_manifest())
    text = _text(build_report(out))
    flat = _flat(text)
    assert "What the colours mean" in text
    assert _flat("Every overlay in this audit explains the probability of referable DR, "
                 "P(referable DR) = P(moderate) + P(severe) + P(proliferative).") in flat
    assert _flat("The model declares this as the output to explain (checkpoint w.ckpt "
                 "positive_class).") in flat
    # group probabilities 0.85, 0.10, 0.80 (summed here, independently of the report)
    assert _flat("P(referable DR) was at least 0.5 in 2 of 3 explained images (66.7%); median "
                 "0.800, range 0.100 to 0.850.") in flat
    assert _flat("class names: checkpoint w.ckpt hyper_parameters.class_names; "
                 "normalisation: argument") in flat
    assert _flat("Overlay: green = for referable DR, red = against") in flat
    # the per-image class-probability table, with the group's sum
    assert _flat("none mild moderate severe proliferative P(referable DR)") in flat
    assert _flat("0.050 0.100 0.400 0.300 0.150 0.850") in flat
    # the group is not counted as a predicted class
    assert "referable DR: 0" not in text
    assert _flat("Class explained referable DR (3 images)") in flat


def test_predicted_class_per_image_and_generic_names(tmp_path):
    names = [f"class {i}" for i in range(3)]
    rows = [make_row("a.png", predicted="class 2", predicted_index=2, target="class 2",
                     target_index=2, probabilities=dict(zip(names, [0.1, 0.2, 0.7]))),
            make_row("b.png", predicted="class 0", predicted_index=0, target="class 0",
                     target_index=0, probabilities=dict(zip(names, [0.6, 0.3, 0.1])))]
    manifest = {"model": {"spec": "x", "class_names": names},
                "target": {"kind": "predicted", "spec": "pred"},
                "model_metadata": {"pieces": {"class_names": {
                    "value": names, "source": "generic (none given)"}}}}
    out = write_audit(tmp_path / "audit", rows, manifest_extra=manifest)
    text = _text(build_report(out))
    flat = _flat(text)
    assert _flat("Each overlay explains the class the model predicted for that image") in flat
    assert _flat("Overlay: green = for class 2, red = against") in flat
    assert _flat("Overlay: green = for class 0, red = against") in flat
    assert _flat('The model came without class names, so its outputs are called "class 0" to '
                 '"class 2"') in flat
    assert "P(class" not in text  # no cohort probability line for per-image targets


def test_two_class_reports_have_no_probability_table(audit_dir):
    text = _text(build_report(audit_dir))
    assert _flat("Overlay: green = for referable DR, red = against") in _flat(text)
    assert "no referable DR referable DR" not in text  # the table would print the names in a row
