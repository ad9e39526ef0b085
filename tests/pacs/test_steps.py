# SPDX-License-Identifier: Apache-2.0
"""The DICOM steps the CLI composes into the audit: each checks its own options and says its own
console line, and the audit runs the caller's steps without importing the PACS package."""
from __future__ import annotations

from pathlib import Path

import pytest

from medig.audit import AuditSettings, run_audit
from medig.audit.console import summary_lines
from medig.audit.errors import AuditUsageError
from medig.audit.finalise import AuditSummary
from medig.cli import EXIT_USAGE, main
from medig.pacs.steps import DicomExport, SendDicom, pacs_steps


def _problem(**options) -> str | None:
    settings = AuditSettings(**options)
    return next((p for step in pacs_steps() if (p := step.problem(settings))), None)


def test_each_step_checks_its_own_options():
    assert _problem() is None
    assert _problem(dicom_out=True, include_phi=True) is None
    assert "--include-phi" in _problem(dicom_out=True)
    assert "--include-phi" in _problem(send="PACS@host:104")  # --send implies --dicom-out
    assert "PACS@host" in _problem(send="PACS@host", include_phi=True)  # no port
    # the calling AE title is checked whether or not anything is sent, as before
    assert "--calling-aet" in _problem(calling_aet="X" * 17)
    assert DicomExport().problem(AuditSettings(calling_aet="X" * 17)) is None
    assert SendDicom().problem(AuditSettings(dicom_out=True)) is None


def test_console_lines_only_for_the_outputs_asked_for(tmp_path):
    summary = AuditSummary(tmp_path, total=1, ok=1, report=tmp_path / "report.pdf")
    plain = summary_lines(summary, AuditSettings(), pacs_steps())
    assert not any(line.startswith(("study pages:", "dicom:", "sent:")) for line in plain)
    (tmp_path / "dicom" / "studies").mkdir(parents=True)
    (tmp_path / "dicom" / "studies" / "s.dcm").write_bytes(b"")
    sent = summary_lines(summary, AuditSettings(send="PACS@host:104", include_phi=True),
                         pacs_steps())
    tail = sent[sent.index(f"report: {summary.report}") + 1:]
    assert tail == [f"study pages: {tmp_path / 'studies'}",
                    f"dicom: 1 objects in {tmp_path / 'dicom'}",
                    (f"sent: every DICOM object acknowledged by PACS@host:104 "
                     f"(log: {tmp_path / 'dicom' / 'sent.jsonl'})")]
    # without the DICOM steps, the audit's own line (the implied study pages) stays
    assert summary_lines(summary, AuditSettings(dicom_out=True))[-1].startswith("study pages:")


def test_an_extra_steps_problem_stops_the_audit_before_the_model_loads(tmp_path):
    class Picky:
        def problem(self, settings: AuditSettings) -> str | None:
            return "--picky: no"

        def __call__(self, audit) -> None:  # pragma: no cover - never reached
            raise AssertionError

    def loader(settings):  # pragma: no cover - never reached
        raise AssertionError("the model was loaded")

    with pytest.raises(AuditUsageError, match="^--picky: no$"):
        run_audit([tmp_path], tmp_path / "out", AuditSettings(), progress=False,
                  model_loader=loader, extra_steps=[Picky()])
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_bad_calling_aet_without_send(tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main(["audit", str(tmp_path), "--out", str(out), "--calling-aet", "X" * 17]) \
        == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--calling-aet" in err[0]
    assert not out.exists()
