# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch

from medig.preprocess import circle_mask, gaussian_blur_masked, graham

S = 96


def _disk_mask(n: int = 1) -> torch.Tensor:
    return circle_mask(torch.tensor([[48.0, 48.0, 44.0]] * n), S, S)


def test_flat_disk_gives_half_everywhere_inside_and_fill_outside() -> None:
    m = _disk_mask()
    img = torch.where(m, torch.tensor([0.7, 0.35, 0.15]).view(1, 3, 1, 1), 0.0)
    out, kept = graham(img, m, return_mask=True)
    assert out.shape == img.shape and out.dtype == torch.float32
    # Normalised blur: no bright ring at the rim, the whole disk is 0.5 (a plain blur fails this).
    torch.testing.assert_close(out[kept.expand_as(out)], torch.full((int(kept.sum()) * 3,), 0.5),
                               atol=1e-4, rtol=0)
    assert (out[~kept.expand_as(out)] == 0.5).all()
    assert kept.sum() < m.sum() and not (kept & ~m).any()  # 95% of the radius, inside the mask


def test_output_range_fill_and_lesion_contrast() -> None:
    g = torch.Generator().manual_seed(0)
    m = _disk_mask(2)
    img = torch.rand(2, 3, S, S, generator=g) * m
    img[:, :, 40:46, 40:46] = 0.05  # a dark lesion on a bright disk
    img[:, :, 40:46, 40:46] *= m[:, :, 40:46, 40:46]
    out = graham(img, m, radius_scale=1.0, fill=0.0)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out[~m.expand_as(out)] == 0).all()
    assert out[:, :, 41:45, 41:45].mean() < 0.2  # dark lesion pushed towards 0 (4x contrast)


def test_masked_blur_ignores_outside_and_is_gaussian() -> None:
    m = _disk_mask()
    x = torch.zeros(1, 1, S, S)
    x[0, 0, 48, 48] = 1.0
    y = gaussian_blur_masked(x, torch.ones_like(m), sigma=3.0)
    assert abs(y.sum().item() - 1.0) < 1e-4  # mass preserved away from the border
    col = y[0, 0, :, 48]
    var = ((torch.arange(S) - 48.0) ** 2 * col).sum() / col.sum()
    assert abs(var.item() - 9.0) < 0.05  # 4-sigma truncation loses < 0.5%
    # Whatever is outside the mask has no effect inside.
    noisy = torch.rand(1, 3, S, S) * (~m) + 0.3 * m
    torch.testing.assert_close(gaussian_blur_masked(noisy, m, 5.0)[m.expand(1, 3, S, S)],
                               torch.full((int(m.sum()) * 3,), 0.3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        gaussian_blur_masked(x, m, 0.0)
