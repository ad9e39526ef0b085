# SPDX-License-Identifier: Apache-2.0
"""Fold a model's input normalisation into the forward function so IG runs in pixel space."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["NormalizedModel", "with_normalization"]


class NormalizedModel(nn.Module):
    """``model((x - mean) / std)`` for pixel-space inputs ``x`` in [0, 1].

    Zero in normalised space is not a black image (captum PR #428): keeping the normalisation
    inside the model makes the ``black`` baseline a black photograph and keeps every baseline and
    attribution in the space clinicians look at.
    """

    mean: Tensor  # buffers, (1, C, 1, 1)
    std: Tensor

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError("mean and std must have one value per channel")
        if any(s <= 0 for s in std):
            raise ValueError("std values must be positive")
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean = self.mean.to(dtype=x.dtype)
        std = self.std.to(dtype=x.dtype)
        return self.model((x - mean) / std)


def with_normalization(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """Wrap ``model`` so it takes pixel-space RGB in [0, 1] and normalises it itself.

    Parameters
    ----------
    model : nn.Module
        A classifier trained on ``(x - mean) / std`` inputs.
    mean, std : sequence of float
        Per-channel statistics used in training (e.g. ImageNet's).

    Returns
    -------
    nn.Module
        The wrapped model, in the same train/eval mode as ``model``.
    """
    wrapped = NormalizedModel(model, mean, std)
    wrapped.train(model.training)
    return wrapped
