# SPDX-License-Identifier: Apache-2.0
"""``medig audit`` on real architectures saved the ways training code saves them, with command-line
flags only (no JSON file beside the weights), explaining the referable-DR group."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from medig.audit import read_results
from medig.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from medig.synthetic import generate
from tests.models.checkpoint_forms import FORMS, GRADES, MEAN, STD

SPECS = ["torchvision:resnet18", "torchvision:swin_t", "torchvision:convnext_tiny"]
#: The large architectures run in the full suite only (``-m "not slow"`` keeps resnet18).
SPEC_PARAMS = [SPECS[0], *(pytest.param(s, marks=pytest.mark.slow) for s in SPECS[1:])]
FAST = ["--baseline", "black", "--max-steps", "48", "--batch-size", "2", "--workers", "0",
        "--quiet"]
#: What each form lacks, given on the command line.
FLAGS = {
    "safetensors": ["--classes", *GRADES, "--mean", *map(str, MEAN), "--std", *map(str, STD),
                    "--input-size", "32"],
    "lightning": ["--mean", *map(str, MEAN), "--std", *map(str, STD)],
    "self_describing": [],
}


@pytest.fixture(scope="module")
def fundus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fundus")
    images, _masks, _labels = generate(2, size=64, seed=21)
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"eye_{i}.png")
    return folder


def check_group_audit(out, members=("moderate", "severe", "proliferative")):
    rows = read_results(out / "results.jsonl")
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["target"] == "referable DR" and r["target_members"] == list(members)
        assert r["target_index"] is None
        # the explained score is P(group): the class probabilities summed independently
        assert r["score"] == pytest.approx(sum(r["probabilities"][m] for m in members),
                                           rel=1e-5, abs=1e-6)
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-5
        assert r["score"] != pytest.approx(r["baseline_score"], abs=1e-4)  # something to explain
        if not r["flagged"]:  # completeness holds on every unflagged image
            # the audit's rule for probabilities: |delta| <= max(0.001, 1% of |F(x) - F(x')|)
            bound = max(1e-3, 0.01 * abs(r["score"] - r["baseline_score"]))
            assert abs(r["delta"]) <= bound * (1 + 1e-6)
            assert r["abs_tol"] == pytest.approx(bound, rel=1e-4)
            assert abs(r["delta"]) == pytest.approx(
                r["relative_error"] * abs(r["score"] - r["baseline_score"]), rel=1e-2, abs=1e-8)
    manifest = json.loads((out / "manifest.json").read_text())
    target = manifest["target"]
    assert (target["kind"], target["name"], target["members"], target["indices"]) == (
        "group", "referable DR", list(members), [GRADES.index(m) for m in members])
    assert target["formula"] == "P(referable DR) = " + " + ".join(f"P({m})" for m in members)
    assert manifest["model"]["class_names"] == GRADES
    return rows, manifest


@pytest.mark.parametrize("spec", SPEC_PARAMS)
@pytest.mark.parametrize("form", FORMS)
def test_audit_each_form_with_flags_only(zoo, fundus, tmp_path, spec, form):
    weights = zoo.path(spec, form)
    assert not list(weights.parent.glob("*.json"))  # no metadata file anywhere near
    out = tmp_path / "out"
    code = main(["audit", str(fundus), "--out", str(out), "--model", spec, "--weights",
                 str(weights), "--target", "referable DR=moderate,severe,proliferative",
                 *FLAGS[form], *FAST])
    assert code == EXIT_OK
    _rows, manifest = check_group_audit(out)
    pieces = manifest["model_metadata"]["pieces"]
    where = {"safetensors": "argument", "lightning": "checkpoint",
             "self_describing": "checkpoint"}[form]
    assert pieces["class_names"]["source"].startswith(where)
    assert pieces["mean"]["value"] == pytest.approx(list(MEAN))
    assert manifest["settings"]["size"] == 32
    assert manifest["model_metadata"]["target_source"] == "argument"


@pytest.mark.slow
def test_vit_with_model_arguments(zoo, fundus, tmp_path):
    from tests.models.checkpoint_forms import save_form

    spec = "torchvision:vit_b_16"
    weights = save_form(zoo.model(spec), "lightning", tmp_path / "w", "vit", zoo.SIZE)
    out = tmp_path / "out"
    code = main(["audit", str(fundus), "--out", str(out), "--model", spec, "--weights",
                 str(weights), "--model-arg", f"image_size={zoo.SIZE}", "--target",
                 "referable DR=2,3,4", *FLAGS["lightning"], *FAST])
    assert code == EXIT_OK
    check_group_audit(out)


@pytest.mark.slow
def test_timm_models(fundus, tmp_path):
    pytest.importorskip("timm")
    from medig.models.architectures import build_architecture
    from tests.models.checkpoint_forms import liven, quick_init, save_form

    effnet = liven(build_architecture("timm:efficientnet_b0", 5))
    vit = liven(quick_init(build_architecture("timm:vit_tiny_patch16_224", 5, {"img_size": 32},
                                              initialise=False)))
    runs = [("timm:efficientnet_b0", effnet, form, FLAGS[form]) for form in FORMS]
    runs.append(("timm:vit_tiny_patch16_224", vit, "self_describing",
                 ["--model-arg", "img_size=32"]))
    for spec, model, form, flags in runs:
        name = f"{spec.split(':')[1]}_{form}"
        weights = save_form(model, form, tmp_path / "w", name, 32)
        out = tmp_path / name
        assert main(["audit", str(fundus), "--out", str(out), "--model", spec, "--weights",
                     str(weights), *flags, "--target", "referable DR=2,3,4", *FAST]) == EXIT_OK
        check_group_audit(out)


def test_refusals_are_one_line_with_documented_exit_codes(zoo, fundus, tmp_path, capsys):
    spec, weights = SPECS[0], str(zoo.path(SPECS[0], "self_describing"))
    base = ["audit", str(fundus), "--model", spec, "--weights", weights, *FAST]
    cases = [
        (["--model-arg", "image_size"], EXIT_USAGE, "--model-arg 'image_size': expected KEY=VALUE"),
        (["--model-arg", "depth=3"], EXIT_USAGE, "model argument 'depth' is not accepted"),
        (["--target", "referable DR=moderate,sever"], EXIT_USAGE,
         "'sever' is not a class of the model; classes: none, mild, moderate, severe, "
         "proliferative"),
        (["--target", "referable DR=2,3,4", "--output", "logit"], EXIT_USAGE,
         "is a group of classes, explained as their summed probability; --output logit has no "
         "group equivalent"),
    ]
    for extra, code, message in cases:
        out = tmp_path / f"out{len(extra)}{code}"
        assert main([*base, "--out", str(out), *extra]) == code
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not (out / "manifest.json").exists()  # refused before anything was written
    # A self-supervised encoder without the classifier head: no prefix makes it a classifier.
    encoder = tmp_path / "encoder.pt"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in
                               zoo.model(spec).state_dict().items() if not k.startswith("fc.")}},
               encoder)
    assert main(["audit", str(fundus), "--out", str(tmp_path / "o"), "--model", spec,
                 "--weights", str(encoder), "--classes", *GRADES, *FAST]) == EXIT_FAILED
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "the weights do not fit the architecture torchvision:resnet18: no key prefix makes " \
           "them fit (closest: prefix 'encoder.', 120 of 122 tensors match; missing fc.weight, " \
           "fc.bias (2))" in err
