# SPDX-License-Identifier: Apache-2.0
"""All per-image checks of an explained batch in one call, as result columns.

The audit runs the checks as separate batch steps (:mod:`medig.audit.steps`); MONAI's
:class:`~medig.monai.ComputeIntegratedGradientsd` and the engine handler call :func:`image_checks`.
Both produce the same columns from the same functions.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

import medig.checks.thresholds as thresholds
from medig.attr import Explanation
from medig.checks._grid import FovArg, resolve_fov
from medig.checks.agreement import DEFAULT_CELL, TOPK_FRACTION, per_baseline_agreement
from medig.checks.deletion import deletion_curve
from medig.checks.occlusion import occlusion_agreement
from medig.checks.verdicts import trust_flags

__all__ = ["CHECK_COLUMNS", "DELETION_SETTINGS", "checks_manifest", "image_checks",
           "image_trust_flags"]

#: Result columns of the per-image checks (``occlusion_agreement`` only on request).
CHECK_COLUMNS = ("baseline_agreement", "baseline_topk_overlap", "faithfulness", "deletion_auc",
                 "random_deletion_auc", "occlusion_agreement")

#: The deletion check's settings in audits (:func:`medig.checks.deletion_curve`'s defaults).
DELETION_SETTINGS: dict[str, Any] = {"steps": 10, "fill": "blur", "random_orders": 3, "seed": 0}


def checks_manifest() -> dict[str, Any]:
    """Thresholds and settings of the per-image checks, as recorded in ``manifest.json``."""
    return {
        "thresholds": thresholds.as_dict(),
        "baseline_agreement": {"cell_px": DEFAULT_CELL, "top_fraction": TOPK_FRACTION},
        "deletion": {**DELETION_SETTINGS, "patch": "1/64 of the image side",
                     "output": "log-odds of the explained probability (the logit when the logit "
                               "is explained)"},
    }


def image_checks(
    forward_func: Callable[[Tensor], Tensor],
    inputs: Tensor,
    explanation: Explanation,
    fov: FovArg = "auto",
    *,
    agreement: bool = True,
    faithfulness: bool = True,
    occlusion: bool = False,
    cell: int = DEFAULT_CELL,
) -> dict[str, Tensor]:
    """Baseline agreement, faithfulness and (optionally) occlusion agreement of an explained batch.

    Parameters
    ----------
    forward_func : callable
        The output the deletion and occlusion checks record: the explained output, or for a
        softmax probability its log-odds (:func:`medig.checks.deletion.faithfulness_output`).
    inputs : Tensor
        ``(N, C, H, W)`` images the explanation was computed on.
    explanation : Explanation
        From :meth:`medig.FundusIntegratedGradients.explain` (its ``per_baseline`` maps are used
        as they are, nothing is recomputed).
    fov : Tensor, "auto" or None
        Bool field of view ``(N, 1, H, W)`` of every check. ``"auto"`` (default): detected once
        on ``inputs`` by :func:`medig.preprocess.fov_mask`, as the audit does, so that the black
        surround of a fundus photograph does not count; None: every pixel (the default before
        ``"auto"``).
    agreement, faithfulness, occlusion : bool
        Compare the baselines' maps, run the deletion check (forward passes) and the occlusion
        cross-check (more of them). Both fill with the explanation's own blurred image when it
        used the blur baseline (the same tensor, not recomputed).
    cell : int
        Pooling cell of the agreement.

    Returns
    -------
    dict of str to Tensor
        ``(N,)`` float64 tensors named as :data:`CHECK_COLUMNS` (NaN where not measurable; the
        agreement columns are absent with a single baseline, the occlusion column unless asked).
    """
    out: dict[str, Tensor] = {}
    fov = resolve_fov(fov, inputs)  # once, for every check
    pair = (per_baseline_agreement(explanation.per_baseline, fov, cell, TOPK_FRACTION)
            if agreement else None)
    if pair is not None:
        out["baseline_agreement"], out["baseline_topk_overlap"] = pair
    target = explanation.target
    name = DELETION_SETTINGS["fill"]
    fill = explanation.baseline_input(name) if isinstance(name, str) else None
    fill = name if fill is None else fill
    if faithfulness:
        result = deletion_curve(forward_func, inputs, explanation.attributions, target, fov,
                                **{**DELETION_SETTINGS, "fill": fill})
        out.update(faithfulness=result.faithfulness, deletion_auc=result.auc,
                   random_deletion_auc=result.random_auc)
    if occlusion:
        out["occlusion_agreement"] = occlusion_agreement(
            forward_func, inputs, explanation.attributions, target, fov, fill=fill).agreement
    return {k: v.detach().to("cpu", torch.float64) for k, v in out.items()}


def image_trust_flags(explanation: Explanation, checks: dict[str, Tensor]) -> list[list[str]]:
    """:func:`~medig.checks.verdicts.trust_flags` of every image of an explained batch
    (``checks`` may hold ``outside_fov_share`` too)."""
    flagged = explanation.flagged.cpu().tolist()

    def column(name: str) -> list[float | None]:
        values = checks.get(name)
        return [None] * len(flagged) if values is None else [
            None if math.isnan(v) else v for v in values.tolist()]

    return [trust_flags(f, a, p, outside_fov_share=o)
            for f, a, p, o in zip(flagged, column("baseline_agreement"), column("faithfulness"),
                                  column("outside_fov_share"))]
