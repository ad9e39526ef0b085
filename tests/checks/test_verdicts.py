# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import math

import torch

import medig
from medig.checks import TRUST_FLAGS, image_checks, image_trust_flags, thresholds, trust_flags
from medig.checks.deletion import faithfulness_output
from tests.conftest import small_cnn


def test_flags_follow_the_thresholds_and_skip_what_was_not_measured() -> None:
    assert TRUST_FLAGS == ("incomplete", "baseline-dependent", "not-faithful",
                           "evidence-outside-retina")
    low = thresholds.BASELINE_AGREEMENT_MIN - 0.01
    assert trust_flags(True, low, -0.2, outside_fov_share=0.9) == list(TRUST_FLAGS)
    edge = thresholds.OUTSIDE_SHARE_MAX
    assert trust_flags(False, outside_fov_share=edge) == []
    assert trust_flags(False, outside_fov_share=edge + 0.01) == ["evidence-outside-retina"]
    assert trust_flags(False, outside_fov_share=math.nan) == []
    assert trust_flags(False, thresholds.BASELINE_AGREEMENT_MIN, 0.01) == []
    assert trust_flags(False, None, thresholds.FAITHFULNESS_MIN) == ["not-faithful"]
    assert trust_flags(None, math.nan, math.nan) == []


def test_thresholds_are_recorded_and_documented() -> None:
    values = thresholds.as_dict()
    assert set(values) == {"baseline_agreement_min", "faithfulness_min",
                           "randomisation_max_similarity", "outside_share_max"}
    doc = thresholds.__doc__ or ""
    for name in ("BASELINE_AGREEMENT_MIN", "FAITHFULNESS_MIN", "RANDOMISATION_MAX_SIMILARITY",
                 "OUTSIDE_SHARE_MAX"):
        assert name in doc and "bench/trust.py" in doc


def test_image_checks_give_one_value_per_image_and_flags() -> None:
    model = small_cnn(seed=2)
    x = torch.rand((3, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    expl = medig.FundusIntegratedGradients(torch.nn.Sequential(model, torch.nn.Softmax(dim=1)),
                                           baselines=["black", "blur"]).explain(x, max_steps=64)
    checks = image_checks(faithfulness_output(model), x, expl, occlusion=True)
    assert set(checks) == {"baseline_agreement", "baseline_topk_overlap", "faithfulness",
                           "deletion_auc", "random_deletion_auc", "occlusion_agreement"}
    assert all(v.shape == (3,) and v.dtype == torch.float64 for v in checks.values())
    flags = image_trust_flags(expl, checks)
    expected = [trust_flags(f, a, p) for f, a, p in zip(
        expl.flagged.tolist(), checks["baseline_agreement"].tolist(),
        checks["faithfulness"].tolist())]
    assert flags == expected
    one = medig.FundusIntegratedGradients(model).explain(x, max_steps=64)
    assert "baseline_agreement" not in image_checks(model, x, one, faithfulness=False)


def test_incomplete_is_the_completeness_flag() -> None:
    assert trust_flags(True) == ["incomplete"] and trust_flags(False) == []


def test_image_checks_fill_with_the_explanations_blur_and_match_a_fresh_one(monkeypatch) -> None:
    from medig import baselines
    from medig.checks import deletion_curve, occlusion_agreement

    model = small_cnn(seed=3)
    x = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    expl = medig.FundusIntegratedGradients(torch.nn.Sequential(model, torch.nn.Softmax(dim=1)),
                                           baselines=["black", "blur"]).explain(x, max_steps=64)
    assert torch.equal(expl.baseline_input("blur"), baselines.blur(x))
    assert expl.baseline_input("uniform") is None
    forward = faithfulness_output(model)
    fresh_deletion = deletion_curve(forward, x, expl.attributions, expl.target, fill="blur")
    fresh_occlusion = occlusion_agreement(forward, x, expl.attributions, expl.target, fill="blur")
    calls = []
    real = baselines.get_baseline
    monkeypatch.setattr(baselines, "get_baseline", lambda n: calls.append(n) or real(n))
    checks = image_checks(forward, x, expl, occlusion=True)
    assert calls == []  # the blurred image was not recomputed
    assert torch.equal(checks["faithfulness"], fresh_deletion.faithfulness.double().cpu())
    assert torch.equal(checks["occlusion_agreement"],
                       fresh_occlusion.agreement.double().cpu())
