# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest

from medig.cli import build_parser, parse_model_args


def test_model_args_are_json_literals_where_possible():
    assert parse_model_args(["image_size=384", "pretrained=false", "arch=\"swin_t\"",
                             "depths=[2, 2, 6, 2]", "name=swin_t", "scale=0.5", "empty="]) == {
        "image_size": 384, "pretrained": False, "arch": "swin_t", "depths": [2, 2, 6, 2],
        "name": "swin_t", "scale": 0.5, "empty": ""}


@pytest.mark.parametrize("item", ["image_size", "=3", "2x=1", "a b=1"])
def test_bad_model_args_name_the_item(item):
    with pytest.raises(ValueError, match=f"--model-arg {item!r}: expected KEY=VALUE"):
        parse_model_args([item])


def test_metadata_flags_parse():
    args = build_parser().parse_args([
        "audit", "in", "--out", "o", "--mean", "0.485", "0.456", "0.406", "--std", "58.4",
        "57.1", "57.4", "--input-size", "384", "--model-arg", "a=1", "b=2", "--model-arg", "c=3",
        "--target", "referable DR=2,3,4"])
    assert args.mean == [0.485, 0.456, 0.406] and args.std == [58.4, 57.1, 57.4]
    assert args.input_size == 384 and args.model_arg == ["a=1", "b=2", "c=3"]
    assert args.target == "referable DR=2,3,4"
    assert build_parser().parse_args(["audit", "in", "--out", "o"]).target is None
