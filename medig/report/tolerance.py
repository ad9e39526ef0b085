# SPDX-License-Identifier: Apache-2.0
"""The completeness rule of an audit, in the words the report prints (from ``manifest.json``)."""

from __future__ import annotations

import math
from typing import Any

from medig.attr.completeness import ABSOLUTE_FLOOR

__all__ = ["atol_of", "rule_values"]


def atol_of(manifest: dict[str, Any]) -> float | None:
    """The absolute completeness tolerance of the audit, in units of the explained output.

    Audits written before the absolute tolerance existed used only the float32 noise floor, so a
    manifest with a relative tolerance but no ``completeness_atol`` gives that floor; a manifest with
    neither (e.g. rows from another tool) gives None.
    """
    settings = manifest.get("settings") or {}
    value = settings.get("completeness_atol", manifest.get("completeness_atol"))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if "completeness_tol" in settings:
        return ABSOLUTE_FLOOR
    return None


def _unit(manifest: dict[str, Any]) -> str:
    output = manifest.get("output") or (manifest.get("settings") or {}).get("output")
    return {"probability": "in probability", "logit": "in logit units"}.get(
        str(output), "in units of the explained output")


def rule_values(manifest: dict[str, Any], tolerance_text: str) -> dict[str, str]:
    """Names for the template's ``completeness_rule``: ``{tolerance}``, ``{atol}`` and ``{unit}``."""
    atol = atol_of(manifest)
    return {"tolerance": tolerance_text,
            "atol": f"{atol:g}" if atol is not None else "n/a",
            "unit": _unit(manifest)}
