# SPDX-License-Identifier: Apache-2.0
"""A small fake audit directory, written the way ``medig audit`` writes one (.design.md row schema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medig.visualize import abs_quantiles, cohort_clip_value, overlay, save_png, side_by_side

CLASSES = ["no referable DR", "referable DR"]


def _disk(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2)[None]


def make_row(path: str, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "path": path,
        "sha256": "ab" * 32,
        "status": "ok",
        "error": None,
        "predicted": CLASSES[1],
        "predicted_index": 1,
        "probabilities": {CLASSES[0]: 0.127, CLASSES[1]: 0.873},
        "target": CLASSES[1],
        "target_index": 1,
        "score": 0.873,
        "baseline_score": 0.412,
        "delta": -0.0019,
        "relative_error": 0.0042,
        "n_steps": 96,
        "flagged": False,
        "overlay": f"overlays/{path}.png",
        "pointing_hit": None,
        "mask_mass_fraction": None,
        "mask_area_fraction": None,
        "laterality": None,
    }
    row.update(kw)
    return row


def write_audit(
    out: Path,
    rows: list[dict[str, Any]],
    manifest_extra: dict[str, Any] | None = None,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write results.jsonl, manifest.json and side-by-side overlays (cohort colour scale)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fov = _disk(size)
    ok = [r for r in rows if r["status"] == "ok" and r.get("overlay")]
    images, maps = [], []
    yy, xx = np.mgrid[:size, :size] / size
    for _ in ok:
        # An orange retina with a bright optic disc; attribution = a few signed blobs plus weak noise.
        disc = np.exp(-((yy - 0.5) ** 2 + (xx - 0.7) ** 2) / 0.004)
        shade = 0.55 - 0.25 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.2 + 0.4 * disc
        img = np.clip(shade[None] * np.array([1.0, 0.55, 0.25])[:, None, None], 0, 1) * fov
        images.append(img)
        amap = rng.laplace(0, 0.05, (1, size, size))
        for _ in range(4):
            cy, cx = rng.uniform(0.25, 0.75, 2)
            amap[0] += rng.choice([-1.0, 1.0]) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.002)
        maps.append(amap)
    clip = cohort_clip_value([abs_quantiles(m, fov) for m in maps])
    for r, img, m in zip(ok, images, maps, strict=True):
        save_png(out / r["overlay"], side_by_side(img, overlay(img, m, fov, clip)))
    (out / "results.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    manifest = {
        "medig_version": "0.1.0",
        "torch_version": "2.x",
        "captum_version": "0.8",
        "monai_version": "1.4",
        "model": {
            "spec": "demo",
            "weights_sha256": "cd" * 32,
            "class_names": CLASSES,
            "input_size": 256,
        },
        "settings": {"completeness_tol": 0.01, "baselines": ["black"], "max_steps": 512},
        "device": "cpu",
        "started": "2025-03-01T09:15:00+00:00",
        "finished": "2025-03-01T09:20:00+00:00",
        "status": "complete",
        "counts": {  # as medig audit counts them
            "total": len(rows),
            "ok": sum(r["status"] == "ok" for r in rows),
            "error": sum(r["status"] == "error" for r in rows),
            "flagged": sum(r["status"] == "ok" and r.get("flagged") is True for r in rows),
        },
        "cohort_clip": clip,
        "world_size": 1,
    }
    manifest.update(manifest_extra or {})
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out
