# SPDX-License-Identifier: Apache-2.0
"""A model whose attribution is known, for the registration test of the evidence map."""
from __future__ import annotations

import torch
from torch import nn


class BrightSpot(nn.Module):
    """Logit 1 = 1 + 2000 x mean(relu(blue - 0.8)); logit 0 = 0.

    Only pixels whose blue exceeds 0.8 move the output: on a reddish fundus with one white spot,
    every attribution (whatever the baseline) lies on the spot, and class 1 is predicted.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 1 + 2000 * torch.relu(x[:, 2] - 0.8).mean(dim=(1, 2))
        return torch.stack([torch.zeros_like(score), score], dim=1)


def make_bright_spot() -> nn.Module:
    return BrightSpot().eval()
