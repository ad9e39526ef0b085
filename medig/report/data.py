# SPDX-License-Identifier: Apache-2.0
"""Reading an audit directory (``results.jsonl``, ``manifest.json``) and the figures the report shows.

Nothing read is believed unchecked: a manifest entry or a result value of the wrong type is
dropped with a note in the report (:func:`check_manifest`, :func:`checked_row`; ``medig audit``
reads manifests through the same check), and rows that are not the ones a finished audit counted
in its manifest (a cut or edited ``results.jsonl``) are refused (:class:`ResultsMismatchError`).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from medig.report.rows import ResultRow
from medig.utils import read_json_file

__all__ = [
    "MANIFEST_TYPES",
    "RESULT_TYPES",
    "AuditData",
    "ErrorBin",
    "ResultsMismatchError",
    "check_manifest",
    "checked_row",
    "load_audit",
    "manifest_counts",
    "relative_error_bins",
    "tolerance_of",
]

# Bin edges (fractions) for the completeness chart; the audit's tolerance is inserted as an extra edge so
# no bar straddles it.
_EDGES = (0.005, 0.01, 0.02, 0.05)


@dataclass
class AuditData:
    """Rows and manifest of one audit directory.

    Attributes
    ----------
    rows : list of ResultRow
        One per input image/frame, sorted by ``path``; when a path occurs more than once (a resumed
        audit appending a retry) the last row wins.
    manifest : dict
        ``manifest.json`` (empty when the file is missing).
    bad_lines : int
        Lines of ``results.jsonl`` that were not valid JSON objects (e.g. a line cut by a crash).
    notes : list of str
        Problems found while reading, printed in the report.
    """

    rows: list[ResultRow]
    manifest: dict[str, Any]
    bad_lines: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> list[ResultRow]:
        return [r for r in self.rows if r.get("status") == "ok"]

    @property
    def errors(self) -> list[ResultRow]:
        return [r for r in self.rows if r.get("status") not in ("ok", "skipped")]

    @property
    def skipped(self) -> list[ResultRow]:
        """Rows not explained by choice (``--quality skip``): neither explained nor errors."""
        return [r for r in self.rows if r.get("status") == "skipped"]

    @property
    def flagged(self) -> list[ResultRow]:
        return [r for r in self.ok if r.get("flagged") is True]

    @property
    def class_names(self) -> list[str]:
        names = list((self.manifest.get("model") or {}).get("class_names") or [])
        for r in self.ok:  # classes seen in rows but missing from the manifest still get counted
            for key in ("predicted", "target"):
                if key == "target" and r.get("target_members"):
                    continue  # a group of classes, not a class
                if r.get(key) is not None and str(r[key]) not in names:
                    names.append(str(r[key]))
        return names

    def prediction_counts(self) -> dict[str, int]:
        counts = Counter(str(r["predicted"]) for r in self.ok if r.get("predicted") is not None)
        return {name: counts.get(name, 0) for name in self.class_names}

    def target_counts(self) -> dict[str, int]:
        counts = Counter(str(r["target"]) for r in self.ok if r.get("target") is not None)
        names = self.class_names + [t for t in counts if t not in self.class_names]  # groups
        return {name: counts[name] for name in names if counts.get(name)}

    @property
    def has_localisation(self) -> bool:
        return any(
            r.get("pointing_hit") is not None or r.get("mask_mass_fraction") is not None
            for r in self.ok
        )


class ResultsMismatchError(ValueError):
    """``results.jsonl`` does not hold the rows that ``manifest.json`` counts: cut or edited."""


_NONE = type(None)
#: Types of the entries that readers of ``manifest.json`` rely on; an entry of another type is
#: dropped when the manifest is read (other entries pass as they are).
MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,), "versions": (dict,), "model": (dict,), "output": (str, _NONE),
    "settings": (dict,), "settings_key": (str,), "device": (str,), "world_size": (int,),
    "started": (str, _NONE), "first_started": (str, _NONE), "finished": (str, _NONE),
    "machine": (dict,),
    "cohort_clip": (int, float, _NONE), "counts": (dict,), "ranks": (list,),
    "target": (dict,), "model_metadata": (dict,), "quality": (dict,), "trust_checks": (dict,),
    "completeness_rule": (str,), "findings": (list,),
}
#: The counts of a complete audit's rows (see :func:`manifest_counts`).
COUNT_NAMES = ("total", "ok", "error", "flagged")


def _entry_ok(name: str, value: Any) -> bool:
    types = MANIFEST_TYPES.get(name)
    if types is None:
        return True
    if isinstance(value, bool) and bool not in types:  # JSON true is no number here
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if name == "counts":
        return manifest_counts({"counts": value}) is not None
    return isinstance(value, types)


def manifest_counts(manifest: dict[str, Any]) -> dict[str, int] | None:
    """The row counts of a complete audit (``total``, ``ok``, ``error``, ``flagged``, each an
    integer >= 0), or None when the manifest has none or they are not such integers."""
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        return None
    values = {k: counts.get(k) for k in COUNT_NAMES}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
               for v in values.values()):
        return None
    return values  # type: ignore[return-value]


def check_manifest(data: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """``data`` (a parsed ``manifest.json``) with every entry of the wrong type dropped, and one
    problem per entry dropped; ``(None, [why])`` when it is not a JSON object."""
    if not isinstance(data, dict):
        return None, ["it does not hold a JSON object"]
    good = {k: v for k, v in data.items() if _entry_ok(k, v)}
    problems = [f"{k!r} is not {' or '.join(t.__name__ for t in MANIFEST_TYPES[k])}"
                for k in data if k not in good]
    return good, problems


#: The JSON type of each result field (``results.jsonl``, written by ``medig audit`` and the
#: MONAI handler), which may also be null: ``str``, ``int``, ``number`` (finite), ``bool``,
#: ``probabilities`` (class name -> number), ``strings`` (a list of text), ``regions`` (region ->
#: shares) or ``region_list`` (evidence regions: share, where, on).
RESULT_TYPES: dict[str, str] = {
    **dict.fromkeys(("path", "sha256", "status", "error", "predicted", "target", "overlay",
                     "laterality", "study", "study_source", "laterality_source", "quality",
                     "fov_shape", "image_colour", "flag_reason"), "str"),
    **dict.fromkeys(("predicted_index", "target_index", "n_steps"), "int"),
    **dict.fromkeys(("flagged", "pointing_hit"), "bool"),
    "probabilities": "probabilities",
    "region_evidence": "regions",
    "top_regions": "region_list",
    **dict.fromkeys(("target_members", "trust_flags", "quality_reasons"), "strings"),
    **dict.fromkeys(("score", "baseline_score", "delta", "relative_error", "map_error",
                     "mask_mass_fraction",
                     "mask_area_fraction", "abs_tol", "baseline_agreement",
                     "baseline_topk_overlap", "faithfulness", "deletion_auc",
                     "random_deletion_auc", "occlusion_agreement", "fov_fraction", "sharpness",
                     "saturated_fraction", "dark_fraction", "shadow_fraction", "mean_luminance",
                     "edge_density", "vessel_density", "outside_fov_share"), "number"),
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _number,
    "bool": lambda v: isinstance(v, bool),
    "probabilities": lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and _number(p) for k, p in v.items()),
    "strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "regions": lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(p, dict)
        and all(x is None or _number(x) for x in p.values()) for k, p in v.items()),
    "region_list": lambda v: isinstance(v, list) and all(
        isinstance(t, dict) and _number(t.get("share")) and isinstance(t.get("on"), str)
        and isinstance(t.get("where"), list) and len(t["where"]) == 4
        and all(_number(x) for x in t["where"]) for t in v),
}


def checked_row(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``row`` (read back from ``results.jsonl``) with every field whose value is not of its
    :data:`RESULT_TYPES` type set to None, and the names of those fields."""
    wrong = [f for f, kind in RESULT_TYPES.items()
             if row.get(f) is not None and not _CHECKS[kind](row[f])]
    return ({**row, **dict.fromkeys(wrong)} if wrong else row), wrong




