# SPDX-License-Identifier: Apache-2.0
"""Audit step ``Localise``: lesion-mask figures from the stored map and the mask each name has now."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from medig.audit.localisation import localisation
from medig.audit.steps import batch_steps
from medig.audit.steps.localisation import LOCALISATION_FIELDS, Localise
from medig.audit.store import DamagedWorkError
from medig.preprocess import crop_boxes
from medig.synthetic import generate
from tests.audit.steps.kit import PHOTO, SIZE, finished, make_batch, make_context, settings


def _save_mask(path, mask: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(path)


@pytest.fixture
def audited(tmp_path):
    """Three explained and stored photographs with lesions; masks for the first two (the second
    of another size than its photograph), none for the third."""
    ctx = make_context(tmp_path / "out", settings(mask_dilation=2))
    pixels, masks, _ = generate(3, size=PHOTO, seed=3, p_disease=1.0)
    masks_dir = tmp_path / "in" / "masks"
    batch = make_batch(ctx, tmp_path / "in", pixels=list(pixels), masks_dir=masks_dir)
    items = list(batch.inputs)
    _save_mask(masks_dir / "img0.png", masks[0, 0])
    _save_mask(masks_dir / "img1.png", masks[1, 0, :100])
    for step in batch_steps(ctx):
        step(batch)
    rows = [{"status": "ok", "path": it.rel} for it in items]
    return ctx, items, batch, masks, rows


def test_figures_are_those_of_the_map_against_the_cropped_mask(audited) -> None:
    ctx, items, batch, masks, rows = audited
    rows.append({"status": "error", "path": "other.png"})  # untouched
    Localise()(finished(ctx, items, rows, batch.keys))
    lesion = crop_boxes(masks[:1], batch.boxes[:1], SIZE, mode="nearest")[0]
    expected = localisation(batch.maps[0], lesion, batch.fov[0], dilation=2)
    assert expected["mask_mass_fraction"] is not None  # the premise: a lesion in the field
    assert rows[0]["pointing_hit"] == expected["pointing_hit"]
    for name in ("mask_mass_fraction", "mask_area_fraction"):
        assert rows[0][name] == pytest.approx(expected[name], abs=2e-3)  # map stored in float16
    assert all(rows[j][k] is None for j in (1, 2) for k in LOCALISATION_FIELDS)
    assert "pointing_hit" not in rows[3]


def test_the_mask_of_this_run_counts_not_the_one_of_the_run_that_stored_the_map(audited) -> None:
    ctx, items, batch, masks, rows = audited
    Localise()(finished(ctx, items, rows, batch.keys))
    first = dict(rows[0])
    _save_mask(items[0].masks_dir / "img0.png", torch.zeros(PHOTO, PHOTO, dtype=torch.bool))
    again = [{"status": "ok", "path": it.rel} for it in items]
    Localise()(finished(ctx, items, again, batch.keys))
    assert first["mask_mass_fraction"] is not None
    assert all(again[0][k] is None for k in LOCALISATION_FIELDS)  # an empty mask: no figures


def test_damaged_stored_work_is_sent_back_to_be_computed_again(audited, caplog) -> None:
    ctx, items, batch, _, rows = audited
    ctx.store.array_path(batch.keys[0], 0).write_bytes(b"not an npz")
    with caplog.at_level(logging.WARNING, logger="medig"), \
            pytest.raises(DamagedWorkError) as raised:
        Localise()(finished(ctx, items, rows, batch.keys))
    # the audit recomputes exactly the damaged input (its figures are never guessed)
    assert raised.value.keys == {batch.keys[0]}
    assert "unreadable" in caplog.text and "computed again" in caplog.text
