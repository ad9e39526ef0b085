# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medig.models import ModelArgumentError, ModelLoadError
from medig.models.metadata import from_arguments, from_checkpoint, from_json, merge_metadata

GRADES = ["none", "mild", "moderate", "severe", "proliferative"]


@pytest.mark.parametrize("content, source", [
    ({"classes": GRADES}, "ck classes"),
    ({"class_names": tuple(GRADES)}, "ck class_names"),
    ({"labels": np.array(GRADES)}, "ck labels"),
    ({"idx_to_class": {i: n for i, n in enumerate(GRADES)}}, "ck idx_to_class"),
    ({"idx_to_class": {str(i): n for i, n in reversed(list(enumerate(GRADES)))}},
     "ck idx_to_class"),
    ({"class_to_idx": {n: i for i, n in enumerate(GRADES)}}, "ck class_to_idx"),
    ({"hyper_parameters": {"id2label": {str(i): n for i, n in enumerate(GRADES)}}},
     "ck hyper_parameters.id2label"),
    # numbers are not names: the list of ints is skipped, the names below it are found
    ({"labels": [0, 1, 2, 3, 4], "hparams": {"class_names": GRADES}}, "ck hparams.class_names"),
])
def test_class_names_wherever_training_code_keeps_them(content, source):
    meta = from_checkpoint(content, "ck")
    assert meta.class_names == GRADES and meta.sources["class_names"] == source
    assert not [n for n in meta.notes if "labels" in n]  # a skipped list of numbers is no news


def test_class_count_without_names():
    meta = from_checkpoint({"hyper_parameters": {"num_classes": 5, "classes": 5}}, "ck")
    assert meta.class_names is None and meta.num_classes == 5


@pytest.mark.parametrize("content, where", [
    ({"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}, "mean"),
    ({"preprocessing": {"mean": np.array([0.5, 0.4, 0.3]), "std": torch.tensor([0.2, 0.2, 0.2])}},
     "preprocessing.mean"),
    ({"normalization": {"mean": "0.5, 0.4, 0.3", "std": "(0.2, 0.2, 0.2)"}},
     "normalization.mean"),
    ({"hyper_parameters": {"transforms": {"normalize": {"mean": (0.5, 0.4, 0.3),
                                                        "std": (0.2, 0.2, 0.2)}}}},
     "hyper_parameters.transforms.normalize.mean"),
    ({"datamodule_hyper_parameters": {"image_mean": [0.5, 0.4, 0.3],
                                      "image_std": [0.2, 0.2, 0.2]}},
     "datamodule_hyper_parameters.image_mean"),
])
def test_normalisation_nested_in_many_ways(content, where):
    meta = from_checkpoint(content, "ck")
    assert meta.mean == pytest.approx((0.5, 0.4, 0.3)) and meta.std == pytest.approx((0.2,) * 3)
    assert meta.sources["mean"] == f"ck {where}"


def test_normalisation_in_0_255_units_is_converted_and_said():
    meta = from_checkpoint({"cfg": {"pixel_mean": [123.675, 116.28, 103.53],
                                    "pixel_std": [58.395, 57.12, 57.375]}}, "ck")
    assert meta.mean == pytest.approx((0.485, 0.456, 0.406), abs=1e-6)
    assert meta.std == pytest.approx((0.229, 0.224, 0.225), abs=1e-6)
    assert any("0-255 units" in n and "divided by 255" in n for n in meta.notes)
    single = from_arguments(mean=[0.5], std=[0.25])
    assert single.mean == (0.5, 0.5, 0.5) and single.std == (0.25, 0.25, 0.25)


def test_weights_and_optimiser_state_are_not_searched():
    meta = from_checkpoint({"optimizer_states": [{"mean": [1.0, 2.0, 3.0]}],
                            "state_dict": {"mean": torch.zeros(3), "std": torch.ones(3)},
                            "callbacks": {"mean": [1, 1, 1], "std": [1, 1, 1]}}, "ck")
    assert meta.mean is None and meta.std is None


def test_mean_without_std_is_skipped_in_a_checkpoint_and_refused_as_argument():
    meta = from_checkpoint({"hparams": {"mean": [0.5, 0.5, 0.5]}}, "ck")
    assert meta.mean is None and any("hparams.mean" in n for n in meta.notes)
    with pytest.raises(ModelArgumentError, match="only one of mean/std"):
        merge_metadata(from_arguments(mean=[0.5, 0.5, 0.5]))


@pytest.mark.parametrize("value, side", [(384, 384), ("224", 224), ([256, 256], 256),
                                         ((3, 512, 512), 512), (np.array([1, 64, 64]), 64)])
def test_input_size_forms(value, side):
    for key in ("image_size", "input_size", "img_size"):
        assert from_checkpoint({"hparams": {key: value}}, "ck").input_size == side


def test_bad_checkpoint_values_are_skipped_with_a_note():
    meta = from_checkpoint({"mean": [0.5, 0.5], "std": [0.1, 0.1], "img_size": -3,
                            "classes": ["a", "a"]}, "ck")
    assert meta.mean is None and meta.input_size is None and meta.class_names is None
    assert len(meta.notes) == 3


def test_json_is_strict(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"class_names": GRADES, "mean": [0.5, 0.5], "std": [1, 1]}))
    with pytest.raises(ModelLoadError, match=r"m.json: 'mean/std': mean needs 3 values"):
        from_json(path)
    path.write_text(json.dumps({"class_names": GRADES, "positive_class": "referable DR=2,3,4",
                                "preprocessing": {"mean": [0.5] * 3, "std": [0.25] * 3},
                                "kwargs": {"drop_rate": 0.1}}))
    meta = from_json(path)
    assert meta.sources == {"class_names": "JSON m.json class_names",
                            "target": "JSON m.json positive_class",
                            "mean": "JSON m.json preprocessing.mean",
                            "std": "JSON m.json preprocessing.std",
                            "kwargs": "JSON m.json"}
    assert meta.target == "referable DR=2,3,4" and meta.kwargs == {"drop_rate": 0.1}


