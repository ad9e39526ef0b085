# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import torch
from torch import nn

import medig
from medig.checks import occlusion_agreement


class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weight).flatten(1).sum(dim=1)
        return torch.stack([score, -score], dim=1)


def test_occlusion_of_a_linear_model_is_its_ig_pooled_to_the_patches() -> None:
    g = torch.Generator().manual_seed(0)
    model = Linear(torch.randn((1, 3, 32, 32), generator=g, dtype=torch.float64))
    x = torch.rand((2, 3, 32, 32), generator=g, dtype=torch.float64)
    # IG of a linear model from a black baseline is w * x exactly; occluding a patch with black
    # removes exactly the patch's share of it.
    ig = medig.FundusIntegratedGradients(model).attribute(x, baselines=0.0, target=0)
    result = occlusion_agreement(model, x, ig, 0, patch=8, fill=0.0)
    assert result.patch == 8 and result.occlusion.shape == (2, 4, 4)
    torch.testing.assert_close(result.agreement, torch.ones(2, dtype=torch.float64))
    pooled = (ig.sum(dim=1)).reshape(2, 4, 8, 4, 8).sum(dim=(2, 4))
    torch.testing.assert_close(result.occlusion, pooled)
    unrelated = torch.randn((2, 3, 32, 32), generator=g, dtype=torch.float64)
    assert occlusion_agreement(model, x, unrelated, 0, patch=8, fill=0.0).agreement.abs().max() < 0.6


def test_default_grid_is_16_patches_per_side_and_fov_is_respected() -> None:
    g = torch.Generator().manual_seed(1)
    model = Linear(torch.randn((1, 3, 64, 64), generator=g))
    x = torch.rand((1, 3, 64, 64), generator=g)
    fov = torch.zeros((1, 1, 64, 64), dtype=torch.bool)
    fov[:, :, 16:48, 16:48] = True
    result = occlusion_agreement(model, x, x * model.weight, 0, fov=fov, fill=0.0)
    assert result.patch == 4 and result.occlusion.shape == (1, 16, 16)
    assert result.agreement.item() > 0.99
