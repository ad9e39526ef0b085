# SPDX-License-Identifier: Apache-2.0
"""Audit step: the model-randomisation sanity check on a sample of the audited images, and the
trust checks' thresholds and settings for ``manifest.json``.

Runs once per audit on rank 0, before the results and report are written. The sample
(``--sanity-sample N``, default 8, 0 disables) is drawn with a fixed seed from the explained
images, sorted by path, so the same audit tests the same images; their preprocessed pixels and
field of view come from the work store (nothing is decoded again). The outcome is kept in
``.medig/sanity.json`` under a key of the audit's numeric settings and the sampled images, so a
resumed or re-finalised audit with the same settings does not recompute it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from typing import Any

import numpy as np
import torch

from medig.audit.finalise import FinishedAudit
from medig.audit.store import DamagedWorkError, parse_row_path
from medig.checks import DEFAULT_CELL, checks_manifest, randomisation_test, thresholds
from medig.checks.randomisation import DEFAULT_MAX_STAGES, DEFAULT_SANITY_STEPS
from medig.utils import atomic_write, read_json_file

__all__ = ["SANITY_SEED", "SanityCheck"]

log = logging.getLogger("medig")

#: Seed of the sample of images (and of the re-initialisation).
SANITY_SEED = 0
_VERSION = 1  # bump when the check's definition changes: stored outcomes are then recomputed


class SanityCheck:
    """Cascading model randomisation (:func:`medig.checks.randomisation_test`) on a sample of
    the audit's images; adds ``trust_checks`` to the manifest."""

    def __call__(self, audit: FinishedAudit) -> None:
        entry = checks_manifest()
        entry["sanity_check"] = self._sanity(audit)
        audit.manifest["trust_checks"] = entry

    def _sanity(self, audit: FinishedAudit) -> dict[str, Any]:
        s = audit.settings
        size = max(0, int(s.sanity_sample))
        if size == 0:
            return {"status": "disabled", "reason": "--sanity-sample 0"}
        if audit.model is None:
            return {"status": "not run", "reason": "no model (report rebuilt from results)"}
        items = {it.rel: it for it in audit.items}
        ok = sorted((r for r in audit.rows if r.get("status") == "ok"
                     and isinstance(r.get("target_index"), int)), key=lambda r: r["path"])
        if not ok:
            return {"status": "not run", "reason": "no explained images"}
        chosen = sorted(random.Random(SANITY_SEED).sample(range(len(ok)), min(size, len(ok))))
        sample = [(ok[i], parse_row_path(ok[i]["path"])) for i in chosen]
        sample = [(row, (rel, frame)) for row, (rel, frame) in sample if rel in items]
        keys = [(audit.key_of[rel], frame or 0) for _, (rel, frame) in sample]
        stamp = hashlib.sha256(json.dumps(
            [_VERSION, audit.plan.key(), keys, DEFAULT_MAX_STAGES, DEFAULT_SANITY_STEPS,
             DEFAULT_CELL, thresholds.RANDOMISATION_MAX_SIMILARITY]).encode()).hexdigest()[:16]
        path = audit.store.root / "sanity.json"
        try:
            stored = read_json_file(path)
        except (FileNotFoundError, ValueError):  # absent or damaged: computed again
            stored = None
        if isinstance(stored, dict) and stored.get("key") == stamp and isinstance(
                stored.get("result"), dict):
            return stored["result"]
        try:
            result = self._run(audit, sample, keys)
        except DamagedWorkError:  # the audit recomputes those images, then runs this again
            raise
        except Exception as error:  # noqa: BLE001 - the audit's results must still be written
            log.warning("sanity check could not run: %s: %s", type(error).__name__, error)
            return {"status": "not run", "reason": f"{type(error).__name__}: "
                                                   f"{' '.join(str(error).split())}"[:300]}
        atomic_write(path, json.dumps({"key": stamp, "result": result}))
        return result

    def _run(self, audit: FinishedAudit, sample: list, keys: list) -> dict[str, Any]:
        s = audit.settings
        images, fovs = [], []
        for key, frame in keys:
            arrays = audit.store.load_arrays(key, frame, "image", "fov")
            if arrays is None:
                raise DamagedWorkError([key])
            images.append(torch.from_numpy(np.ascontiguousarray(arrays["image"])))
            fovs.append(torch.from_numpy(np.ascontiguousarray(arrays["fov"])).bool())
        device = audit.device
        x = torch.stack(images).to(device).float() / 255.0
        fov = torch.stack(fovs).to(device)
        if fov.ndim == 3:
            fov = fov[:, None]
        target = torch.tensor([row["target_index"] for row, _ in sample], device=device)
        assert audit.model is not None  # _sanity does not run without one
        result = randomisation_test(audit.model, x, target, fov=fov, baselines=s.baselines,
                                    output=s.output, seed=SANITY_SEED)
        entry: dict[str, Any] = {
            "status": "not run" if not result.ran else ("passed" if result.passed else "failed"),
            "reason": result.reason,
            "threshold": result.threshold,
            "images": [row["path"] for row, _ in sample],
            "stages": result.stages,
            "explainer": (f"Integrated Gradients, baselines {', '.join(map(str, s.baselines))}, "
                          f"{DEFAULT_SANITY_STEPS} uniform steps per baseline, output "
                          f"{s.output}"),
            "seconds": round(result.seconds, 2),
        }
        if result.ran or result.similarity.numel():
            entry["similarity"] = [_num(v) for v in result.stage_similarity]
            entry["ssim"] = [_num(v) for v in result.stage_ssim]
            entry["per_image_similarity"] = [[_num(v) for v in row]
                                             for row in result.similarity.tolist()]
            entry["per_image_ssim"] = [[_num(v) for v in row] for row in result.ssim.tolist()]
        return entry


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)
