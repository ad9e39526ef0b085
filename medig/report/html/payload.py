# SPDX-License-Identifier: Apache-2.0
"""The data the cohort browser's script reads: one JSON object, rows as arrays under one column
list (a 10,000-row audit stays a few MB), serialised so no string can end the ``<script>``."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path, PurePosixPath
from typing import Any

from medig.report.data import AuditData
from medig.report.rows import ResultRow
from medig.visualize import side_by_side

__all__ = ["COLUMNS", "baseline_views", "json_for_script", "payload", "row_flags"]

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


def _safe_folder(folder: Any) -> bool:
    """A relative folder inside the audit folder (what the audit writes), nothing else."""
    if not isinstance(folder, str) or not folder or "\\" in folder or ":" in folder:
        return False
    parts = PurePosixPath(folder).parts
    return not folder.startswith("/") and ".." not in parts and "." not in parts


def baseline_views(out_dir: Path, data: AuditData) -> tuple[list[dict[str, str]],
                                                            list[list[int] | None]]:
    """Each baseline's own overlays (``manifest["baseline_overlays"]``, written when the audit
    averaged several baselines): the list of ``{"name", "dir"}``, and for each row the indices of
    those whose image exists (``<dir>/<name>.png`` for the row's ``overlays/<name>.png``; None:
    none, e.g. work stored by an older medig)."""
    folders = data.manifest.get("baseline_overlays")
    if not isinstance(folders, dict) or len(folders) < 2 or not all(
            isinstance(k, str) and _safe_folder(v) for k, v in folders.items()):
        return [], [None] * len(data.rows)
    views = [{"name": k, "dir": v} for k, v in folders.items()]
    per_row: list[list[int] | None] = []
    for r in data.rows:
        ov = _value(r, "overlay")
        name = ov[len("overlays/"):] if ov and ov.startswith("overlays/") else None
        found = [k for k, v in enumerate(views)
                 if name and (out_dir / v["dir"] / name).is_file()]
        per_row.append(found or None)
    return views, per_row


def payload(data: AuditData, meta: dict[str, Any], include_phi: bool,
            views: list[list[int] | None] | None = None) -> dict[str, Any]:
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
    views : list, optional
        Per row, the indices into ``meta["baseline_views"]`` of its per-baseline overlays
        (:func:`baseline_views`); a ``views`` column is added when some row has one.
    """
    present = {k for r in data.rows for k in r}
    columns = [c for c in COLUMNS if c in _ALWAYS or c in present]
    if include_phi and "metadata" in present:
        columns.append("metadata")
    rows = [[_value(r, c) for c in columns] for r in data.rows]
    if views and any(views):
        columns.append("views")
        for row, v in zip(rows, views):
            row.append(v)
    return {"columns": columns, "rows": rows, "meta": {**meta, "overlay_gap": OVERLAY_GAP}}


def json_for_script(obj: Any) -> str:
    """``obj`` as JSON that is safe inside ``<script type="application/json">``.

    ASCII-only (so U+2028/2029 and lone surrogates of undecodable names are ``\\uXXXX``), and
    ``<``, ``>``, ``&`` escaped, so ``</script>`` or ``<!--`` in a file name cannot end the
    element or open a comment; ``JSON.parse`` reads it back unchanged.
    """
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
