# SPDX-License-Identifier: Apache-2.0
"""The state-tampering family (CI): one complete audit with every option on and ``--send`` to a
local storage SCP, then rounds that damage a copy of its saved state and re-run the same command
(:mod:`tests.fuzz.tamper`). The property: no traceback, exit 0, 3 or 4 (or, for a bad manifest or
study secret, a refusal in one line), the re-run's results, overlays, attributions and DICOM
objects equal the untampered run's (tampered state is recomputed, never believed), and the PACS
receives nothing new and nothing twice. ``bench/fuzz.py --tamper-seeds`` runs more rounds.
"""
from __future__ import annotations

import pytest

from tests.fuzz.harness import has_traceback, pacs_violations
from tests.fuzz.tamper import (
    KINDS,
    Round,
    ci_rounds,
    copy_audit,
    first_audit,
    run_round,
    state_files,
    tamper_round,
)
from tests.pacs.conftest import StorageSCP

pytestmark = pytest.mark.slow  # every test here needs the first audit
SEED = 21
ROUNDS = ci_rounds(SEED)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tamper")
    scp = StorageSCP(folder / "archive").start()
    try:
        # Decoding in the audit process: the decoding worker has its own fuzz property.
        yield first_audit(folder, scp, workers=0)
    finally:
        scp.stop()


def test_the_untampered_audit_is_complete(first):
    run = first.run
    assert run.code == 3 and not has_traceback(run.stderr), run.stderr[-3000:]  # broken.jpg
    assert run.received, "nothing was sent"
    assert pacs_violations(first.out, first.scp) == []
    assert {".medig/study-secret", "manifest.json", "results.jsonl",
            "dicom/sent.jsonl"} <= set(state_files(first.out))


@pytest.mark.parametrize("spec", ROUNDS, ids=lambda r: r.name)
def test_tampered_state_is_recomputed_never_believed(first, spec, tmp_path):
    done, problems = run_round(first, spec, tmp_path / "out")
    assert not problems, "\n".join([f"round {spec.name}, tampered:", *map(str, done),
                                    "violations:", *problems])


def test_tampering_is_seeded_and_reproducible(first, tmp_path):
    made = {}
    for name, spec in (("a", Round("part", 5, 0, 2)), ("b", Round("part", 5, 0, 2)),
                       ("c", Round("part", 6, 0, 2))):
        out = tmp_path / name
        copy_audit(first.out, out)
        done = tamper_round(out, spec)
        made[name] = (done, {f: (out / f).read_bytes() for f in state_files(out)})
    assert made["a"] == made["b"]
    assert made["a"][0] != made["c"][0]
    touched = {f for t in made["a"][0] for f in t.files}
    assert touched
    assert all(made["a"][1][f] != (first.out / f).read_bytes() for f in touched)


def test_ci_rounds_tamper_with_every_state_file_and_every_kind(first, tmp_path):
    files, kinds = set(), set()
    for spec in ROUNDS:
        out = tmp_path / spec.name
        copy_audit(first.out, out)
        for t in tamper_round(out, spec):
            files.update(t.files)
            kinds.add(t.kind)
    assert files == set(state_files(first.out))
    assert {*KINDS, "secret"} <= kinds
