# SPDX-License-Identifier: Apache-2.0
"""Audit step ``StudyPages``: ``studies/<study>.pdf`` with ``--per-study``, implied by DICOM output."""
from __future__ import annotations

import pytest

import medig.report.per_study as per_study
from medig.audit.finalise import AuditSummary
from medig.audit.steps.study_pages import StudyPages
from tests.audit.steps.kit import finished, make_context, settings


@pytest.mark.parametrize("changes, wanted", [
    ({}, False),
    ({"per_study": True}, True),
    ({"dicom_out": True}, True),  # the Encapsulated PDF is the study's page
    ({"send": "PACS@host:104"}, True),
])
def test_pages_are_built_when_the_settings_ask_for_them(tmp_path, monkeypatch, changes,
                                                        wanted) -> None:
    built = []
    monkeypatch.setattr(per_study, "build_study_pages",
                        lambda out, template: built.append((out, template)))
    s = settings(template="my.toml", **changes)
    ctx = make_context(tmp_path / "out", s)
    StudyPages()(finished(ctx, [], []))
    assert built == ([(ctx.out_dir, "my.toml")] if wanted else [])
    lines = StudyPages().console_lines(AuditSummary(ctx.out_dir), s)
    assert lines == ([f"study pages: {ctx.out_dir / 'studies'}"] if wanted else [])
