# SPDX-License-Identifier: Apache-2.0
"""Result rows of an audit: one per input image (per frame for multi-frame DICOM).

The row format (:class:`~medig.report.rows.ResultRow`, its fields :data:`RESULT_FIELDS`) is shared
by ``medig audit`` and the MONAI engine handler, so ``medig report`` can turn either into the same
PDF. Floats are rounded to :data:`SIGNIFICANT_DIGITS` significant digits: the last float32 bits of
a convolution depend on the batch an image was computed in, and rounding keeps results
byte-identical whatever the batch size or number of processes.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from torch import Tensor

from medig.attr import Explanation
from medig.report.rows import RESULT_FIELDS, ResultRow
from medig.utils import atomic_write

__all__ = [
    "RESULT_FIELDS",
    "SIGNIFICANT_DIGITS",
    "ResultRow",
    "error_row",
    "explanation_rows",
    "read_results",
    "results_csv",
    "results_jsonl",
    "round_float",
    "write_results",
]

SIGNIFICANT_DIGITS = 6

def round_float(value: float | None, digits: int = SIGNIFICANT_DIGITS) -> float | None:
    """``value`` rounded to ``digits`` significant digits (None, inf and nan pass through)."""
    if value is None or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def _empty_row(path: str, sha256: str | None) -> ResultRow:
    # Every field, None until a step fills it in.
    row = cast(ResultRow, dict.fromkeys(RESULT_FIELDS))
    row.update({"path": path, "sha256": sha256})
    return row


def error_row(path: str, sha256: str | None, reason: str) -> ResultRow:
    """The row of an input that could not be audited (``reason``: one line, no patient data)."""
    row = _empty_row(path, sha256)
    row.update({"status": "error", "error": " ".join(str(reason).split())})
    return row


def explanation_rows(
    explanation: Explanation,
    probabilities: Tensor,
    class_names: Sequence[str],
    paths: Sequence[str],
    sha256s: Sequence[str | None] | None = None,
    overlays: Sequence[str | None] | None = None,
    extra: Sequence[Mapping[str, Any]] | None = None,
) -> list[ResultRow]:
    """Result rows for a batch explained by :meth:`FundusIntegratedGradients.explain`.

    Parameters
    ----------
    explanation : Explanation
        The batch's explanation.
    probabilities : Tensor
        ``(N, K)`` class probabilities of the batch.
    class_names : sequence of str
        ``K`` class names.
    paths : sequence of str
        Relative path (or name) of each image.
    sha256s, overlays : sequences, optional
        File hash and overlay path (relative to the output folder) per image.
    extra : sequence of dict, optional
        More fields per image (localisation figures, laterality).
    """
    n = len(paths)
    probs = probabilities.detach().double().cpu()
    predicted = probs.argmax(dim=1).tolist()
    target = (explanation.target.cpu().tolist() if explanation.target is not None
              else predicted)
    flagged = explanation.flagged.cpu().tolist()
    reasons = explanation.flag_reasons

    def floats(t: Tensor) -> list[float | None]:
        return [round_float(v) for v in t.detach().double().cpu().tolist()]

    score, base, delta, rel = (floats(explanation.score), floats(explanation.baseline_score),
                               floats(explanation.delta), floats(explanation.relative_error))
    steps = explanation.n_steps.cpu().tolist()
    map_error = (floats(explanation.map_error) if explanation.map_error is not None
                 else [None] * n)
    map_error = [None if v is None or math.isnan(v) else v for v in map_error]
    abs_tol = (floats(explanation.abs_tol) if explanation.abs_tol is not None
               else [None] * n)
    rows = []
    for i in range(n):
        row = _empty_row(paths[i], sha256s[i] if sha256s else None)
        row.update({
            "status": "ok",
            "predicted": class_names[predicted[i]],
            "predicted_index": int(predicted[i]),
            "probabilities": {c: round_float(p) for c, p in zip(class_names, probs[i].tolist())},
            "target": class_names[target[i]],
            "target_index": int(target[i]),
            "score": score[i], "baseline_score": base[i], "delta": delta[i],
            "relative_error": rel[i], "map_error": map_error[i],
            "n_steps": int(steps[i]),
            "flagged": bool(flagged[i]), "flag_reason": reasons[i],
            "overlay": overlays[i] if overlays else None,
            "abs_tol": abs_tol[i],
        })
        if extra:  # the steps' fields, not typed while they are gathered
            row.update(cast(ResultRow, {k: v for k, v in extra[i].items() if k in RESULT_FIELDS}))
        rows.append(row)
    return rows


def _json_value(value: Any) -> Any:
    # JSON has no inf/nan: an undefined relative error (F(x) == F(x')) is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_value(value: Any) -> Any:
    # Lists and mappings as JSON text, which a spreadsheet shows and a script parses.
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return _json_value(value)


def results_jsonl(rows: Iterable[ResultRow]) -> str:
    """``results.jsonl`` text: one JSON object per row, fields in :data:`RESULT_FIELDS` order."""
    return "".join(
        json.dumps({k: _json_value(row.get(k)) for k in RESULT_FIELDS}, ensure_ascii=False) + "\n"
        for row in rows)


def results_csv(rows: Iterable[ResultRow], class_names: Sequence[str] = ()) -> str:
    """``results.csv`` text: the same columns, probabilities spread as ``p(<class>)`` columns."""
    rows = list(rows)
    names = list(class_names) or sorted({c for r in rows for c in (r.get("probabilities") or {})})
    columns = [f for f in RESULT_FIELDS if f != "probabilities"] + [f"p({c})" for c in names]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        probs = row.get("probabilities") or {}
        values = [_csv_value(row.get(f)) for f in RESULT_FIELDS if f != "probabilities"]
        values += [probs.get(c) for c in names]
        writer.writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


def write_results(out_dir: str | os.PathLike, rows: Sequence[ResultRow],
                  class_names: Sequence[str] = ()) -> None:
    """Write ``results.jsonl`` and ``results.csv`` in ``out_dir`` atomically."""
    out = Path(out_dir)
    # Paths are escaped already (medig.audit.store.row_path); "backslashreplace" keeps any other
    # text quoting a non-UTF-8 name writable instead of failing the whole audit.
    atomic_write(out / "results.jsonl", results_jsonl(rows).encode("utf-8", "backslashreplace"))
    atomic_write(out / "results.csv",
                 results_csv(rows, class_names).encode("utf-8", "backslashreplace"))


def read_results(path: str | os.PathLike) -> list[ResultRow]:
    """Rows of a ``results.jsonl`` file (a truncated last line, from a crash, is skipped)."""
    rows: list[ResultRow] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows

