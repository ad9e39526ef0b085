# SPDX-License-Identifier: Apache-2.0
"""``ImageBatch``: per-image attributes stay aligned when images leave the batch (``drop``)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from medig.audit.steps import ImageBatch, batch_steps
from tests.audit.steps.kit import make_batch, make_context, settings


@pytest.fixture
def full(tmp_path) -> ImageBatch:
    """A batch of 3 that went through every batch step (two baselines: lists of tensors)."""
    ctx = make_context(tmp_path / "out", settings(baselines=("black", "blur")))
    batch = make_batch(ctx, tmp_path / "in", n=3)
    for step in batch_steps(ctx):
        step(batch)
    for j, fields in enumerate(batch.fields):
        fields["marker"] = j  # which image a row belongs to, whatever the order
    return batch


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    return a == b


def test_new_batch_has_one_empty_field_dict_per_image(tmp_path) -> None:
    ctx = make_context(tmp_path / "out")
    batch = make_batch(ctx, tmp_path / "in", n=2)
    assert len(batch) == 2 and batch.fields == [{}, {}]
    batch.fields[0]["x"] = 1
    assert batch.fields[1] == {}  # one dict per image, not one shared


@pytest.mark.parametrize("gone", [[1], [2, 0], [0, 1, 2]])
def test_drop_keeps_every_per_image_attribute_aligned(full, gone) -> None:
    before = copy.copy(full)
    expl = full.explanation
    keep = [j for j in range(3) if j not in gone]
    rows = [{"status": "skipped", "error": None, "why": j} for j in gone]
    full.drop(gone, rows)

    assert len(full) == len(keep)
    for name in ("inputs", "frames", "keys", "pixels", "metadata", "masks", "fields", "quality"):
        kept = getattr(full, name)
        assert len(kept) == len(keep)
        assert all(_same(k, getattr(before, name)[j]) for k, j in zip(kept, keep)), name
    for name in ("images", "fov", "boxes", "probs", "target", "maps"):
        assert torch.equal(getattr(full, name), getattr(before, name)[keep]), name
    assert [f["marker"] for f in full.fields] == keep

    # The explanation: every per-image tensor and list of tensors, and nothing else.
    for f in dataclasses.fields(expl):
        old, new = getattr(expl, f.name), getattr(full.explanation, f.name)
        if isinstance(old, torch.Tensor):
            assert torch.equal(new, old[keep]), f.name
        elif isinstance(old, list) and old and isinstance(old[0], torch.Tensor):
            assert len(new) == len(old) and all(torch.equal(n, o[keep]) for n, o in zip(new, old))
        else:
            assert new == old, f.name  # method, baseline names, tolerances
    assert full.explanation.baselines == ["black", "blur"]

    # The images taken out: their own input, frame, key and fields, with their final row on top.
    assert [(it.rel, k) for it, _, k, _ in full.finished] == \
        [(before.inputs[j].rel, before.keys[j]) for j in gone]
    for (_, frame, _, row), j in zip(full.finished, gone):
        assert frame is None and row["marker"] == j and row["why"] == j
        assert row["status"] == "skipped" and row["quality"] == before.quality[j]["quality"]


def test_drop_twice_accumulates_and_indexes_the_current_batch(full) -> None:
    rels = [it.rel for it in full.inputs]
    full.drop([0], [{"status": "skipped"}])
    full.drop([1], [{"status": "skipped"}])  # index 1 of the remaining two: the original 2
    assert [it.rel for it in full.inputs] == [rels[1]]
    assert [it.rel for it, *_ in full.finished] == [rels[0], rels[2]]
    assert full.probs.shape[0] == full.explanation.attributions.shape[0] == 1


def test_drop_before_the_later_steps_leaves_them_none(tmp_path) -> None:
    ctx = make_context(tmp_path / "out")
    batch = make_batch(ctx, tmp_path / "in", n=3)
    batch_steps(ctx)[0](batch)  # Preprocess only
    batch.drop([1], [{"status": "skipped"}])
    assert batch.images.shape[0] == batch.fov.shape[0] == batch.boxes.shape[0] == 2
    assert batch.probs is None and batch.explanation is None and batch.maps is None
