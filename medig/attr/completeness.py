# SPDX-License-Identifier: Apache-2.0
"""Completeness statistics: how far the attributions' sum is from F(x) - F(x').

The rule, as numerical integrators state it (``scipy.integrate.quad``: error below
``max(epsabs, epsrel * |I|)``): an attribution is *complete* when

    |delta| <= max(atol, tol * |F(x) - F(x')|)

with ``delta = sum(attributions) - (F(x) - F(x'))``. The relative part alone asks for a very precise
integral where F(x) and F(x') are nearly equal (a gap of a few hundredths of a probability), which
is where most of the evaluations of a relative-only audit went; the absolute part says how small a
gap, in units of the explained output, is small enough whatever the change.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "ABSOLUTE_FLOOR",
    "MAP_TOL",
    "PROBABILITY_ATOL",
    "absolute_tolerance",
    "completeness_delta",
    "default_atol",
    "is_complete",
    "relative_error",
]

#: Absolute tolerance of :meth:`~medig.FundusIntegratedGradients.explain` unless one is given, and of
#: logit audits: float32 evaluation noise of a network output (~1e-7 to 1e-6), without which a relative
#: test could never pass when the baseline scores almost exactly like the input.
ABSOLUTE_FLOOR = 1e-6

#: The audit's absolute tolerance for probability outputs, in probability (0.001 = 0.1 percentage
#: points). Chosen from measurement (``bench/tolerance.py``, bench/RESULTS.md "tolerance"): on the demo
#: model and the bundled examples it halves the evaluations of the relative-only rule, while the
#: overlays it produces differ from fully converged ones by less than they differ between two
#: converged quadratures of the same image.
PROBABILITY_ATOL = 1e-3

#: Most estimated relative L2 error of a map (``explain(map_tol=...)``, ``--map-tol``): completeness
#: is one number in which pixel errors of opposite sign cancel, so the adaptive schedule also
#: stops each image on an error estimate of the whole map (:mod:`medig.attr.adaptive`).
MAP_TOL = 0.05


def default_atol(output: str) -> float:
    """The audit's absolute tolerance for an explained ``output`` (``"probability"`` or ``"logit"``).

    Probabilities share one scale across models, so an absolute tolerance in probability points means
    the same everywhere (:data:`PROBABILITY_ATOL`). Logits do not: their scale is the model's own (a
    temperature-scaled model has logits 10x another's), so no absolute tolerance is assumed beyond
    float32 noise (:data:`ABSOLUTE_FLOOR`); pass ``--completeness-atol`` in logit units to set one.
    """
    return PROBABILITY_ATOL if output == "probability" else ABSOLUTE_FLOOR


def completeness_delta(attributions: Tensor, score: Tensor, baseline_score: Tensor) -> Tensor:
    """Per-image ``sum(attributions) - (score - baseline_score)`` (Captum's signed delta)."""
    total = attributions.reshape(attributions.shape[0], -1).sum(dim=1)
    return total - (score - baseline_score)


def relative_error(delta: Tensor, score: Tensor, baseline_score: Tensor) -> Tensor:
    """``|delta| / |F(x) - F(x')|``, comparable across images; ``inf`` where the gap is zero."""
    gap = (score - baseline_score).abs()
    return torch.where(gap > 0, delta.abs() / gap.clamp_min(torch.finfo(gap.dtype).tiny),
                       torch.full_like(gap, float("inf")))


def absolute_tolerance(score: Tensor, baseline_score: Tensor, tol: float,
                       atol: float = ABSOLUTE_FLOOR) -> Tensor:
    """Per image, the largest ``|delta|`` the rule accepts: ``max(atol, tol * |F(x) - F(x')|)``."""
    return (tol * (score - baseline_score).abs()).clamp_min(atol)


def is_complete(delta: Tensor, score: Tensor, baseline_score: Tensor, tol: float,
                atol: float = ABSOLUTE_FLOOR) -> Tensor:
    """Whether ``|delta| <= max(atol, tol * |F(x) - F(x')|)``, per image."""
    return delta.abs() <= absolute_tolerance(score, baseline_score, tol, atol)
