# SPDX-License-Identifier: Apache-2.0
"""The result of :meth:`medig.FundusIntegratedGradients.explain`."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Explanation"]


@dataclass
class Explanation:
    """Per-image Integrated Gradients attributions with their completeness statistics.

    Attributes
    ----------
    attributions : Tensor
        ``(N, C, H, W)`` attributions (averaged over the baselines).
    target : Tensor or None
        ``(N,)`` class index explained for each image; None for a model with a single output.
    score : Tensor
        ``(N,)`` F(x): the explained output at the input.
    baseline_score : Tensor
        ``(N,)`` F(x'): the explained output at the baseline (mean over the baselines).
    delta : Tensor
        ``(N,)`` completeness gap: sum of attributions - (F(x) - F(x')).
    relative_error : Tensor
        ``(N,)`` ``|delta| / |F(x) - F(x')|`` (``inf`` when the two scores are equal).
    n_steps : Tensor
        ``(N,)`` gradient evaluations used for each image, summed over the baselines.
    converged : Tensor
        ``(N,)`` bool, whether ``|delta| <= abs_tol``, i.e. the completeness rule
        ``|delta| <= max(completeness_atol, completeness_tol * |score - baseline_score|)`` holds.
    method : str
        Quadrature used (``"adaptive"`` or a Captum method name).
    baselines : list of str
        Names of the baselines averaged over.
    completeness_tol : float or None
        Tolerance the steps were chosen for.
    per_baseline : list of Tensor
        ``(N, C, H, W)`` attributions against each baseline, in the order of ``baselines``;
        ``attributions`` is their mean (the same tensor when there is one baseline).
    abs_tol : Tensor or None
        ``(N,)`` the absolute tolerance the rule allowed each image:
        ``max(completeness_atol, completeness_tol * |score - baseline_score|)``.
    completeness_atol : float or None
        Absolute tolerance of the rule, in units of the explained output.
    baseline_inputs : list of Tensor
        The baseline images, in the order of ``baselines`` (numbers broadcast to ``(N, C, H, W)``),
        so that checks needing e.g. the blurred image reuse it instead of recomputing it.
    map_error : Tensor or None
        ``(N,)`` the estimated relative L2 error of each map (over pixels, relative to the map's
        norm), from the adaptive schedule's nested levels; NaN where there is no estimate (Captum
        methods, a fixed grid of odd length).
    map_tol : float or None
        The most ``map_error`` the rule allowed (None: completeness alone).
    """

    attributions: Tensor
    target: Tensor | None
    score: Tensor
    baseline_score: Tensor
    delta: Tensor
    relative_error: Tensor
    n_steps: Tensor
    converged: Tensor
    method: str
    baselines: list[str] = field(default_factory=list)
    completeness_tol: float | None = None
    per_baseline: list[Tensor] = field(default_factory=list)
    abs_tol: Tensor | None = None
    completeness_atol: float | None = None
    baseline_inputs: list[Tensor] = field(default_factory=list)
    map_error: Tensor | None = None
    map_tol: float | None = None

    def baseline_input(self, name: str) -> Tensor | None:
        """The baseline image named ``name`` (e.g. ``"blur"``), or None if it was not used."""
        if name in self.baselines and len(self.baseline_inputs) == len(self.baselines):
            return self.baseline_inputs[self.baselines.index(name)]
        return None

    @property
    def map_ok(self) -> Tensor:
        """``(N,)`` bool: whether ``map_error <= map_tol`` (all True without a ``map_tol``)."""
        if self.map_tol is None or self.map_error is None:
            return torch.ones_like(self.converged, dtype=torch.bool)
        return (self.map_error <= self.map_tol).to(self.converged.device)

    @property
    def flagged(self) -> Tensor:
        """``(N,)`` bool: images whose attribution did not meet the completeness tolerance or
        the map accuracy (see :attr:`flag_reasons`)."""
        return ~self.converged | ~self.map_ok

    @property
    def flag_reasons(self) -> list[str | None]:
        """Per image, why it is flagged: ``"completeness"``, ``"map accuracy"``,
        ``"completeness and map accuracy"``, or None."""
        out: list[str | None] = []
        for complete, accurate in zip(self.converged.cpu().tolist(), self.map_ok.cpu().tolist()):
            reasons = [r for r, ok in (("completeness", complete), ("map accuracy", accurate))
                       if not ok]
            out.append(" and ".join(reasons) or None)
        return out

    def __len__(self) -> int:
        return self.attributions.shape[0]
