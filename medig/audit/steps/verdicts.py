# SPDX-License-Identifier: Apache-2.0
"""Batch step: each image's ``trust_flags`` from completeness and the checks' figures."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medig.audit.steps.agreement import BaselineAgreement
from medig.audit.steps.batch import AuditContext, BatchStep, ImageBatch
from medig.audit.steps.faithfulness import Faithfulness
from medig.audit.steps.occlusion import OcclusionCrossCheck
from medig.checks import trust_flags

__all__ = ["TrustFlags", "trust_line", "trust_steps"]


def trust_steps(ctx: AuditContext) -> list[BatchStep]:
    """The per-image trust checks (after ``Explain``) and the verdict of each image, for the
    audit's settings: agreement and faithfulness unless ``trust_checks`` is off, the occlusion
    cross-check with ``--cross-check occlusion``, then :class:`TrustFlags`."""
    s = ctx.settings
    steps: list[BatchStep] = [BaselineAgreement(ctx), Faithfulness(ctx)] if s.trust_checks else []
    if "occlusion" in s.cross_check:
        steps.append(OcclusionCrossCheck(ctx))
    return [*steps, TrustFlags(ctx)]


class TrustFlags:
    """``trust_flags``: "incomplete", "baseline-dependent", "not-faithful" (see
    :func:`medig.checks.trust_flags`); ``flagged`` keeps its meaning (completeness only)."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx

    def __call__(self, batch: ImageBatch) -> None:
        flagged = batch.explanation.flagged.cpu().tolist()
        for fields, incomplete in zip(batch.fields, flagged):
            fields["trust_flags"] = trust_flags(incomplete, fields.get("baseline_agreement"),
                                                fields.get("faithfulness"))


def trust_line(rows: list[dict[str, Any]], out_dir: Path) -> str:
    """One line for the command's output: flag counts and the sanity check's outcome."""
    ok = [r for r in rows if r.get("status") == "ok"]
    counts = {f: sum(f in (r.get("trust_flags") or []) for r in ok)
              for f in ("baseline-dependent", "not-faithful")}
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        sanity = manifest["trust_checks"]["sanity_check"]
    except (OSError, ValueError, KeyError, TypeError):
        sanity = {}
    status = sanity.get("status", "not recorded")
    why = f" ({sanity['reason']})" if status in ("not run", "disabled") and sanity.get(
        "reason") else ""
    return (f"trust: {counts['baseline-dependent']} baseline-dependent, {counts['not-faithful']} "
            f"not faithful of {len(ok)}; model-randomisation sanity check {status}{why}")
