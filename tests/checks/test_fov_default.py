# SPDX-License-Identifier: Apache-2.0
"""The checks that take images find the field of view themselves, as the audit does."""
from __future__ import annotations

import pytest
import torch

from medig.attr import FundusIntegratedGradients
from medig.checks import deletion_curve, image_checks, occlusion_agreement
from medig.preprocess import FundusPreprocess, fov_mask
from medig.synthetic import generate
from tests.conftest import small_cnn


@pytest.fixture(scope="module")
def explained():
    raw = generate(2, 64, seed=7)[0]
    x, fov = FundusPreprocess(64)(list(raw))
    model = small_cnn(seed=1)
    explanation = FundusIntegratedGradients(model, baselines=["black", "blur"]).explain(
        x, target=1, completeness_tol=None, n_steps=8)
    return model, x, fov, explanation


def test_the_fundus_has_a_black_surround(explained):
    _, x, fov, _ = explained
    detected = fov_mask(x)
    assert 0.5 < detected.float().mean() < 0.9  # a disk, not the frame
    assert (detected == fov).float().mean() > 0.99  # the audit's field of view
    from medig.checks._grid import resolve_fov

    assert torch.equal(resolve_fov("auto", x), detected)


def test_deletion_and_occlusion_default_to_the_detected_field_of_view(explained):
    model, x, _, explanation = explained
    auto, frame = fov_mask(x), torch.ones_like(fov_mask(x))
    a = explanation.attributions
    default = deletion_curve(model, x, a, 1, steps=4)
    assert torch.equal(default.curve, deletion_curve(model, x, a, 1, auto, steps=4).curve)
    old = deletion_curve(model, x, a, 1, None, steps=4)
    assert torch.equal(old.curve, deletion_curve(model, x, a, 1, frame, steps=4).curve)
    assert not torch.equal(default.random_curve, old.random_curve)  # the corners count in None
    occ = occlusion_agreement(model, x, a, 1).agreement
    assert torch.equal(occ, occlusion_agreement(model, x, a, 1, auto).agreement)
    assert not torch.equal(occ, occlusion_agreement(model, x, a, 1, None).agreement)


def test_image_checks_default_to_the_detected_field_of_view(explained):
    model, x, _, explanation = explained
    default = image_checks(model, x, explanation)
    auto = image_checks(model, x, explanation, fov_mask(x))
    old = image_checks(model, x, explanation, None)
    assert set(default) == set(auto) and all(torch.equal(default[k], auto[k]) for k in default)
    assert not torch.equal(default["baseline_agreement"], old["baseline_agreement"])


def test_an_unknown_fov_word_is_refused():
    from medig.checks._grid import resolve_fov

    with pytest.raises(ValueError, match="'auto' or None"):
        resolve_fov("Auto", torch.zeros((1, 3, 8, 8)))
