# SPDX-License-Identifier: Apache-2.0
"""The completeness rule of an audit, in the words the report prints (from ``manifest.json``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from medig.attr.completeness import ABSOLUTE_FLOOR

__all__ = ["accuracy_phrase", "atol_of", "map_error_of", "map_tol_of", "rule_values"]


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


def map_tol_of(manifest: dict[str, Any]) -> float | None:
    """The audit's map accuracy tolerance (``--map-tol``), or None (completeness alone, or an audit
    written before the map rule existed)."""
    value = (manifest.get("settings") or {}).get("map_tol")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def map_error_of(row: Mapping[str, Any]) -> float | None:
    """A row's estimated relative L2 error of the map, or None (not estimated, older audits)."""
    value = row.get("map_error")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def accuracy_phrase(error: float | None) -> str | None:
    """``"accurate to about 3% (estimated)"`` for a map error estimate; None without one.

    Rounded up to a whole percent (a tenth below 1%): the estimate is a bound a reader acts on,
    not a measurement to quote to the decimal.
    """
    if error is None:
        return None
    percent = math.ceil(error * 1000) / 10 if error < 0.01 else math.ceil(error * 100)
    return f"accurate to about {percent:g}% (estimated)"


def _unit(manifest: dict[str, Any]) -> str:
    output = manifest.get("output") or (manifest.get("settings") or {}).get("output")
    return {"probability": "in probability", "logit": "in logit units"}.get(
        str(output), "in units of the explained output")


def rule_values(manifest: dict[str, Any], tolerance_text: str) -> dict[str, str]:
    """Names for the template's ``completeness_rule`` and ``map_rule``: ``{tolerance}``, ``{atol}``,
    ``{unit}`` and ``{map_tol}`` (e.g. "5%")."""
    atol = atol_of(manifest)
    map_tol = map_tol_of(manifest)
    return {"tolerance": tolerance_text,
            "atol": f"{atol:g}" if atol is not None else "n/a",
            "unit": _unit(manifest),
            "map_tol": f"{map_tol:.0%}" if map_tol is not None else "n/a"}
