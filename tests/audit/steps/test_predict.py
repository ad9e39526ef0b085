# SPDX-License-Identifier: Apache-2.0
"""Batch step ``Predict``: float64 class probabilities and the class (or group) explained."""
from __future__ import annotations

import pytest
import torch

from medig.audit.steps.predict import Predict
from medig.audit.steps.preprocess import Preprocess
from tests.audit.steps.kit import make_batch, make_context, settings
from tests.audit.tiny_models import make_tiny


def _predicted(tmp_path, **changes):
    ctx = make_context(tmp_path / "out", settings(**changes))
    batch = make_batch(ctx, tmp_path / "in", n=3, seed=7)
    Preprocess(ctx)(batch)
    Predict(ctx)(batch)
    return ctx, batch


def _softmax(images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # an independent copy of the model
        return torch.softmax(make_tiny()(images).double(), dim=1)


def test_probabilities_are_the_softmax_of_the_logits(tmp_path) -> None:
    _, batch = _predicted(tmp_path)
    assert batch.probs.dtype == torch.float64 and batch.probs.shape == (3, 2)
    assert torch.allclose(batch.probs, _softmax(batch.images), rtol=0, atol=1e-12)
    assert torch.allclose(batch.probs.sum(dim=1), torch.ones(3, dtype=torch.float64))
    assert not batch.probs.requires_grad


def test_without_a_target_each_image_is_explained_for_its_predicted_class(tmp_path) -> None:
    _, batch = _predicted(tmp_path, target="pred")
    assert torch.equal(batch.target, _softmax(batch.images).argmax(dim=1))
    assert all("target" not in f for f in batch.fields)  # the row names the class itself


@pytest.mark.parametrize("spec, index", [("referable", 1), ("0", 0)])
def test_a_fixed_class_is_explained_for_every_image(tmp_path, spec, index) -> None:
    _, batch = _predicted(tmp_path, target=spec)
    assert batch.target.tolist() == [index] * 3 and batch.target.dtype == torch.long


def test_a_group_is_column_zero_of_the_group_forward_and_named_in_the_rows(tmp_path) -> None:
    ctx, batch = _predicted(tmp_path, target="sick=1")
    assert batch.target.tolist() == [0, 0, 0]
    # column 0 of the explained forward is P(group): here the probability of class 1
    with torch.no_grad():
        group = ctx.forward(batch.images)
    assert group.shape == (3, 1)
    assert torch.allclose(group[:, 0].double(), batch.probs[:, 1], atol=1e-6)
    for fields in batch.fields:
        assert fields["target"] == "sick" and fields["target_index"] is None
        assert fields["target_members"] == ["referable"]
