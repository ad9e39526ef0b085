# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medig.visualize import (
    abs_quantiles,
    attribution_map,
    clip_value,
    cohort_clip_value,
    legend_strip,
    overlay,
    save_png,
    side_by_side,
)

H = W = 32


def _scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uniform mid-grey image; + region top-left, - region top-right, zero elsewhere; FOV = left 3/4."""
    image = torch.full((3, H, W), 0.5)
    attr = torch.zeros(3, H, W)
    attr[:, 2:10, 2:10] = 1.0  # channel sum +3
    attr[:, 2:10, 14:22] = -1.0  # channel sum -3
    fov = torch.zeros(1, H, W, dtype=torch.bool)
    fov[:, :, : 3 * W // 4] = True
    return image, attr, fov


def test_attribution_map_sums_channels_and_keeps_kind() -> None:
    a = torch.randn(2, 3, 5, 6)
    m = attribution_map(a)
    assert m.shape == (2, 1, 5, 6)
    torch.testing.assert_close(m[:, 0], a.sum(1))
    assert attribution_map(a[0].numpy()).shape == (1, 5, 6)
    with pytest.raises(ValueError):
        attribution_map(torch.zeros(5, 6))


def test_overlay_colours_sign_grey_and_fov() -> None:
    image, attr, fov = _scene()
    amap = attribution_map(attr)
    out = overlay(image, amap, fov, clip=3.0)
    assert out.dtype == torch.uint8 and out.shape == (3, H, W)
    r, g, b = (out[c].int() for c in range(3))
    # positive: green saturated, red/blue at zero (alpha = 1 at |a| = clip)
    assert (
        (g[2:10, 2:10] == 255).all() and (r[2:10, 2:10] == 0).all() and (b[2:10, 2:10] == 0).all()
    )
    # negative: red
    assert (r[2:10, 14:22] == 255).all() and (g[2:10, 14:22] == 0).all()
    # zero attribution inside FOV: neutral grey, dimmed (0.5 * 0.6 * 255 = 76.5)
    zero = out[:, 20:30, 2:20].int()
    assert (zero[0] == zero[1]).all() and (zero[1] == zero[2]).all()
    assert 70 <= int(zero[0, 0, 0]) <= 83
    # outside FOV: the frame is drawn, dimmed further (0.5 * 0.6 * 0.5 * 255 = 38), not black
    outside = out[:, 20:30, 3 * W // 4 + 1 :].int()
    assert (outside[0] == outside[1]).all() and (outside[1] == outside[2]).all()
    assert 33 <= int(outside[0, 0, 0]) <= 43
    # the FOV border: the last column of the FOV, in blue, from top to bottom of the frame
    border = out[:, :, 3 * W // 4 - 1].int()
    assert (border[2] > border[0] + 80).all() and (border[2] > border[1] + 40).all()
    assert (out[2, :, 3 * W // 4 - 2].int() == out[0, :, 3 * W // 4 - 2].int()).all()


def test_overlay_draws_evidence_outside_the_fov() -> None:
    image, _, fov = _scene()
    attr = torch.zeros(1, H, W)
    attr[:, 2:6, 28:31] = 2.0  # a corner stamp outside the FOV
    out = overlay(image, attr, fov, clip=2.0)
    assert (out[1, 2:6, 28:31] == 255).all() and (out[0, 2:6, 28:31] == 0).all()


def test_fov_border_skips_the_frame_edge() -> None:
    from medig.visualize import fov_border

    m = np.zeros((8, 8), dtype=bool)
    m[:, :4] = True  # touches the top, bottom and left edges of the frame
    edge = fov_border(m)
    assert edge[:, 3].all() and not edge[:, :3].any() and not edge[:, 4:].any()


def test_overlay_is_monotone_in_magnitude_and_handles_zero_clip() -> None:
    image = np.full((3, 1, 5), 0.5, dtype=np.float32)
    amap = np.array([[[0.0, 0.25, 0.5, 1.0, 2.0]]])
    out = overlay(image, amap, None, clip=1.0)
    assert isinstance(out, np.ndarray)
    g = out[1, 0].astype(int)
    assert list(g) == sorted(g) and g[3] == g[4] == 255  # saturates at clip
    r = out[0, 0].astype(int)
    assert r[0] > r[1] > r[2] > r[3] == 0  # grey fades as green takes over
    flat = overlay(image, amap, None, clip=0.0)
    assert (flat[0] == flat[1]).all()  # no colour without a scale


def test_cohort_scale_is_consistent_across_images_per_image_is_not() -> None:
    rng = np.random.default_rng(0)
    fov = np.ones((1, 16, 16), dtype=bool)
    a1 = rng.normal(0, 1.0, (1, 16, 16))
    a2 = rng.normal(0, 5.0, (1, 16, 16))
    a1[0, 0, 0] = a2[0, 0, 0] = 0.8  # same attribution value in both images
    image = np.full((3, 16, 16), 0.5)
    cohort = cohort_clip_value([abs_quantiles(a1, fov), abs_quantiles(a2, fov)])
    o1, o2 = overlay(image, a1, fov, cohort), overlay(image, a2, fov, cohort)
    assert (o1[:, 0, 0] == o2[:, 0, 0]).all()
    p1, p2 = (
        overlay(image, a1, fov, clip_value(a1, fov)),
        overlay(image, a2, fov, clip_value(a2, fov)),
    )
    assert p1[1, 0, 0] > p2[1, 0, 0] + 20  # the same value looks much weaker on the noisier image


@pytest.mark.parametrize("percentile", [50.0, 99.0, 99.5, 100.0])
def test_cohort_clip_matches_pooled_percentile(percentile: float) -> None:
    rng = np.random.default_rng(1)
    maps = [rng.laplace(0, s, (1, 48, 48)) for s in (0.1, 1.0, 3.0, 0.5)]
    fov = np.zeros((1, 48, 48), dtype=bool)
    fov[:, 4:44, 4:44] = True
    sketches = [abs_quantiles(m, fov) for m in maps]
    pooled = np.concatenate([np.abs(m[fov]) for m in maps])
    expected = np.percentile(pooled, percentile)
    got = cohort_clip_value(sketches, percentile)
    assert got == pytest.approx(expected, rel=0.02)
    # deterministic and independent of the order in which workers report
    assert cohort_clip_value(sketches[::-1], percentile) == got


def test_cohort_clip_ignores_empty_fov_and_single_image_equals_clip_value() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(1, 20, 20))
    fov = np.ones((1, 20, 20), dtype=bool)
    empty = abs_quantiles(a, np.zeros_like(fov))
    assert np.isnan(empty).all() and clip_value(a, np.zeros_like(fov)) == 0.0
    assert cohort_clip_value([abs_quantiles(a, fov), empty]) == pytest.approx(
        clip_value(a, fov), rel=1e-6
    )
    assert cohort_clip_value([]) == 0.0
    with pytest.raises(ValueError):
        clip_value(a, fov, percentile=101)


def test_side_by_side_and_save_png_roundtrip(tmp_path) -> None:
    image, attr, fov = _scene()
    ov = overlay(image, attribution_map(attr), fov, clip=3.0)
    sbs = side_by_side(image, ov, gap=6)
    assert sbs.shape == (3, H, 2 * W + 6) and sbs.dtype == torch.uint8
    assert (sbs[:, :, W : W + 6] == 255).all()
    torch.testing.assert_close(sbs[:, :, W + 6 :], ov)
    path = save_png(tmp_path / "sub" / "x.png", sbs)
    back = np.asarray(Image.open(path)).transpose(2, 0, 1)
    np.testing.assert_array_equal(back, sbs.numpy())
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(ValueError):
        side_by_side(image, ov[:, :10])


def test_legend_strip_runs_red_to_green() -> None:
    strip = legend_strip(width=64, height=4)
    assert strip.shape == (3, 4, 64)
    assert strip[0, 0, 0] == 255 and strip[1, 0, 0] == 0
    assert strip[1, 0, -1] == 255 and strip[0, 0, -1] == 0
