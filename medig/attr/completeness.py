# SPDX-License-Identifier: Apache-2.0
"""Completeness statistics: how far the attributions' sum is from F(x) - F(x')."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["completeness_delta", "is_complete", "relative_error"]

#: Absolute floor on |delta| below which an attribution counts as complete whatever |F(x) - F(x')|:
#: float32 evaluation noise of a network output is ~1e-7 to 1e-6, so a relative test alone could never pass
#: when the baseline scores almost exactly like the input.
ABSOLUTE_FLOOR = 1e-6


def completeness_delta(attributions: Tensor, score: Tensor, baseline_score: Tensor) -> Tensor:
    """Per-image ``sum(attributions) - (score - baseline_score)`` (Captum's signed delta)."""
    total = attributions.reshape(attributions.shape[0], -1).sum(dim=1)
    return total - (score - baseline_score)


def relative_error(delta: Tensor, score: Tensor, baseline_score: Tensor) -> Tensor:
    """``|delta| / |F(x) - F(x')|``, comparable across images; ``inf`` where the gap is zero."""
    gap = (score - baseline_score).abs()
    return torch.where(gap > 0, delta.abs() / gap.clamp_min(torch.finfo(gap.dtype).tiny),
                       torch.full_like(gap, float("inf")))


def is_complete(delta: Tensor, score: Tensor, baseline_score: Tensor, tol: float) -> Tensor:
    """Whether ``|delta| <= tol * |F(x) - F(x')|``, or below :data:`ABSOLUTE_FLOOR`."""
    gap = (score - baseline_score).abs()
    return (delta.abs() <= tol * gap) | (delta.abs() <= ABSOLUTE_FLOOR)
