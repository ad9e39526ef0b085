# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import numpy as np
import pytest
import torch

from medig.checks._grid import average_ranks, cell_grid, spearman, ssim, topk_overlap


def _rankdata(values: np.ndarray) -> np.ndarray:
    """Average ranks, written out the slow way (the definition)."""
    return np.array([1 + (values < v).sum() + ((values == v).sum() - 1) / 2 for v in values])


def test_average_ranks_match_the_definition_with_ties_and_masks() -> None:
    x = torch.tensor([[3.0, 1.0, 3.0, 2.0, 9.0, 1.0], [5.0, 5.0, 5.0, 0.0, -1.0, 7.0]])
    valid = torch.tensor([[True] * 6, [True, True, False, True, True, True]])
    ranks = average_ranks(x, valid)
    np.testing.assert_allclose(ranks[0].numpy(), _rankdata(x[0].numpy()))
    kept = x[1][valid[1]].numpy()
    np.testing.assert_allclose(ranks[1][valid[1]].numpy(), _rankdata(kept))
    assert ranks[1, 2] == 0  # masked entries take no rank


def test_spearman_matches_pearson_of_ranks_and_scipy() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((4, 40), generator=g)
    y = x + torch.randn((4, 40), generator=g)
    x[0, :10] = 0.0  # ties
    valid = torch.rand((4, 40), generator=g) > 0.2
    rho = spearman(x, y, valid)
    for i in range(4):
        rx, ry = _rankdata(x[i][valid[i]].numpy()), _rankdata(y[i][valid[i]].numpy())
        assert rho[i].item() == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)
    scipy = pytest.importorskip("scipy.stats")
    assert spearman(x, y)[2].item() == pytest.approx(scipy.spearmanr(x[2], y[2])[0], abs=1e-12)


def test_spearman_is_nan_for_a_constant_map_or_too_few_cells() -> None:
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    y = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    rho = spearman(x, y, torch.tensor([[True] * 4, [True, True, False, False]]))
    assert torch.isnan(rho).all()


def test_cell_grid_sums_fov_pixels_and_marks_mostly_outside_cells_invalid() -> None:
    maps = torch.arange(36, dtype=torch.float64).reshape(1, 6, 6)
    fov = torch.zeros((1, 6, 6), dtype=torch.bool)
    fov[0, :4, :4] = True
    fov[0, 4, 0] = True  # one pixel of the lower-left cell: under half of it
    grid, valid = cell_grid(maps, fov, cell=4)  # padded to 8 x 8: 2 x 2 cells
    expected = maps[0, :4, :4].sum()
    assert grid[0, 0, 0].item() == expected.item()
    assert grid[0, 1, 0].item() == maps[0, 4, 0].item()
    assert valid.tolist() == [[[True, False], [False, False]]]


def test_topk_overlap_counts_shared_top_entries() -> None:
    x = torch.tensor([[9.0, 8.0, 7.0, 1.0, 0.0, 0.5, 0.2, 0.1, 0.3, 0.4]])
    y = torch.tensor([[9.0, 0.0, 7.0, 8.0, 1.0, 0.5, 0.2, 0.1, 0.3, 0.4]])
    valid = torch.ones_like(x, dtype=torch.bool)
    assert topk_overlap(x, y, valid, 0.3).item() == pytest.approx(2 / 3)
    assert topk_overlap(x, x, valid, 0.3).item() == 1.0


def test_ssim_matches_scikit_image_and_is_one_for_identical_images() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.rand((2, 20, 24), generator=g, dtype=torch.float64)
    b = (a + 0.3 * torch.rand((2, 20, 24), generator=g, dtype=torch.float64)).clamp(0, 1)
    assert ssim(a, a).tolist() == pytest.approx([1.0, 1.0])
    metrics = pytest.importorskip("skimage.metrics")
    expected = [metrics.structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0)
                for i in range(2)]
    assert ssim(a, b).tolist() == pytest.approx(expected, abs=1e-10)


def test_ssim_with_a_region_ignores_windows_that_leave_it() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.rand((1, 16, 16), generator=g, dtype=torch.float64)
    b = a.clone()
    b[:, :, 10:] = torch.rand((1, 16, 6), generator=g, dtype=torch.float64)  # differs outside
    valid = torch.zeros((1, 16, 16), dtype=torch.bool)
    valid[:, :, :9] = True
    assert ssim(a, b, valid).item() == pytest.approx(1.0)
    assert ssim(a, b).item() < 0.9
