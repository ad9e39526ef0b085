# SPDX-License-Identifier: Apache-2.0
"""Degradations of known severity: each does what its severity says, deterministically."""
from __future__ import annotations

import pytest
import torch

from medig.preprocess import circle_mask, detect_fov_circles
from medig.synthetic import generate
from medig.synthetic.degrade import (
    DEGRADATIONS,
    NORMAL_EXPOSURE,
    SEVERITIES,
    _to_linear,
    defocus,
    degrade,
    full_frame_crop,
    over_expose,
    small_pupil,
    under_expose,
)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return generate(3, size=160, seed=4)[0]


@pytest.fixture(scope="module")
def masks(images) -> torch.Tensor:
    return circle_mask(detect_fov_circles(images), 160, 160)


def share(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values & mask[:, 0]).flatten(1).sum(1) / mask.flatten(1).sum(1)


def test_over_exposure_washes_out_the_declared_share(images, masks):
    for clipped in (0.2, 0.5, 0.8):
        out = over_expose(images, clipped)
        second = out.sort(dim=1).values[:, 1]  # second-brightest channel at full scale
        measured = share(second == 255, masks)
        assert torch.allclose(measured, torch.full((3,), clipped), atol=0.03), measured
    torch.testing.assert_close(over_expose(images, 0.0), images)


def test_under_exposure_is_stops_below_a_normal_exposure(images, masks):
    def median_top(x):  # median linear level of the brightest channel in the field
        lin = _to_linear(x.float() / 255).amax(dim=1)
        return torch.stack([lin[i][masks[i, 0]].median() for i in range(len(x))])

    normal = under_expose(images, 0.0, noise=0.0)
    torch.testing.assert_close(median_top(normal), torch.full((3,), NORMAL_EXPOSURE), atol=0.01,
                               rtol=0)
    three = median_top(under_expose(images, 3.0, noise=0.0))
    torch.testing.assert_close(three, torch.full((3,), NORMAL_EXPOSURE / 8), atol=0.003, rtol=0)
    a, b = under_expose(images, 6.0, seed=1), under_expose(images, 6.0, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, under_expose(images, 6.0, seed=2))


def test_defocus_blurs_inside_the_field_only(images, masks):
    out = defocus(images, 0.01)
    inside = masks.expand(-1, 3, -1, -1)
    c = detect_fov_circles(images)
    core = circle_mask(torch.cat([c[:, :2], c[:, 2:] * 0.9], 1), 160, 160).expand(-1, 3, -1, -1)

    def energy(x):  # high-frequency energy inside the field, away from its edge
        d = x.float().diff(dim=-1)[..., :-1, :] ** 2
        return (d * core[..., :-1, :-1]).sum()

    assert energy(out) < 0.2 * energy(images)
    assert torch.equal(out[~inside], images[~inside])  # the surround and aperture untouched
    torch.testing.assert_close(defocus(images, 0.0), images)


def test_small_pupil_darkens_the_declared_part_of_the_radius(images, masks):
    out = small_pupil(images, 0.5)
    c = detect_fov_circles(images)
    inner = circle_mask(torch.cat([c[:, :2], c[:, 2:] * 0.45], 1), 160, 160)
    outer = masks & ~circle_mask(torch.cat([c[:, :2], c[:, 2:] * 0.75], 1), 160, 160)
    # lit as before inside (1 - dark) r, dark (2% of the light plus a faint haze) beyond
    assert torch.equal(out.expand_as(images)[inner.expand(-1, 3, -1, -1)],
                       images[inner.expand(-1, 3, -1, -1)])
    ratio = out.float().amax(1)[outer[:, 0]].mean() / images.float().amax(1)[outer[:, 0]].mean()
    assert ratio < 0.35


def test_full_frame_crop_has_no_black_border(images):
    out = full_frame_crop(images, 0.9)
    assert out.shape == (3, 3, 160, round(160 * 4 / 3))
    corners = out[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert bool((corners.amax(dim=1) > 30).all())  # retina to the corners
    with pytest.raises(ValueError, match="scale"):
        full_frame_crop(images, 1.5)


def test_declared_severities_and_registry_agree(images):
    assert set(SEVERITIES) == set(DEGRADATIONS)
    for name, declared in SEVERITIES.items():
        assert set(declared) == {"gradeable", "ungradeable"}
        gradeable, ungradeable = declared["gradeable"], declared["ungradeable"]
        if ungradeable:  # a gap of undecided severities between the two
            assert max(gradeable) < min(ungradeable)
        out = degrade(images, name, gradeable[-1], seed=0)
        assert out.dtype == torch.uint8 and out.shape[:2] == (3, 3)
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(images, "blur", 1.0)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        over_expose(images[0], 0.5)
