# SPDX-License-Identifier: Apache-2.0
"""Batch steps ``Preprocess`` (model input, field of view, crop boxes, quality verdicts) and
``Laterality`` (the DICOM eye)."""
from __future__ import annotations

import pytest
import torch

from medig.audit.steps.preprocess import Laterality, Preprocess
from medig.preprocess import FundusPreprocess, assess_quality
from tests.audit.steps.kit import SIZE, make_batch, make_context, photographs, settings


@pytest.mark.parametrize("graham", [False, True])
def test_images_fov_and_boxes_are_those_of_fundus_preprocess(tmp_path, graham) -> None:
    ctx = make_context(tmp_path / "out", settings(graham=graham))
    # photographs of two sizes: preprocessed in groups, written back in order
    pixels = [*photographs(2, seed=1), photographs(1, seed=2, size=128)[0]]
    batch = make_batch(ctx, tmp_path / "in", pixels=pixels)
    Preprocess(ctx)(batch)
    images, fov, boxes = FundusPreprocess(size=SIZE, graham=graham).forward_with_boxes(pixels)
    assert batch.images.shape == (3, 3, SIZE, SIZE) and batch.fov.dtype == torch.bool
    assert torch.equal(batch.images, images)
    assert torch.equal(batch.fov, fov)
    assert torch.equal(batch.boxes, boxes)


def test_quality_verdicts_are_those_of_assess_quality_on_the_photographs(tmp_path) -> None:
    ctx = make_context(tmp_path / "out")
    white = torch.full((3, 140, 180), 255, dtype=torch.uint8)  # no retina: ungradeable
    pixels = [*photographs(2, seed=3), white]
    batch = make_batch(ctx, tmp_path / "in", pixels=pixels)
    Preprocess(ctx)(batch)
    expected = assess_quality(pixels).rows()  # its own field-of-view detection
    assert batch.quality == expected
    assert [q["quality"] for q in batch.quality] == ["gradeable", "gradeable", "ungradeable"]
    assert batch.fields == [{}, {}, {}]  # the verdicts reach the rows through Quality


def test_quality_off_measures_nothing(tmp_path) -> None:
    ctx = make_context(tmp_path / "out", settings(quality="off"))
    batch = make_batch(ctx, tmp_path / "in", n=2)
    Preprocess(ctx)(batch)
    assert batch.quality is None and batch.images.shape[0] == 2


@pytest.mark.parametrize("metadata, expected", [
    ({"format": "dicom", "ImageLaterality": "l "}, "L"),  # padded, any case
    ({"format": "dicom", "ImageLaterality": "X", "Laterality": "R"}, "R"),  # not DICOM's: next
    ({"format": "dicom", "ImageLaterality": "B"}, "B"),
    ({"format": "dicom", "Laterality": "left"}, None),  # says nothing: the name may tell
    ({"format": "png"}, None),
])
def test_laterality_from_the_dicom_attributes(tmp_path, metadata, expected) -> None:
    ctx = make_context(tmp_path / "out")
    batch = make_batch(ctx, tmp_path / "in", n=1)
    batch.metadata = [metadata]
    batch.fields[0]["laterality"] = "stale"
    Laterality()(batch)
    assert batch.fields[0]["laterality"] == expected
