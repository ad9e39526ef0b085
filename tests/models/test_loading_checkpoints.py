# SPDX-License-Identifier: Apache-2.0
"""load_model on real architectures saved the ways training code saves them."""
from __future__ import annotations

import json

import pytest
import torch

from medig.models import ModelArgumentError, ModelLoadError, load_model
from tests.models.checkpoint_forms import FORMS, GRADES, MEAN, STD, save_form

SPECS = ["torchvision:resnet18", "torchvision:swin_t", "torchvision:convnext_tiny"]
#: The large architectures run in the full suite only (``-m "not slow"`` keeps resnet18).
SPEC_PARAMS = [SPECS[0], *(pytest.param(s, marks=pytest.mark.slow) for s in SPECS[1:])]


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.mark.parametrize("spec", SPEC_PARAMS)
@pytest.mark.parametrize("form", FORMS)
def test_every_form_loads_the_same_network(zoo, spec, form):
    # Only what the file lacks is given as arguments (as the CLI flags would).
    given = {"safetensors": {"class_names": GRADES, "mean": MEAN, "std": STD},
             "lightning": {"mean": MEAN, "std": STD}, "self_describing": {}}[form]
    loaded = load_model(spec, weights=zoo.path(spec, form), **given)
    assert loaded.class_names == GRADES
    x = torch.rand(2, 3, zoo.SIZE, zoo.SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), zoo.model(spec)(_normalised(x)))
    meta = loaded.metadata
    assert meta.mean == pytest.approx(MEAN) and meta.std == pytest.approx(STD)
    expected_sources = {
        "safetensors": ("argument", "argument"),
        "lightning": ("checkpoint " + zoo.path(spec, form).name + " hyper_parameters.class_names",
                      "argument"),
        "self_describing": ("checkpoint " + zoo.path(spec, form).name + " classes",
                            "checkpoint " + zoo.path(spec, form).name + " normalization.mean"),
    }[form]
    assert (meta.sources["class_names"], meta.sources["mean"]) == expected_sources
    prefix = {"safetensors": None, "lightning": "model.", "self_describing": "module."}[form]
    assert loaded.details.get("prefix_stripped") == prefix


def test_lightning_checkpoint_records_what_it_did_not_unpickle(zoo):
    loaded = load_model(SPECS[0], weights=zoo.path(SPECS[0], "lightning"))
    assert "pathlib.PosixPath" in loaded.details["not_unpickled"]
    assert loaded.input_size == zoo.SIZE  # hyper_parameters.image_size
    assert loaded.default_target is None  # hyper_parameters.target is a data column, not read
    provenance = loaded.provenance()
    json.dumps(provenance)  # manifest-ready
    assert provenance["pieces"]["class_names"]["value"] == GRADES


def test_without_names_the_head_of_the_weights_gives_the_count(zoo):
    # safetensors keeps keys sorted, not in model order: the count comes from the shapes.
    loaded = load_model(SPECS[2], weights=zoo.path(SPECS[2], "safetensors"))
    assert loaded.class_names == [f"class {i}" for i in range(5)]


def test_declared_targets_resolve_or_are_refused(zoo, tmp_path):
    weights = zoo.path(SPECS[0], "safetensors")
    sidecar = weights.with_suffix(".json")
    try:
        sidecar.write_text(json.dumps({"class_names": GRADES,
                                       "positive_class": {"referable DR": ["moderate", 3, 4]}}))
        group = load_model(SPECS[0], weights=weights).default_target
        assert (group.name, group.indices) == ("referable DR", (2, 3, 4))
        sidecar.write_text(json.dumps({"class_names": GRADES, "positive_class": "sever"}))
        with pytest.raises(ModelArgumentError, match="'sever' is not a class name"):
            load_model(SPECS[0], weights=weights)
    finally:
        sidecar.unlink()
    ckpt = tmp_path / "declares.pt"
    torch.save({"model": zoo.model(SPECS[0]).state_dict(), "classes": GRADES,
                "positive_class": "no such class"}, ckpt)
    assert load_model(SPECS[0], weights=ckpt).default_target is None  # skipped, with a note
    torch.save({"model": zoo.model(SPECS[0]).state_dict(), "classes": GRADES,
                "positive_classes": ["moderate", "severe", "proliferative"]}, ckpt)
    assert load_model(SPECS[0], weights=ckpt).default_target.indices == (2, 3, 4)