def _read_manifest(path: Path, notes: list[str]) -> dict[str, Any]:
    try:
        data = read_json_file(path)
    except FileNotFoundError:
        notes.append("manifest.json is missing: model and run details are not available.")
        return {}
    except ValueError as exc:
        notes.append(f"manifest.json could not be read ({exc}): model and run details are not "
                     "available.")
        return {}
    manifest, problems = check_manifest(data)
    if manifest is None:
        notes.append("manifest.json does not hold a JSON object: ignored.")
        return {}
    if problems:
        notes.append(f"manifest.json entries of the wrong type are ignored: {'; '.join(problems)}.")
    return manifest


def _row_counts(rows: Sequence[ResultRow]) -> dict[str, int]:
    """The counts ``medig audit`` writes into the manifest, of the rows read."""
    ok = [r for r in rows if r.get("status") == "ok"]
    return {"total": len(rows), "ok": len(ok),
            "error": sum(r.get("status") == "error" for r in rows),
            "flagged": sum(r.get("flagged") is True for r in ok)}


def _check_counts(results: Path, rows: Sequence[ResultRow], manifest: dict[str, Any],
                  bad: int) -> None:
    """Refuse rows that are not the ones the finished audit counted (a cut or edited file)."""
    expected = manifest_counts(manifest) if manifest.get("status") == "complete" else None
    if expected is None:
        return  # nothing to compare with (not written by a finished audit)
    found = _row_counts(rows)
    if found == expected:
        return
    differ = ", ".join(f"{found[k]} {k} (manifest: {expected[k]})" for k in expected
                       if found[k] != expected[k])
    unparsed = f"; {bad} line(s) could not be parsed" if bad else ""
    raise ResultsMismatchError(
        f"{results} does not hold the rows the audit counted in manifest.json: {differ}"
        f"{unparsed}. It was cut or edited; run the same `medig audit` command again to rewrite "
        "it from the audit's stored work")


