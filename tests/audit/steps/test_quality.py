# SPDX-License-Identifier: Apache-2.0
"""Batch step ``Quality`` (``--quality flag | skip | off``) and audit step ``QualitySummary``."""
from __future__ import annotations

import pytest
import torch

from medig.audit.steps.preprocess import Preprocess
from medig.audit.steps.quality import Quality, QualitySummary
from medig.preprocess import QUALITY_FIELDS, assess_quality
from tests.audit.steps.kit import finished, make_batch, make_context, photographs, settings

WHITE = torch.full((3, 140, 180), 255, dtype=torch.uint8)  # a blank frame: ungradeable


def _batch(tmp_path, mode: str):
    ctx = make_context(tmp_path / "out", settings(quality=mode))
    pixels = [photographs(1, seed=4)[0], WHITE, photographs(1, seed=5)[0]]
    batch = make_batch(ctx, tmp_path / "in", pixels=pixels)
    Preprocess(ctx)(batch)
    return ctx, batch, pixels


def test_flag_puts_each_verdict_in_its_row_and_keeps_every_image(tmp_path) -> None:
    ctx, batch, pixels = _batch(tmp_path, "flag")
    Quality(ctx)(batch)
    expected = assess_quality(pixels).rows()
    assert len(batch) == 3 and not batch.finished
    for fields, verdict in zip(batch.fields, expected):
        assert {k: fields[k] for k in QUALITY_FIELDS} == verdict
    assert [f["quality"] for f in batch.fields] == ["gradeable", "ungradeable", "gradeable"]


def test_skip_takes_the_images_that_are_not_gradeable_out(tmp_path) -> None:
    ctx, batch, pixels = _batch(tmp_path, "skip")
    rels = [it.rel for it in batch.inputs]
    Quality(ctx)(batch)
    assert [it.rel for it in batch.inputs] == [rels[0], rels[2]]
    assert batch.images.shape[0] == 2 and len(batch.quality) == 2
    [(item, frame, key, row)] = batch.finished
    assert item.rel == rels[1] and frame is None
    assert row["status"] == "skipped" and row["error"] is None  # not an error
    assert {k: row[k] for k in QUALITY_FIELDS} == assess_quality([pixels[1]]).rows()[0]


def test_off_leaves_the_rows_alone(tmp_path) -> None:
    ctx = make_context(tmp_path / "out", settings(quality="off"))
    batch = make_batch(ctx, tmp_path / "in", pixels=[WHITE])
    Preprocess(ctx)(batch)
    Quality(ctx)(batch)
    assert batch.fields == [{}] and len(batch) == 1


def test_an_unknown_mode_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="quality must be one of flag, skip, off, got 'drop'"):
        Quality(make_context(tmp_path / "out", settings(quality="drop")))


def test_summary_counts_the_verdicts_into_the_manifest(tmp_path) -> None:
    ctx = make_context(tmp_path / "out", settings(quality="skip"))
    rows = [{"status": "ok", "quality": "gradeable"}, {"status": "skipped", "quality": "not_fundus"},
            {"status": "skipped", "quality": "ungradeable"}, {"status": "ok", "quality": "gradeable"},
            {"status": "error", "quality": None}]
    audit = finished(ctx, [], rows)
    QualitySummary()(audit)
    summary = audit.manifest["quality"]
    assert summary["mode"] == "skip"
    assert (summary["gradeable"], summary["ungradeable"], summary["not_fundus"]) == (2, 1, 1)
    assert summary["skipped"] == 2
