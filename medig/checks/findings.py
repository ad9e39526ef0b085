# SPDX-License-Identifier: Apache-2.0
"""Cohort findings: what the model relies on across an audit, from the result rows.

:func:`cohort_findings` reads the per-image ``outside_fov_share``, ``region_evidence`` and
``top_regions`` columns and returns the findings recorded in ``manifest.json`` under
``"findings"``, each ``{"kind", "where", "share", "images", "examples", "text"}``:

- ``"outside-retina"``: many images hold a material share of their evidence outside the field of
  view (the "evidence-outside-retina" flag): a date stamp, text, the camera's border;
- ``"fixed-location"``: in many images the strongest evidence region is at the same place and
  holds much of the evidence, wherever that is (lesions are not at the same place in every eye),
  unless it is on the optic disc or the macula: those are at nearly the same place in every
  left (or right) eye, and their evidence is the region table's to report.

``where`` is ``[x0, y0, x1, y1]`` as fractions of the model input (the median box of the
images' regions there); ``share`` the share of the cohort's positive evidence there (the mean
over images of each image's share); ``examples`` the row paths of up to three typical images.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import medig.checks.thresholds as thresholds

__all__ = ["ANATOMY_REGIONS", "FINDING_KINDS", "FIXED_CELLS", "FIXED_MIN_IMAGE_SHARE",
           "FIXED_MIN_SHARE", "MIN_IMAGES", "MIN_IMAGE_SHARE", "OUTSIDE_REGIONS",
           "cohort_findings"]

#: Kinds of finding :func:`cohort_findings` can report.
FINDING_KINDS = ("outside-retina", "fixed-location")
#: A finding needs at least this many images ...
MIN_IMAGES = 2
#: ... and at least this share of the audited images.
MIN_IMAGE_SHARE = 0.1
#: Regions of :data:`medig.preprocess.REGIONS` outside the field of view.
OUTSIDE_REGIONS = ("frame_corners", "outside_fov")
#: "fixed-location": the strongest region must hold at least this share of an image's positive
#: evidence (a planted mark holds about half; the demo model's strongest lesion region on
#: synthetic images 0.05-0.25) ...
FIXED_MIN_SHARE = 0.3
#: ... with its centre in the same cell of a grid of this many cells a side, in at least this
#: share of the images (the demo model's strongest region is on the optic disc of 2 of the 16
#: bundled examples of each eye side).
FIXED_CELLS = 6
FIXED_MIN_IMAGE_SHARE = 0.2
#: Anatomy whose evidence is no "fixed-location" finding.
ANATOMY_REGIONS = ("optic_disc", "macula")


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _median_box(boxes: Sequence[Sequence[float]]) -> list[float]:
    return [round(float(v), 3) for v in np.median(np.asarray(boxes, dtype=float), axis=0)]


def _enough(count: int, total: int) -> bool:
    return count >= MIN_IMAGES and count >= MIN_IMAGE_SHARE * total


def _outside(rows: list[Mapping[str, Any]], limit: float) -> dict[str, Any] | None:
    hits = [r for r in rows if (_number(r.get("outside_fov_share")) or 0.0) > limit]
    if not _enough(len(hits), len(rows)):
        return None
    hits.sort(key=lambda r: -(_number(r.get("outside_fov_share")) or 0.0))
    boxes = []  # each image's strongest region outside the field of view
    for r in hits:
        outside = [t for t in (r.get("top_regions") or []) if t.get("on") in OUTSIDE_REGIONS]
        if outside:
            boxes.append(outside[0]["where"])
    shares = []
    for r in rows:
        ev = r.get("region_evidence") or {}
        shares.append(sum(_number((ev.get(k) or {}).get("pos")) or 0.0 for k in OUTSIDE_REGIONS))
    share = float(np.mean(shares)) if shares else 0.0
    median = float(np.median([_number(r["outside_fov_share"]) for r in hits]))
    finding: dict[str, Any] = {
        "kind": "outside-retina", "share": round(share, 3), "images": len(hits),
        "examples": [r["path"] for r in hits[:3]],
        "text": (f"In {len(hits)} of {len(rows)} images, {median:.0%} of the evidence lies "
                 "outside the retina (median): the model may read a stamp, text or the "
                 "camera's border rather than the fundus."),
    }
    if boxes:
        finding = {"kind": "outside-retina", "where": _median_box(boxes),
                   **{k: v for k, v in finding.items() if k != "kind"}}
    return finding


def _fixed(rows: list[Mapping[str, Any]], skip_outside: bool) -> list[dict[str, Any]]:
    cells: dict[tuple[int, int], list[tuple[Mapping[str, Any], Any]]] = {}
    for r in rows:
        top = (r.get("top_regions") or [None])[0]
        if not top or (_number(top.get("share")) or 0.0) < FIXED_MIN_SHARE:
            continue
        if skip_outside and top.get("on") in OUTSIDE_REGIONS:
            continue  # already the outside-retina finding
        if top.get("on") in ANATOMY_REGIONS:
            continue
        x0, y0, x1, y1 = top["where"]
        cell = (min(FIXED_CELLS - 1, int((x0 + x1) / 2 * FIXED_CELLS)),
                min(FIXED_CELLS - 1, int((y0 + y1) / 2 * FIXED_CELLS)))
        cells.setdefault(cell, []).append((r, top))
    out = []
    for members in sorted(cells.values(), key=len, reverse=True):
        if not _enough(len(members), len(rows)) or len(members) < FIXED_MIN_IMAGE_SHARE * len(rows):
            continue
        members.sort(key=lambda m: -m[1]["share"])
        on = max({m[1]["on"] for m in members}, key=[m[1]["on"] for m in members].count)
        share = float(sum(m[1]["share"] for m in members)) / len(rows)
        out.append({
            "kind": "fixed-location", "where": _median_box([m[1]["where"] for m in members]),
            "share": round(share, 3), "images": len(members),
            "examples": [m[0]["path"] for m in members[:3]],
            "text": (f"In {len(members)} of {len(rows)} images the strongest evidence sits at "
                     f"the same place ({on.replace('_', ' ')}), holding "
                     f"{np.median([m[1]['share'] for m in members]):.0%} of it (median): a "
                     "fixed mark, not lesions, which move from eye to eye."),
        })
    return out


def cohort_findings(rows: Sequence[Mapping[str, Any]],
                    outside_share_max: float = thresholds.OUTSIDE_SHARE_MAX,
                    ) -> list[dict[str, Any]]:
    """The cohort's findings (see the module docstring) from its audited rows (status "ok")."""
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    if not ok:
        return []
    findings = []
    outside = _outside(ok, outside_share_max)
    if outside is not None:
        findings.append(outside)
    findings.extend(_fixed(ok, skip_outside=outside is not None))
    return findings