def load_audit(out_dir: str | os.PathLike) -> AuditData:
    """Read ``results.jsonl`` and ``manifest.json`` from an audit output directory.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The audit's output directory.

    Returns
    -------
    AuditData

    Raises
    ------
    FileNotFoundError
        ``results.jsonl`` is missing.
    ResultsMismatchError
        The rows are not those the finished audit counted in ``manifest.json`` (rows missing,
        added, lines cut, or statuses or flags edited): no report is built from them.
    """
    out = Path(out_dir)
    results = out / "results.jsonl"
    if not results.is_file():
        raise FileNotFoundError(f"{results} not found: run `medig audit` first")
    notes: list[str] = []
    by_path: dict[str, ResultRow] = {}
    read: list[ResultRow] = []
    mistyped: list[str] = []
    bad = 0
    with open(results, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                bad += 1
                continue
            checked, wrong = checked_row(row)
            if wrong:
                mistyped.append(wrong[0])
            typed = cast(ResultRow, checked)  # each field now of its RESULT_TYPES type, or None
            by_path[typed["path"]] = typed
            read.append(typed)
    if mistyped:
        notes.append(f"{len(mistyped)} row(s) of results.jsonl hold values of the wrong type "
                     f"(first: {mistyped[0]!r}); they are shown as not recorded.")
    if bad:
        notes.append(
            f"{bad} line(s) of results.jsonl could not be parsed and are not in this report."
        )
    manifest = _read_manifest(out / "manifest.json", notes)
    _check_counts(results, read, manifest, bad)
    rows = [by_path[p] for p in sorted(by_path)]
    return AuditData(rows=rows, manifest=manifest, bad_lines=bad, notes=notes)


def tolerance_of(manifest: dict[str, Any]) -> float | None:
    """The completeness tolerance (a fraction) recorded in the manifest's settings, if any."""
    settings = manifest.get("settings") or {}
    for key in ("completeness_tol", "tolerance", "tol", "completeness_tolerance"):
        value = settings.get(key, manifest.get(key))
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0
        ):
            return float(value)
    return None


@dataclass(frozen=True)
class ErrorBin:
    """One bar of the completeness chart: ``lo < relative_error <= hi`` (fractions).

    Upper-inclusive like the flag (``relative_error > tolerance``), so the bars above the tolerance hold
    exactly the flagged images.
    """

    lo: float
    hi: float
    count: int
    flagged: int | None = None  # of ``count``, the flagged images (None: not known)

    @property
    def label(self) -> str:
        def pct(x: float) -> str:
            return f"{x * 100:g}%"

        if self.lo <= 0:
            return f"\u2264 {pct(self.hi)}"
        if math.isinf(self.hi):
            return f"> {pct(self.lo)}"
        return f"{pct(self.lo)}\u2013{pct(self.hi)}"


def relative_error_bins(errors: list[float], tolerance: float | None = None,
                        flags: list[bool] | None = None) -> list[ErrorBin]:
    """Count relative errors in bins ``<=0.5%, 0.5-1%, 1-2%, 2-5%, >5%`` (plus an edge at ``tolerance``).

    Parameters
    ----------
    errors : list of float
        Relative errors as fractions; non-finite values go to the last bin.
    tolerance : float, optional
        Added as a bin edge when it is not one already, so bars split exactly at the tolerance.
    flags : list of bool, optional
        Whether each image was flagged, aligned with ``errors``: counted per bin (``ErrorBin.flagged``),
        since under an absolute tolerance an image above the relative tolerance may still be complete.

    Returns
    -------
    list of ErrorBin
    """
    edges = set(_EDGES)
    if tolerance is not None and 0 < tolerance < 1:
        edges.add(round(tolerance, 12))
    bounds = [0.0, *sorted(edges), math.inf]
    counts = [0] * (len(bounds) - 1)
    flagged = [0] * (len(bounds) - 1)
    for k, e in enumerate(errors):
        x = abs(e) if math.isfinite(e) else math.inf
        for i in range(len(counts)):
            if x <= bounds[i + 1] or i == len(counts) - 1:
                counts[i] += 1
                flagged[i] += bool(flags[k]) if flags is not None else 0
                break
    return [ErrorBin(bounds[i], bounds[i + 1], c, flagged[i] if flags is not None else None)
            for i, c in enumerate(counts)]
