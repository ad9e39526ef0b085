# SPDX-License-Identifier: Apache-2.0
"""What ``medig audit`` prints when an audit has finished: a few lines an operator reads."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medig.audit.finalise import AuditStep, AuditSummary
from medig.audit.manifest import read_manifest
from medig.audit.settings import AuditSettings
from medig.audit.steps import audit_steps
from medig.report.rows import ResultRow

__all__ = ["summary_lines", "trust_line"]


def summary_lines(summary: AuditSummary, settings: AuditSettings,
                  extra_steps: Sequence[AuditStep] = ()) -> list[str]:
    """Counts, trust and quality verdicts, and where the report and the optional outputs are.

    Parameters
    ----------
    summary : AuditSummary
        What :func:`medig.audit.run_audit` returned (on rank 0).
    settings : AuditSettings
        The audit's settings (which optional outputs were asked for).
    extra_steps : sequence of AuditStep
        The caller's extra steps given to ``run_audit``; each one's ``console_lines`` follow the
        audit's own (study pages).

    Returns
    -------
    list of str
        One line each, no identifiers: file counts, flags and paths inside ``--out``.
    """
    from medig.report.quality import quality_counts

    steps = (f", mean {summary.mean_steps:.1f} gradient evaluations per image"
             if summary.mean_steps is not None else "")
    lines = [(f"audited {summary.ok} of {summary.total} images in {summary.seconds:.1f} s "
              f"({summary.computed} files computed now){steps}; {summary.flagged} flagged "
              f"(completeness or map accuracy not met), {summary.errors} could not be read"),
             trust_line(summary.rows, read_manifest(summary.out_dir) or {})]
    if settings.quality != "off":
        q = quality_counts(summary.rows)
        skipped = f"; {q['skipped']} skipped (not explained)" if q["skipped"] else ""
        lines.append(f"image quality: {q['gradeable']} gradeable, {q['ungradeable']} ungradeable, "
                     f"{q['not_fundus']} not fundus photographs{skipped}")
    lines.append(f"report: {summary.report}")
    if summary.html is not None:
        lines.append(f"browser: {summary.html}")
    for step in audit_steps(settings, extra_steps)[1]:
        say = getattr(step, "console_lines", None)
        if say is not None:
            lines.extend(say(summary, settings))
    return lines


def trust_line(rows: Sequence[ResultRow], manifest: Mapping[str, Any]) -> str:
    """Flag counts of the explained rows and the outcome of the sanity check in ``manifest``."""
    ok = [r for r in rows if r.get("status") == "ok"]
    counts = {f: sum(f in (r.get("trust_flags") or []) for r in ok)
              for f in ("baseline-dependent", "not-faithful")}
    sanity = (manifest.get("trust_checks") or {}).get("sanity_check") or {}
    status = sanity.get("status", "not recorded")
    why = f" ({sanity['reason']})" if status in ("not run", "disabled") and sanity.get(
        "reason") else ""
    return (f"trust: {counts['baseline-dependent']} baseline-dependent, {counts['not-faithful']} "
            f"not faithful of {len(ok)}; model-randomisation sanity check {status}{why}")
