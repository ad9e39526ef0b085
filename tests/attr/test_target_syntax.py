# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest

from medig.attr.class_group import ClassGroup
from medig.attr.target_syntax import parse_target

GRADES = ["none", "mild", "moderate", "severe", "proliferative"]
REFERABLE = ClassGroup("referable DR", [2, 3, 4])


@pytest.mark.parametrize("text, expected", [
    ("pred", None), (None, None), ("2", 2), (3, 3), ("severe", 3),
    ("referable DR=2,3,4", REFERABLE),
    ("referable DR=moderate, severe ,proliferative", REFERABLE),
    ("vision-threatening=severe,4", ClassGroup("vision-threatening", [3, 4])),
])
def test_parse_target(text, expected):
    assert parse_target(text, GRADES) == expected


def test_class_named_with_equals_sign_stays_a_class():
    assert parse_target("a=b", ["x", "a=b"]) == 1


@pytest.mark.parametrize("text, match", [
    ("7", "target 7 is out of range for 5 classes"),
    ("sever", "'sever' is not a class name; classes: none, mild"),
    ("referable DR=", "a group is NAME=C1,C2"),
    ("=2,3", "a group is NAME=C1,C2"),
    ("ref=2,,3", "a group is NAME=C1,C2"),
    ("ref=2,9", "class 9 is out of range"),
])
def test_parse_target_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_target(text, GRADES)
