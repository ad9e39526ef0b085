# SPDX-License-Identifier: Apache-2.0
"""Batch step: each image's anatomy (:func:`medig.preprocess.find_anatomy`) and what its evidence
lies on (:func:`medig.checks.regions.region_evidence`, :func:`~medig.checks.regions.top_regions`)."""
from __future__ import annotations

import math
from typing import Any

from medig.audit.records import round_float
from medig.audit.steps.batch import ImageBatch
from medig.checks.regions import region_evidence, top_regions
from medig.preprocess import find_anatomy

__all__ = ["RegionEvidence"]


def _share(value: float) -> float | None:
    return None if math.isnan(value) else round_float(value, 4)


class RegionEvidence:
    """Per image: ``region_evidence`` (``{region: {"pos", "neg", "area"}}``, shares of the
    positive and negative attribution and of the frame) and ``top_regions`` (the strongest
    evidence regions: share, ``where`` box as fractions of the model input, the region it is on)."""

    def __call__(self, batch: ImageBatch) -> None:
        assert batch.images is not None and batch.fov is not None and batch.maps is not None
        regions = find_anatomy(batch.images, batch.fov).regions()
        evidence = region_evidence(batch.maps, regions)
        tops = top_regions(batch.maps, regions)
        for fields, ev, top in zip(batch.fields, evidence, tops):
            fields["region_evidence"] = {name: {k: _share(v) for k, v in parts.items()}
                                         for name, parts in ev.items()}
            fields["top_regions"] = [_top(t) for t in top]


def _top(t: dict[str, Any]) -> dict[str, Any]:
    return {"share": round_float(t["share"], 4), "where": [round(v, 4) for v in t["where"]],
            "on": t["on"]}
