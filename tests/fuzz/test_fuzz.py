# SPDX-License-Identifier: Apache-2.0
"""The fuzz property on a small seeded corpus (CI): mutants of the bundled examples and of
generated files, plus the hand-made cases of the fuzzing campaign.

Every file gives exactly one ok or error row (one per frame when read), no traceback, no file
over 20 s or 2 GB, exit code 0 or 3. ``bench/fuzz.py`` runs the same check on a longer campaign.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.fuzz.cases import make_edge_cases
from tests.fuzz.harness import check_folder
from tests.fuzz.mutate import MUTATIONS, generated_sources, make_corpus, mutate, source_files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "fundus"
SEED = 12
MUTANTS = 30


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    sources = source_files([EXAMPLES]) + generated_sources(base / "generated")
    corpus = base / "corpus"
    made = make_corpus(sources, corpus, seed=SEED, count=MUTANTS)
    cases = make_edge_cases(corpus)
    report = check_folder(corpus, base / "out", workers=2)
    return corpus, made, cases, report


@pytest.mark.slow
def test_fuzz_property_holds(fuzz_run):
    _corpus, made, cases, report = fuzz_run
    assert report.files == len(made) + len(cases)
    assert not report.violations, "\n".join(report.violations)
    assert report.exit_code in (0, 3)
    assert report.max_seconds <= 20 and report.max_extra_mb <= 2048


@pytest.mark.slow
def test_hand_made_cases_get_their_rows_in_the_fuzz_audit(fuzz_run):
    _corpus, _made, cases, report = fuzz_run
    from medig.audit.store import parse_row_path

    status: dict[str, set[str]] = {}
    for row in report.rows:
        rel, _frame = parse_row_path(row["path"].rstrip("/"))
        status.setdefault(rel, set()).add(row["status"])
    for row_path, expected in cases.items():
        rel, _ = parse_row_path(row_path.rstrip("/"))
        assert status[rel] == {expected.status}, row_path


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
