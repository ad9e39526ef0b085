# SPDX-License-Identifier: Apache-2.0
"""Reading an audit directory (``results.jsonl``, ``manifest.json``) and the figures the report shows."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from medig.report.rows import ResultRow

__all__ = ["AuditData", "ErrorBin", "load_audit", "relative_error_bins", "tolerance_of"]

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


def _read_manifest(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        notes.append("manifest.json is missing: model and run details are not available.")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(
            f"manifest.json could not be read ({type(exc).__name__}): model and run details are not available."
        )
        return {}
    if not isinstance(data, dict):
        notes.append("manifest.json does not hold a JSON object: ignored.")
        return {}
    return data


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
    """
    out = Path(out_dir)
    results = out / "results.jsonl"
    if not results.is_file():
        raise FileNotFoundError(f"{results} not found: run `medig audit` first")
    notes: list[str] = []
    by_path: dict[str, ResultRow] = {}
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
            by_path[row["path"]] = cast(ResultRow, row)  # as written: not checked field by field
    if bad:
        notes.append(
            f"{bad} line(s) of results.jsonl could not be parsed and are not in this report."
        )
    rows = [by_path[p] for p in sorted(by_path)]
    return AuditData(
        rows=rows, manifest=_read_manifest(out / "manifest.json", notes), bad_lines=bad, notes=notes
    )


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