def test_precedence_arguments_then_json_then_checkpoint():
    args = from_arguments(class_names=["x", "y"], kwargs={"a": 1})
    js = from_checkpoint({"class_names": ["j1", "j2"], "image_size": 128,
                          "mean": [0.1] * 3, "std": [0.2] * 3}, "JSON f.json")
    js.kwargs = {"a": 2, "b": 3}
    ck = from_checkpoint({"classes": ["c1", "c2"], "image_size": 64, "positive_class": "c2",
                          "mean": [0.9] * 3, "std": [0.9] * 3}, "checkpoint w.ckpt")
    meta = merge_metadata(args, js, ck)
    assert meta.class_names == ["x", "y"] and meta.sources["class_names"] == "argument"
    assert meta.input_size == 128 and meta.sources["input_size"] == "JSON f.json image_size"
    assert meta.mean == (0.1,) * 3 and meta.sources["std"] == "JSON f.json std"
    assert meta.target == "c2" and meta.sources["target"] == "checkpoint w.ckpt positive_class"
    assert meta.kwargs == {"a": 1, "b": 3}


def test_target_key_is_read_only_at_the_top_level():
    # Nested in hyper-parameters, "target" is usually a data column ("level" in Kaggle DR).
    assert from_checkpoint({"hyper_parameters": {"target": "level"}}, "ck").target is None
    assert from_checkpoint({"target": "referable DR=2,3,4"}, "ck").target == "referable DR=2,3,4"


def test_bad_arguments_are_usage_errors():
    with pytest.raises(ModelArgumentError, match="std values must be positive"):
        from_arguments(mean=[0.5] * 3, std=[0.2, 0.0, 0.2])
    with pytest.raises(ModelArgumentError, match="class names must be non-empty and distinct"):
        from_arguments(class_names=["a", "a"])


def test_normalisation_inside_serialised_or_pickled_transforms(tmp_path):
    import torchvision.transforms as T

    from medig.models.checkpoint import read_checkpoint

    # albumentations' to_dict layout: a list of transforms, Normalize among them
    albu = {"transform": {"__class_fullname__": "Compose", "transforms": [
        {"__class_fullname__": "Resize", "height": 512, "width": 512},
        {"__class_fullname__": "Normalize", "mean": [0.5, 0.4, 0.3], "std": [0.2] * 3,
         "max_pixel_value": 255.0}]}}
    meta = from_checkpoint(albu, "ck")
    assert meta.mean == pytest.approx((0.5, 0.4, 0.3))
    assert meta.sources["mean"] == "ck transform.transforms[1].mean"
    # a pickled torchvision Compose: read as inert data, its Normalize's statistics found
    path = tmp_path / "with_transform.pt"
    torch.save({"model": {"w": torch.zeros(1)},
                "transform": T.Compose([T.Resize(64), T.Normalize([0.5, 0.4, 0.3], [0.2] * 3)])},
               path)
    meta = from_checkpoint(read_checkpoint(path).content, "ck")
    assert meta.mean == pytest.approx((0.5, 0.4, 0.3)) and meta.std == pytest.approx((0.2,) * 3)
