# SPDX-License-Identifier: Apache-2.0
"""What ``medig audit`` prints when an audit has finished: a few lines an operator reads."""
from __future__ import annotations

from medig.audit.finalise import AuditSummary
from medig.audit.settings import AuditSettings

__all__ = ["summary_lines"]


def summary_lines(summary: AuditSummary, settings: AuditSettings) -> list[str]:
    """Counts, trust and quality verdicts, and where the report and DICOM outputs are.

    Parameters
    ----------
    summary : AuditSummary
        What :func:`medig.audit.run_audit` returned (on rank 0).
    settings : AuditSettings
        The audit's settings (which optional outputs were asked for).

    Returns
    -------
    list of str
        One line each, no identifiers: file counts, flags and paths inside ``--out``.
    """
    from medig.audit.steps.quality import quality_counts
    from medig.audit.steps.verdicts import trust_line
    from medig.pacs.export import dicom_objects

    steps = (f", mean {summary.mean_steps:.1f} gradient evaluations per image"
             if summary.mean_steps is not None else "")
    lines = [f"audited {summary.ok} of {summary.total} images in {summary.seconds:.1f} s "
             f"({summary.computed} files computed now){steps}; {summary.flagged} flagged for incomplete "
             f"attribution, {summary.errors} could not be read",
             trust_line(summary.rows, summary.out_dir)]
    if settings.quality != "off":
        q = quality_counts(summary.rows)
        skipped = f"; {q['skipped']} skipped (not explained)" if q["skipped"] else ""
        lines.append(f"image quality: {q['gradeable']} gradeable, {q['ungradeable']} ungradeable, "
                     f"{q['not_fundus']} not fundus photographs{skipped}")
    lines.append(f"report: {summary.report}")
    out = summary.out_dir
    if settings.per_study or settings.dicom_out:
        lines.append(f"study pages: {out / 'studies'}")
    if settings.dicom_out:
        lines.append(f"dicom: {len(dicom_objects(out))} objects in {out / 'dicom'}")
    if settings.send:
        lines.append(f"sent: every DICOM object acknowledged by {settings.send} "
                     f"(log: {out / 'dicom' / 'sent.jsonl'})")
    return lines
