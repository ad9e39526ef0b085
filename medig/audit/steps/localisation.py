# SPDX-License-Identifier: Apache-2.0
"""Audit step: pointing game and attribution mass on lesion masks, for images that have one.

A lesion mask is found by the image's *name* (``--masks``, or a ``masks/`` subfolder) while the
stored work is keyed by the image's bytes, and a mask may be added, replaced or deleted between
runs without the image changing. So the figures are never stored with the work: every audit
computes them from the attribution map kept in the work store and the mask each name has now.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from medig.audit.finalise import FinishedAudit
from medig.audit.inputs import _mask_file, _read_mask
from medig.audit.localisation import localisation
from medig.audit.records import round_float
from medig.audit.store import DamagedWorkError, WorkStore, parse_row_path
from medig.preprocess import crop_boxes
from medig.report.rows import ResultRow

__all__ = ["LOCALISATION_FIELDS", "Localise", "stored_localisation"]

log = logging.getLogger("medig")

#: The result fields this step fills in (None where the image has no usable mask).
LOCALISATION_FIELDS = ("pointing_hit", "mask_mass_fraction", "mask_area_fraction")

#: What :class:`~medig.audit.steps.arrays.StoreArrays` keeps for this step, per frame.
_ARRAYS = ("attr_map", "attr_scale", "fov", "box", "source_shape")


def stored_localisation(store: WorkStore, key: str, frame: int, mask_path: Path, size: int,
                        dilation: int) -> dict[str, Any] | None:
    """Localisation figures of one stored frame against the lesion mask at ``mask_path``.

    Parameters
    ----------
    store : WorkStore
        The audit's work store.
    key, frame : str, int
        Record key of the input and the frame (0 for a single-frame file).
    mask_path : Path
        The lesion mask; one that cannot be read or has another size than the decoded image
        gives None figures (as when there is no mask).
    size, dilation : int
        The audit's ``--size`` and ``--mask-dilation``.

    Returns
    -------
    dict or None
        :data:`LOCALISATION_FIELDS`; None when the stored arrays do not give a usable crop box.

    Raises
    ------
    DamagedWorkError
        The frame's stored arrays are missing, unreadable or lack a member (written by an older
        medig): the audit computes the input again.
    """
    arrays = store.load_arrays(key, frame, *_ARRAYS)
    if arrays is None:  # damaged (or from an older medig): the audit computes it again
        raise DamagedWorkError([key])
    try:
        shape = tuple(int(v) for v in arrays["source_shape"])
        box = torch.from_numpy(np.asarray(arrays["box"], dtype=np.float32)).reshape(1, 4)
        amap = torch.from_numpy(arrays["attr_map"].astype(np.float32)) * float(arrays["attr_scale"])
        fov = torch.from_numpy(np.asarray(arrays["fov"])).bool()
    except Exception:  # noqa: BLE001 - any damage to stored work: no figures (said once)
        return None
    mask = _read_mask(mask_path, shape)
    if mask is None:
        return dict.fromkeys(LOCALISATION_FIELDS)
    lesion = crop_boxes(mask[None], box, size, mode="nearest")[0].bool()
    figures = localisation(amap, lesion, fov, dilation)
    return {k: round_float(v) if isinstance(v, float) else v for k, v in figures.items()}


class Localise:
    """``pointing_hit``, ``mask_mass_fraction`` and ``mask_area_fraction`` of every explained row,
    from its stored attribution and the lesion mask its name has in this run (None without)."""

    def __call__(self, audit: FinishedAudit) -> None:
        items = {it.rel: it for it in audit.items}
        s = audit.settings
        missing: list[str] = []
        for row in audit.rows:
            if row.get("status") != "ok":
                continue
            figures: dict[str, Any] = dict.fromkeys(LOCALISATION_FIELDS)
            rel, frame = parse_row_path(str(row["path"]))
            item = items.get(rel)
            mask_path = _mask_file(item, frame) if item is not None else None
            if mask_path is not None:
                found = stored_localisation(audit.store, audit.key_of[rel], frame or 0,
                                            mask_path, audit.plan.size, s.mask_dilation)
                if found is None:
                    missing.append(str(row["path"]))
                else:
                    figures = found
            row.update(cast(ResultRow, figures))  # the LOCALISATION_FIELDS
        if missing:
            log.warning("no localisation figures for %d image(s) with a lesion mask (first: %s): "
                        "their stored work lacks what the figures need; re-audit with --force",
                        len(missing), missing[0])
