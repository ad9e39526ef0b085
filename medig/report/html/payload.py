# SPDX-License-Identifier: Apache-2.0
"""The data the cohort browser's script reads: one JSON object, rows as arrays under one column
list (a 10,000-row audit stays a few MB), serialised so no string can end the ``<script>``."""

from __future__ import annotations

import inspect
import json
import math
from typing import Any

from medig.report.data import AuditData
from medig.report.rows import ResultRow
from medig.visualize import side_by_side

__all__ = ["COLUMNS", "json_for_script", "payload", "row_flags"]

#: Row columns the browser shows, in this order; a column the rows do not have is left out.
COLUMNS = (
    "path", "status", "error", "overlay", "predicted", "probability", "probabilities", "target",
    "score", "baseline_score", "delta", "relative_error", "map_error", "n_steps", "flagged",
    "flags", "baseline_agreement", "baseline_topk_overlap", "faithfulness", "occlusion_agreement",
    "quality", "quality_reasons", "fov_shape", "fov_fraction", "sharpness", "laterality", "study",
    "pointing_hit", "mask_mass_fraction", "mask_area_fraction",
)
# Present in every payload (the table's columns); the others only when some row has them.
_ALWAYS = {"path", "status", "error", "overlay", "predicted", "probability", "target",
           "relative_error", "flags", "quality", "laterality", "study"}

#: Width of the strip between the photograph and its overlay in ``overlays/*.png``.
OVERLAY_GAP = int(inspect.signature(side_by_side).parameters["gap"].default)


def row_flags(r: ResultRow) -> list[str]:
    """The row's trust flags, "incomplete" first when the completeness rule was not met."""
    flags = [str(f) for f in (r.get("trust_flags") or [])]
    if r.get("flagged") is True and "incomplete" not in flags:
        flags.insert(0, "incomplete")
    return flags


def _probability(r: ResultRow) -> float | None:
    probs, predicted = r.get("probabilities"), r.get("predicted")
    if not isinstance(probs, dict) or predicted is None:
        return None
    value = probs.get(predicted)
    return float(value) if isinstance(value, (int, float)) else None


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _value(r: ResultRow, key: str) -> Any:
    if key == "probability":
        return _probability(r)
    if key == "flags":
        return row_flags(r)
    if key == "overlay":
        ov = r.get("overlay")
        return ov if isinstance(ov, str) and r.get("status") == "ok" else None
    return _clean(r.get(key))


def payload(data: AuditData, meta: dict[str, Any], include_phi: bool) -> dict[str, Any]:
    """The browser's data: ``columns``, ``rows`` (one array per result row) and ``meta``.

    Parameters
    ----------
    data : AuditData
        The audit's rows and manifest.
    meta : dict
        Figures of the whole audit the script shows (thresholds, tolerance, baselines).
    include_phi : bool
        Add each row's ``metadata`` (which may identify the patient); without it, no row
        metadata is written.
    """
    present = {k for r in data.rows for k in r}
    columns = [c for c in COLUMNS if c in _ALWAYS or c in present]
    if include_phi and "metadata" in present:
        columns.append("metadata")
    rows = [[_value(r, c) for c in columns] for r in data.rows]
    return {"columns": columns, "rows": rows, "meta": {**meta, "overlay_gap": OVERLAY_GAP}}


def json_for_script(obj: Any) -> str:
    """``obj`` as JSON that is safe inside ``<script type="application/json">``.

    ASCII-only (so U+2028/2029 and lone surrogates of undecodable names are ``\\uXXXX``), and
    ``<``, ``>``, ``&`` escaped, so ``</script>`` or ``<!--`` in a file name cannot end the
    element or open a comment; ``JSON.parse`` reads it back unchanged.
    """
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
