# SPDX-License-Identifier: Apache-2.0
"""Tiny models for audit tests, loaded through the ``package.module:factory`` model spec."""
from __future__ import annotations

import torch
from torch import nn


def make_tiny() -> nn.Module:
    """A small ReLU CNN (2 classes) with fixed weights."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    return net.eval()


class LeftMinusRight(nn.Module):
    """Logit 1 = 40 x (mean green of the left half - mean green of the right half); logit 0 = 0.

    With the black baseline and the logit explained, IG is exactly linear: positive attribution on
    the left half, negative on the right, so the overlay must be green left and red right.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1] // 2
        score = 40 * (x[:, 1, :, :w].mean(dim=(1, 2)) - x[:, 1, :, w:].mean(dim=(1, 2)))
        return torch.stack([torch.zeros_like(score), score], dim=1)


def make_left_minus_right() -> nn.Module:
    return LeftMinusRight()


class Slow(nn.Module):
    """``make_tiny`` that sleeps per forward, so a test can kill an audit mid-run."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_tiny()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.05)
        return self.net(x)


def make_slow() -> nn.Module:
    return Slow()
