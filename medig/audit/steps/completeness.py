# SPDX-License-Identifier: Apache-2.0
"""Audit step: the completeness rule the audit applied, in one sentence, for ``manifest.json``."""
from __future__ import annotations

from medig.audit.finalise import FinishedAudit

__all__ = ["RecordCompletenessRule"]


class RecordCompletenessRule:
    """Adds ``completeness_rule`` and ``map_rule`` to the manifest: the rules behind ``flagged``,
    ``abs_tol`` and ``map_error``."""

    def __call__(self, audit: FinishedAudit) -> None:
        s = audit.settings
        atol = audit.plan.completeness_atol  # the output's default unless given
        audit.manifest["completeness_rule"] = (
            f"An image is complete when |delta| <= max({atol:g}, {s.completeness_tol:g} * "
            f"|F(x) - F(x')|), with delta = sum(attributions) - (F(x) - F(x')) and F the explained "
            f"{s.output}; abs_tol is that bound per image, and an image that misses it is flagged.")
        audit.manifest["map_rule"] = (
            "Completeness alone: no map accuracy rule." if s.map_tol is None else
            f"An image's map is accurate when its estimated relative L2 error (map_error: nested "
            f"quadrature levels, over pixels, relative to the map's norm) is <= {s.map_tol:g}; "
            f"an image is flagged when completeness or map accuracy is not met (flag_reason).")
