# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import medig
from medig.checks import (
    baseline_agreement,
    baseline_topk_overlap,
    per_baseline_agreement,
)


def _disk(n: int, size: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (0.45 * size) ** 2
    return inside.expand(n, 1, size, size)


def test_identical_maps_agree_and_independent_noise_does_not() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn((64, 3, 64, 64), generator=g)
    fov = _disk(64, 64)
    same = baseline_agreement(a, a.clone(), fov, cell=4)
    assert torch.allclose(same, torch.ones(64, dtype=torch.float64))
    assert torch.equal(baseline_topk_overlap(a, a.clone(), fov, cell=4),
                       torch.ones(64, dtype=torch.float64))
    b = torch.randn((64, 3, 64, 64), generator=g)
    noise = baseline_agreement(a, b, fov, cell=4)  # ~190 cells: sd of rho about 0.07
    assert abs(noise.mean().item()) < 0.03
    assert noise.abs().max().item() < 0.3
    overlap = baseline_topk_overlap(a, b, fov, cell=4)
    assert overlap.mean().item() < 0.15  # chance level is the top fraction, 0.05


def test_agreement_is_a_rank_measure_of_the_channel_summed_map() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn((2, 3, 32, 32), generator=g)
    total = a.sum(dim=1)
    # The channel sum, spread unevenly over the channels and rescaled, agrees fully; so does a
    # monotone transform of it when the cells are single pixels (ranks, not values, count).
    zeros = torch.zeros_like(total)
    b = torch.stack([2.5 * total, zeros, zeros], dim=1)
    assert torch.allclose(baseline_agreement(a, b, cell=2), torch.ones(2, dtype=torch.float64))
    cubed = torch.stack([total ** 3, zeros, zeros], dim=1)
    assert torch.allclose(baseline_agreement(a, cubed, cell=1), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(baseline_agreement(a, -a, cell=2), -torch.ones(2, dtype=torch.float64))


def test_pooling_keeps_shared_structure_that_pixel_noise_hides() -> None:
    g = torch.Generator().manual_seed(2)
    coarse = F.interpolate(torch.randn((4, 1, 8, 8), generator=g), scale_factor=8)
    a = coarse + 3 * torch.randn((4, 1, 64, 64), generator=g)
    b = coarse + 3 * torch.randn((4, 1, 64, 64), generator=g)
    pixels = baseline_agreement(a[:, 0], b[:, 0], cell=1)
    cells = baseline_agreement(a[:, 0], b[:, 0], cell=8)
    assert pixels.max().item() < 0.2 and cells.min().item() > 0.8


def test_only_the_field_of_view_counts() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn((2, 3, 32, 32), generator=g)
    b = a + 0.5 * torch.randn((2, 3, 32, 32), generator=g)
    fov = _disk(2, 32)
    changed = b.clone()
    changed[~fov.expand_as(b)] = 100 * torch.randn(int((~fov).sum()) * 3, generator=g)
    assert torch.equal(baseline_agreement(a, b, fov, cell=4),
                       baseline_agreement(a, changed, fov, cell=4))
    assert not torch.equal(baseline_agreement(a, b, None, cell=4),
                           baseline_agreement(a, changed, None, cell=4))


def test_several_baselines_report_the_least_agreeing_pair() -> None:
    g = torch.Generator().manual_seed(4)
    a = torch.randn((3, 1, 32, 32), generator=g)
    b = a + 0.3 * torch.randn((3, 1, 32, 32), generator=g)
    c = torch.randn((3, 1, 32, 32), generator=g)
    agreement, overlap = per_baseline_agreement([a, b, c], cell=4)
    pairs = [baseline_agreement(x, y, cell=4) for x, y in ((a, b), (a, c), (b, c))]
    assert torch.equal(agreement, torch.stack(pairs).min(dim=0).values)
    assert overlap.shape == (3,)
    assert per_baseline_agreement([a], cell=4) is None


def test_explain_exposes_the_maps_it_averages() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2)).eval()
    x = torch.rand((2, 3, 16, 16))
    expl = medig.FundusIntegratedGradients(model, baselines=["black", "blur"]).explain(
        x, completeness_tol=None, n_steps=4)
    assert len(expl.per_baseline) == 2
    torch.testing.assert_close(torch.stack(expl.per_baseline).mean(dim=0), expl.attributions)
    assert baseline_agreement(*expl.per_baseline).shape == (2,)


def test_mismatched_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        baseline_agreement(torch.zeros((1, 3, 8, 8)), torch.zeros((1, 3, 8, 4)))
