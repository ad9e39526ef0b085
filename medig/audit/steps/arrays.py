# SPDX-License-Identifier: Apache-2.0
"""Batch step: keep what the overlays and reports need (image, FOV, map) in the work store; and
the audit step that gives every name its own ``--save-attributions`` file."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from medig.audit.finalise import FinishedAudit
from medig.audit.steps.batch import AuditContext, ImageBatch
from medig.audit.store import output_name, parse_row_path
from medig.utils import atomic_write
from medig.visualize import abs_quantiles, attribution_map, clip_value

__all__ = ["NameAttributions", "StoreArrays"]

log = logging.getLogger("medig")

#: Member of ``attributions/<name>.npz`` naming the stored work it was written from.
WORK_MEMBER = "work"


def _work(key: str, frame: int | None) -> str:
    return f"{key}-{frame or 0}"


class StoreArrays:
    """Store each image's arrays under its record key; ``--save-attributions`` writes the full
    attributions to ``attributions/<path>.npz`` as well."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx

    def __call__(self, batch: ImageBatch) -> None:
        expl = batch.explanation
        assert expl is not None  # Explain ran
        attributions = expl.attributions
        # each baseline's own map, for the browser's per-baseline overlays (one baseline: its
        # map is the averaged one, so nothing more is stored)
        own = (np.stack([attribution_map(p.detach()).float().cpu().numpy()
                         for p in expl.per_baseline], axis=1)  # (N, B, 1, H, W)
               if len(expl.per_baseline) > 1 else None)
        for j in range(len(batch)):
            extra = {} if own is None else _baseline_arrays(own[j], expl.baselines)
            self._store(batch, j, attributions[j], extra)

    def _store(self, batch: ImageBatch, j: int, attributions: Tensor,
               extra: dict[str, np.ndarray]) -> None:
        s = self.ctx.settings
        assert (batch.maps is not None and batch.fov is not None and batch.images is not None
                and batch.boxes is not None)  # Preprocess and Explain ran
        amap = batch.maps[j].detach().float().cpu().numpy()
        scale = float(np.abs(amap).max()) or 1.0
        fov = batch.fov[j].cpu().numpy()
        image = batch.images[j]
        self.ctx.store.save_arrays(
            batch.keys[j], batch.frames[j] or 0,
            image=(image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(),
            fov=fov,
            attr_map=(amap / scale).astype(np.float16), attr_scale=np.float64(scale),
            # the colour scale covers the whole frame: evidence outside the FOV is drawn too
            sketch=abs_quantiles(amap, None).astype(np.float32),
            clip=np.float64(clip_value(amap, None, s.percentile)),
            # where the model input was cut from the decoded frame: lesion masks are cropped
            # the same way when the localisation figures are computed (at every audit)
            box=batch.boxes[j].detach().double().cpu().numpy(),
            source_shape=np.asarray(batch.pixels[j].shape[-2:], dtype=np.int64),
            **extra,
        )
        if s.save_attributions:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, attributions=attributions.detach().float().cpu().numpy(),
                                fov=fov, **{WORK_MEMBER: np.str_(_work(batch.keys[j],
                                                                       batch.frames[j]))})
            name = output_name(batch.inputs[j].rel, batch.frames[j])
            atomic_write(self.ctx.out_dir / "attributions" / f"{name}.npz", buffer.getvalue())


def _baseline_arrays(maps: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """``(B, 1, H, W)`` per-baseline maps as stored: ``baseline_maps`` ``(B, H, W)`` float16, each
    normalised like ``attr_map`` by its entry of ``baseline_scales``, and ``baseline_names``."""
    scales = np.abs(maps).reshape(len(maps), -1).max(axis=1).astype(np.float64)
    scales[scales == 0] = 1.0
    return {"baseline_maps": (maps[:, 0] / scales[:, None, None]).astype(np.float16),
            "baseline_scales": scales, "baseline_names": np.asarray(names, dtype=np.str_)}


def _written_from(path: Path) -> str | None:
    """The work an attributions file was written from: None if written by an older medig (no
    stamp), ``""`` if absent or unreadable."""
    try:
        with np.load(path) as data:
            return str(data[WORK_MEMBER]) if WORK_MEMBER in data.files else None
    except Exception:  # noqa: BLE001 - damaged or not an npz: as good as absent
        return ""


class NameAttributions:
    """With ``--save-attributions``: every explained row's ``attributions/<name>.npz`` holds the
    attributions of the bytes audited under that name in this run.

    The file is written when its work is computed, under the name being audited. Work found in the
    store is shared by every name with the same bytes, so a name added later (or a file whose
    bytes became those of another) gets a copy of a file written from the same work; one that no
    file can give is said in one warning line, and a file written from other work is removed, not
    left to be believed. Files written by an older medig (unstamped) are kept as they are.
    """

    def __call__(self, audit: FinishedAudit) -> None:
        if not audit.settings.save_attributions:
            return
        folder = audit.out_dir / "attributions"
        wanted: dict[Path, str] = {}  # each explained frame's file: the work it must hold
        for row in audit.rows:
            if row.get("status") == "ok":
                rel, frame = parse_row_path(str(row["path"]))
                if rel in audit.key_of:
                    wanted[folder / f"{output_name(rel, frame)}.npz"] = _work(audit.key_of[rel],
                                                                              frame)
        written = {path: _written_from(path) for path in wanted}
        stale = {path: work for path, work in wanted.items() if written[path] not in (work, None)}
        if not stale:
            return
        # Any name's file may hold the work (contents swapped between runs); a source that is
        # about to be replaced itself is read first.
        source: dict[str, Path] = {}
        for path, work in written.items():
            if work:
                source.setdefault(work, path)
        needed = {work for work in stale.values() if work in source}
        early = {work: source[work].read_bytes() for work in needed if source[work] in stale}
        missing = []
        for path, work in stale.items():
            if work in needed:
                atomic_write(path, early[work] if work in early else source[work].read_bytes())
            else:
                path.unlink(missing_ok=True)
                missing.append(path.relative_to(audit.out_dir).as_posix())
        if missing:
            log.warning("%d attribution file(s) not written (first: %s): their images' work is "
                        "stored, but was computed without --save-attributions; re-audit with "
                        "--force to write them", len(missing), missing[0])
