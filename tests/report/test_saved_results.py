# SPDX-License-Identifier: Apache-2.0
"""``medig report`` on an audit folder whose results or manifest were cut, edited or damaged:
rows that are not the ones the audit counted are refused (one line, exit 2), never summarised as
if they were the audit; a damaged manifest entry is ignored with a note."""
from __future__ import annotations

import json
from pathlib import Path

import pypdf
import pytest
from report_fake_audit import make_row, write_audit

from medig.cli import EXIT_OK, EXIT_USAGE, main
from medig.report import build_report
from medig.report.data import ResultsMismatchError, load_audit


def _rows() -> list[dict]:
    rows = [make_row(f"eye_{k}.png", study=f"{k:016x}") for k in range(4)]
    rows[1]["flagged"] = True
    rows.append(make_row("broken.jpg", status="error", error="not an image", overlay=None,
                         study="f" * 16))
    return rows


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    return write_audit(tmp_path / "audit", _rows())


def _cut(out: Path, keep: int) -> None:
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:keep]), encoding="utf-8")


def test_a_cut_results_file_is_refused_with_one_line(audit, capsys):
    before = build_report(audit).read_bytes()
    _cut(audit, 3)  # 2 of 5 lines dropped
    with pytest.raises(ResultsMismatchError, match="3 total \\(manifest: 5\\)"):
        load_audit(audit)
    capsys.readouterr()
    assert main(["report", str(audit)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "results.jsonl" in err and "medig audit" in err
    assert (audit / "report.pdf").read_bytes() == before  # the last good report is kept


def test_a_cut_results_file_does_not_remove_study_pages(audit, capsys):
    # Pages of studies missing from the results are removed as stale: from a cut file that
    # would delete good pages.
    assert main(["report", str(audit), "--per-study"]) == EXIT_OK
    pages = sorted((audit / "studies").glob("*.pdf"))
    assert len(pages) == 5
    _cut(audit, 2)
    assert main(["report", str(audit), "--per-study"]) == EXIT_USAGE
    assert sorted((audit / "studies").glob("*.pdf")) == pages


@pytest.mark.parametrize("edit", ["error made ok", "flag cleared", "row added", "line cut"])
def test_edited_results_are_refused(audit, edit):
    path = audit / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    text = None
    if edit == "error made ok":
        rows[-1].update(status="ok", error=None)
    elif edit == "flag cleared":
        rows[1]["flagged"] = False
    elif edit == "row added":
        rows.append(make_row("extra.png"))
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)[:-40]  # the last line cut mid-way
    path.write_text(text or "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ResultsMismatchError):
        load_audit(audit)


def test_results_of_an_unfinished_or_foreign_audit_are_read_as_they_are(audit):
    # No counts to compare with (an audit still running, or rows written by other tools): the
    # report shows what the file holds, as before.
    manifest = json.loads((audit / "manifest.json").read_text())
    (audit / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    _cut(audit, 3)
    assert len(load_audit(audit).rows) == 3
    (audit / "manifest.json").write_text(json.dumps({**manifest, "counts": "five"}))
    assert len(load_audit(audit).rows) == 3


@pytest.mark.parametrize("manifest", [b'{"settings": "x", "status": "complete"}',
                                      b'{"model": [], "cohort_clip": "big", "counts": []}',
                                      b"[]", b'{"started": "caf\xe9"}'])
def test_a_damaged_manifest_still_gives_a_report(audit, manifest):
    (audit / "manifest.json").write_bytes(manifest)
    assert main(["report", str(audit)]) == EXIT_OK
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(audit / "report.pdf").pages)
    assert "manifest.json" in text  # a note says what was ignored
    assert "5 images audited" in text


def test_values_of_the_wrong_type_are_shown_as_not_recorded(tmp_path):
    # One row per result field, that field holding a value of another JSON type: the report and
    # the study pages are still built (they used to stop on e.g. "probabilities": "x"), the
    # value is dropped, and a note says so.
    from medig.audit.records import RESULT_FIELDS
    from medig.report.data import RESULT_TYPES, checked_row
    from medig.report.per_study import build_study_pages

    assert set(RESULT_TYPES) == set(RESULT_FIELDS)  # every column the audit writes has a type

    wrong = {"str": [1], "int": 2.5, "number": "x", "bool": "yes", "probabilities": [0.5],
             "strings": 5}
    fields = [f for f in RESULT_TYPES if f not in ("path", "status")]
    clean = [make_row(f"eye_{i:02d}.png", study=f"{i:016x}") for i in range(len(fields))]
    out = write_audit(tmp_path / "audit", clean)
    rows = [{**r, f: wrong[RESULT_TYPES[f]]} for r, f in zip(clean, fields)]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert all(checked_row(r)[1] == [f] for r, f in zip(rows, fields))
    data = load_audit(out)
    assert all(r[f] is None for r, f in zip(data.rows, fields))
    assert any(f"{len(fields)} row(s) of results.jsonl hold values of the wrong type" in n
               for n in data.notes)
    assert build_report(out).is_file()
    assert len(build_study_pages(out)) >= len(fields) - 1  # the row whose study is [1] has none