def test_weights_for_another_architecture_are_refused_in_one_line(zoo):
    with pytest.raises(ModelLoadError) as info:
        load_model(SPECS[1], weights=zoo.path(SPECS[0], "lightning"))
    assert "\n" not in str(info.value)
    assert "no key prefix makes them fit (closest:" in str(info.value)


def test_timm_efficientnet_in_every_form(tmp_path):
    pytest.importorskip("timm")
    from medig.models.architectures import build_architecture

    torch.manual_seed(0)
    ref = build_architecture("timm:efficientnet_b0", 5).eval()
    x = torch.rand(1, 3, 32, 32)
    for form in FORMS:
        weights = save_form(ref, form, tmp_path, "effnet", 32)
        loaded = load_model("timm:efficientnet_b0", weights=weights, class_names=GRADES,
                            mean=MEAN, std=STD)
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), ref(_normalised(x)))


def test_class_count_disagreements_are_named(zoo):
    weights = zoo.path(SPECS[0], "safetensors")
    with pytest.raises(ModelLoadError, match=r"; the weights have 5 outputs but 2 class names "
                                             r"were given \(argument\)$"):
        load_model(SPECS[0], weights=weights, class_names=["a", "b"])
    with pytest.raises(ModelArgumentError, match="num_classes=3 but 5 class names"):
        load_model(SPECS[0], weights=weights, class_names=GRADES, model_kwargs={"num_classes": 3})
    loaded = load_model(SPECS[0], weights=weights, model_kwargs={"num_classes": 5})
    assert len(loaded.class_names) == 5


def test_a_genuine_lightning_checkpoint_loads_without_lightning():
    # Made by tests/models/data/make_lightning_checkpoint.py (lightning 2.6.6, omegaconf 2.4.0):
    # OmegaConf config, PosixPath and numpy arrays in hyper_parameters, AdamW/OneCycleLR state.
    from pathlib import Path

    from medig.models.checkpoint import read_checkpoint
    from tests.audit.tiny_models import make_tiny

    path = Path(__file__).with_name("data") / "lightning_tiny.ckpt"
    loaded = load_model("tests.audit.tiny_models:make_tiny", weights=path)
    assert loaded.class_names == ["no referable DR", "referable DR"]
    assert loaded.input_size == 64
    assert loaded.metadata.mean == pytest.approx((0.41, 0.22, 0.12))
    assert loaded.metadata.sources["mean"] == "checkpoint lightning_tiny.ckpt hyper_parameters.mean"
    assert loaded.details["prefix_stripped"] == "net."
    assert "omegaconf.dictconfig.DictConfig" in loaded.details["not_unpickled"]
    content = read_checkpoint(path).content
    assert content["hyper_parameters"]["cfg"]["data"]["std"] == [0.27, 0.15, 0.08]
    assert content["hyper_parameters"]["data_dir"] == "/data/fundus"
    ref = make_tiny()
    ref.load_state_dict({k[len("net."):]: v for k, v in content["state_dict"].items()
                         if k.startswith("net.")})
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor([0.41, 0.22, 0.12]).view(1, 3, 1, 1)
    std = torch.tensor([0.27, 0.15, 0.08]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), ref((x - mean) / std))


def test_model_arguments_that_cannot_apply_are_refused(tmp_path):
    with pytest.raises(ModelArgumentError, match="demo: model arguments not accepted"):
        load_model("demo", model_kwargs={"image_size": 384})
    from tests.audit.tiny_models import make_tiny

    program = tmp_path / "tiny.pt2"
    x = torch.rand(1, 3, 32, 32)
    torch.export.save(torch.export.export(make_tiny(), (x,)), program)
    with pytest.raises(ModelArgumentError, match="do not apply to a torch.export or TorchScript"):
        load_model(program, class_names=["a", "b"], model_kwargs={"width": 3})
