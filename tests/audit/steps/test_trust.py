# SPDX-License-Identifier: Apache-2.0
"""Batch step ``TrustChecks``: the per-image check columns are those of
:func:`medig.checks.image_checks`, and ``trust_flags`` those of :func:`medig.checks.trust_flags`."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medig.audit.steps.explain import Explain
from medig.audit.steps.predict import Predict
from medig.audit.steps.preprocess import Preprocess
from medig.audit.steps.trust import TrustChecks, trust_steps
from medig.checks import image_checks, trust_flags
from medig.checks.deletion import faithfulness_output
from tests.audit.steps.kit import make_batch, make_context, settings
from tests.audit.tiny_models import make_tiny

CHECKS = ("baseline_agreement", "baseline_topk_overlap", "faithfulness", "deletion_auc",
          "random_deletion_auc")


def _explained(tmp_path, model=None, **changes):
    ctx = make_context(tmp_path / "out", settings(baselines=("black", "blur"), **changes),
                       model=model)
    batch = make_batch(ctx, tmp_path / "in", n=3, seed=9)
    for step in (Preprocess(ctx), Predict(ctx), Explain(ctx)):
        step(batch)
    return ctx, batch


def _six_digits(value: float) -> bool:
    return value == float(f"{value:.6g}")


@pytest.mark.parametrize("output", ["probability", "logit"])
def test_columns_are_those_of_image_checks(tmp_path, output) -> None:
    ctx, batch = _explained(tmp_path, output=output, cross_check=("occlusion",))
    assert [type(s) for s in trust_steps(ctx)] == [TrustChecks]
    TrustChecks(ctx)(batch)
    expected = image_checks(faithfulness_output(make_tiny(), output), batch.images,
                            batch.explanation, batch.fov, occlusion=True)
    assert set(expected) == {*CHECKS, "occlusion_agreement"}
    for name, values in expected.items():
        for fields, value in zip(batch.fields, values.tolist()):
            assert fields[name] == pytest.approx(value, rel=1e-5, abs=1e-9), name
            assert _six_digits(fields[name])  # rounded: byte-identical across batchings
    for fields, incomplete in zip(batch.fields, batch.explanation.flagged.tolist()):
        assert fields["trust_flags"] == trust_flags(incomplete, fields["baseline_agreement"],
                                                    fields["faithfulness"])


def test_checks_off_still_flags_incomplete_maps(tmp_path) -> None:
    # Two steps cannot meet a tight tolerance: every image is incomplete.
    ctx, batch = _explained(tmp_path, trust_checks=False, max_steps=2, completeness_tol=1e-6,
                            completeness_atol=1e-9)
    assert batch.explanation.flagged.all()
    TrustChecks(ctx)(batch)
    for fields in batch.fields:
        assert not any(name in fields for name in (*CHECKS, "occlusion_agreement"))
        assert fields["trust_flags"] == ["incomplete"]


def test_occlusion_alone_without_the_other_checks(tmp_path) -> None:
    ctx, batch = _explained(tmp_path, trust_checks=False, cross_check=("occlusion",))
    TrustChecks(ctx)(batch)
    assert all(isinstance(f["occlusion_agreement"], float) for f in batch.fields)
    assert not any("faithfulness" in f for f in batch.fields)


class Constant(nn.Module):
    """An output that never moves: the deletion check has nothing to measure."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.sum(dim=(1, 2, 3)) * 0.0, x.sum(dim=(1, 2, 3)) * 0.0 + 1.0], dim=1)


def test_a_figure_that_cannot_be_measured_is_none_and_raises_no_flag(tmp_path) -> None:
    ctx, batch = _explained(tmp_path, model=Constant(), output="logit")
    columns = image_checks(faithfulness_output(Constant(), "logit"), batch.images,
                           batch.explanation, batch.fov)
    assert all(math.isnan(v) for v in columns["faithfulness"].tolist())  # the premise
    TrustChecks(ctx)(batch)
    for fields in batch.fields:
        assert fields["faithfulness"] is None  # NaN is not JSON: None
        assert "not-faithful" not in fields["trust_flags"]

