# SPDX-License-Identifier: Apache-2.0
"""The fuzz property on a small seeded corpus (CI), with every output option on: mutants of the
bundled examples and of generated files, plus the hand-made cases of the fuzzing campaigns and
hostile lesion masks, audited with ``--per-study --dicom-out --include-phi --save-attributions
--masks --send`` to a local storage SCP, then ``medig report``.

Every file gives exactly one ok or error row (one per frame when read), no traceback, no file
over 20 s or 2 GB, exit code 0, 3 or 4, every object reaches the SCP exactly once, and every
step of the audit runs (``REQUIRED_STEPS``: a new step fails
:func:`test_every_step_class_is_listed` until it is listed here, and then
:func:`test_fuzz_audit_runs_every_step` until the fuzz audit reaches it). ``bench/fuzz.py`` runs
the same check on a longer campaign.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.fuzz.cases import make_edge_cases, make_masks
from tests.fuzz.harness import check_folder
from tests.fuzz.mutate import MUTATIONS, generated_sources, make_corpus, mutate, source_files
from tests.fuzz.trace import step_classes
from tests.pacs.conftest import StorageSCP

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "fundus"
SEED = 12
MUTANTS = 30

#: Every batch and audit step of medig; the fuzz audit must run each of them.
REQUIRED_STEPS = {
    # batch steps (medig.audit.steps.batch_steps), in order
    "medig.audit.steps.preprocess.Preprocess",
    "medig.audit.steps.preprocess.Laterality",
    "medig.audit.steps.study.StudyIdentity",
    "medig.audit.steps.quality.Quality",
    "medig.audit.steps.predict.Predict",
    "medig.audit.steps.explain.Explain",
    "medig.audit.steps.regions.RegionEvidence",
    "medig.audit.steps.trust.OutsideEvidence",
    "medig.audit.steps.trust.TrustChecks",
    "medig.audit.steps.arrays.StoreArrays",
    # audit steps before the results (medig.audit.steps.audit_steps)
    "medig.audit.steps.target.RecordTarget",
    "medig.audit.steps.completeness.RecordCompletenessRule",
    "medig.audit.steps.study.IdentifyRows",
    "medig.audit.steps.localisation.Localise",
    "medig.audit.steps.arrays.NameAttributions",
    "medig.audit.steps.sanity.SanityCheck",
    "medig.audit.steps.findings.Findings",
    "medig.audit.steps.quality.QualitySummary",
    # audit steps after the report, the audit's own, then medig.pacs.steps.pacs_steps
    "medig.audit.steps.study_pages.StudyPages",
    "medig.pacs.steps.DicomExport",
    "medig.pacs.steps.SendDicom",
}


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    sources = source_files([EXAMPLES]) + generated_sources(base / "generated")
    corpus = base / "corpus"
    made = make_corpus(sources, corpus, seed=SEED, count=MUTANTS)
    cases = make_edge_cases(corpus)
    masks = make_masks(base / "masks")
    scp = StorageSCP(base / "archive").start()
    try:
        report = check_folder(corpus, base / "out", workers=2, masks=base / "masks", scp=scp)
    finally:
        scp.stop()
    return base / "out", made, cases, masks, report


@pytest.mark.slow
def test_fuzz_property_holds(fuzz_run):
    _out, made, cases, _masks, report = fuzz_run
    assert report.files == len(made) + len(cases)
    assert not report.violations, "\n".join(report.violations)
    assert report.exit_code in (0, 3, 4)
    assert report.max_seconds <= 20 and report.max_extra_mb <= 2048


def _require_rows(report) -> None:
    if not report.rows:
        pytest.fail(f"the fuzz audit wrote no results (exit {report.exit_code}): see "
                    "test_fuzz_property_holds", pytrace=False)


def _rows_by_file(rows):
    from medig.audit.store import parse_row_path

    by_file: dict[str, list[dict]] = {}
    for row in rows:
        rel, frame = parse_row_path(row["path"].rstrip("/"))
        by_file.setdefault(rel, []).append({**row, "_frame": frame})
    return by_file


@pytest.mark.slow
def test_hand_made_cases_get_their_rows_in_the_fuzz_audit(fuzz_run):
    from medig.audit.store import output_name, parse_row_path

    out, _made, cases, _masks, report = fuzz_run
    _require_rows(report)
    by_file = _rows_by_file(report.rows)
    wrong = []
    for row_path, expected in cases.items():
        rel, _ = parse_row_path(row_path.rstrip("/"))
        rows = by_file.get(rel, [])
        statuses = {r["status"] for r in rows}
        if statuses != {expected.status}:
            wrong.append(f"{row_path}: status {sorted(statuses)}, expected {expected.status} "
                         f"({[r.get('error') for r in rows]})")
            continue
        if expected.status == "error":
            reason = str(rows[0].get("error")).lower()
            if expected.reason not in reason:
                wrong.append(f"{row_path}: reason {reason!r} lacks {expected.reason!r}")
            continue
        if len(rows) != expected.frames:
            wrong.append(f"{row_path}: {len(rows)} rows, expected {expected.frames}")
        if expected.laterality is not None or rel.endswith(".jpg"):
            got = {r.get("laterality") for r in rows}
            if got != {expected.laterality}:
                wrong.append(f"{row_path}: laterality {got}, expected {expected.laterality}")
        if expected.dicom:
            for r in rows:
                sc = out / "dicom" / "overlays" / f"{output_name(rel, r['_frame'])}.dcm"
                if not sc.is_file():
                    wrong.append(f"{r['path']}: no Secondary Capture ({sc.name})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_hostile_masks_give_figures_only_where_they_are_valid(fuzz_run):
    _out, _made, _cases, masks, report = fuzz_run
    _require_rows(report)
    rows = {r["path"]: r for r in report.rows}
    wrong = []
    for path, figures in masks.items():
        if path not in rows:
            if path != "orphan.jpg":  # a mask without an image gives no row
                wrong.append(f"{path}: no row")
            continue
        has = rows[path].get("mask_area_fraction") is not None
        if has != figures:
            wrong.append(f"{path}: localisation figures {'present' if has else 'absent'}")
    assert not wrong, "\n".join(wrong)


def test_every_step_class_is_listed():
    """A step class added to medig (a class whose ``__call__`` takes an ``ImageBatch`` or a
    ``FinishedAudit``, or any callable class in a ``steps`` module) must be added to
    ``REQUIRED_STEPS``, and so to what the fuzz audit must reach."""
    found = step_classes()
    assert found - REQUIRED_STEPS == set(), "steps the fuzz suite does not know"
    assert REQUIRED_STEPS - found == set(), "listed steps that no longer exist"


@pytest.mark.slow
def test_fuzz_audit_runs_every_step(fuzz_run):
    """Every listed step acted in the fuzz audit (did more than find its options off), and
    nothing ran as a step that is not listed (a function or an unlisted class handed out by the
    step factories)."""
    *_, report = fuzz_run
    assert REQUIRED_STEPS - report.steps == set(), "steps the fuzz audit did not reach"
    assert report.called - REQUIRED_STEPS == set(), "steps that ran but are not listed"


def test_corpus_is_reproducible_from_its_seed(tmp_path):
    sources = generated_sources(tmp_path / "src")
    a = make_corpus(sources, tmp_path / "a", seed=7, count=12)
    b = make_corpus(sources, tmp_path / "b", seed=7, count=12)
    assert a == b
    for name in a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert make_corpus(sources, tmp_path / "c", seed=8, count=12) != a


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_each_mutation_changes_a_dicom_file(kind, tmp_path):
    (dicom,) = [p for p in generated_sources(tmp_path) if p.name == "native_3frames.dcm"]
    data = dicom.read_bytes()
    out = MUTATIONS[kind](data, random.Random(3))
    assert out != data and isinstance(out, bytes)


def test_mutate_names_what_it_did():
    data, names = mutate(b"\xff\xd8\xff" + bytes(range(256)) * 4, random.Random(1))
    assert names and all(n in MUTATIONS for n in names)


def test_step_census_finds_steps_wherever_they_are(tmp_path):
    """A new batch or audit step is found in any module, and any callable class in a module
    named ``steps``; Protocols and other callables are not steps."""
    package = tmp_path / "pkg"
    (package / "steps").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "steps" / "__init__.py").write_text(
        "from typing import Protocol\n"
        "class Step(Protocol):\n    def __call__(self, batch: ImageBatch) -> None: ...\n"
        "class Untyped:\n    def __call__(self, batch):\n        pass\n")
    (package / "elsewhere.py").write_text(
        "class NewBatchStep:\n    def __call__(self, batch: 'ImageBatch') -> None:\n        pass\n"
        "class NewAuditStep:\n    def __call__(self, audit: fin.FinishedAudit) -> None:\n"
        "        pass\n"
        "class NotAStep:\n    def __call__(self, x: int) -> int:\n        return x\n")
    assert step_classes(package) == {"pkg.steps.Untyped", "pkg.elsewhere.NewBatchStep",
                                     "pkg.elsewhere.NewAuditStep"}


def test_a_step_acts_only_when_it_changes_its_argument_or_the_folder(tmp_path):
    from dataclasses import dataclass, field

    from tests.fuzz.trace import _Recorder, read_log

    @dataclass
    class Batch:
        fields: list = field(default_factory=lambda: [{}])

    record = _Recorder(tmp_path / "log", tmp_path / "out")
    (tmp_path / "out").mkdir()
    record.run("idle", lambda b: None, Batch())
    record.run("adds", lambda b: b.fields[0].update(x=1), Batch())
    record.run("writes", lambda b: (tmp_path / "out" / "f").write_text("x"), Batch())
    called, acted = read_log(tmp_path / "log")
    assert called == {"idle", "adds", "writes"} and acted == {"adds", "writes"}
