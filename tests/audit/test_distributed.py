# SPDX-License-Identifier: Apache-2.0
"""The audit under torchrun (CPU, gloo): same per-image results, and crash-and-resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from medig.audit import read_results
from medig.audit.distributed import balanced_shares
from medig.cli import EXIT_SOME_FILES_FAILED, main
from tests.audit.conftest import make_audit_folder

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun") or ""
requires_torchrun = pytest.mark.skipif(not TORCHRUN, reason="torchrun not on PATH")


def _args(model: str) -> list[str]:
    return ["--model", f"tests.audit.tiny_models:{model}", "--classes", "healthy", "referable",
            "--size", "64", "--batch-size", "2", "--workers", "0", "--threads", "1", "--quiet"]


def assert_same_results(a: Path, b: Path) -> None:
    """The two audits' rows are identical, bit for bit, except the study ids: those are keyed
    with each audit's own secret, so two audits must group the images alike under other ids."""
    one, two = ([json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
                for out in (a, b))
    assert [{k: v for k, v in r.items() if k != "study"} for r in two] == \
        [{k: v for k, v in r.items() if k != "study"} for r in one]
    pairs = {(x["study"], y["study"]) for x, y in zip(one, two)}
    assert len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


def _torchrun(nproc: int, folder: Path, out: Path, model: str) -> subprocess.Popen:
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node", str(nproc), "-m", "medig",
           "audit", str(folder), "--out", str(out), *_args(model)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def test_balanced_shares_are_disjoint_deterministic_and_balanced():
    weights = [5, 1, 1, 1, 1, 1, 4, 2, 3, 3]
    shares = balanced_shares(weights, 3)
    assert sorted(i for s in shares for i in s) == list(range(10))
    assert shares == balanced_shares(weights, 3)
    loads = [sum(weights[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= 1
    assert balanced_shares(weights, 1) == [list(range(10))]


@pytest.mark.slow
@requires_torchrun
def test_two_process_audit_equals_one_process(tmp_path):
    folder = make_audit_folder(tmp_path / "in", n=6, seed=21)
    single = tmp_path / "single"
    assert main(["audit", str(folder), "--out", str(single), *_args("make_tiny")]) \
        == EXIT_SOME_FILES_FAILED
    multi = tmp_path / "multi"
    proc = _torchrun(2, folder, multi, "make_tiny")
    _, err = proc.communicate(timeout=300)
    assert (multi / "results.jsonl").is_file(), err.decode()[-2000:]
    assert_same_results(single, multi)
    m1 = json.loads((single / "manifest.json").read_text())
    m2 = json.loads((multi / "manifest.json").read_text())
    assert m2["world_size"] == 2 and [r["rank"] for r in m2["ranks"]] == [0, 1]
    assert sum(r["inputs"] for r in m2["ranks"]) == 8
    assert m2["cohort_clip"] == pytest.approx(m1["cohort_clip"], rel=1e-6)
    # the ranks drew their own overlays, at the cohort scale of the single-process run
    drawn_by_rank1 = json.loads((multi / ".medig" / "ranks" / "overlays-rank1.json").read_text())
    assert drawn_by_rank1
    # ... and each baseline's own (black and blur, the default), at that scale too
    assert any(p.startswith("report_files/baselines/blur/") for p in drawn_by_rank1)
    own = sorted((single / "report_files").rglob("*.png"))
    assert len(own) == 2 * len(list((single / "overlays").rglob("*.png"))) > 0
    for png in [*(single / "overlays").rglob("*.png"), *own]:
        twin = multi / png.relative_to(single)
        assert twin.read_bytes() == png.read_bytes(), png.name


@pytest.mark.slow
@requires_torchrun
def test_killed_rank_then_resume_with_another_world_size(tmp_path):
    folder = make_audit_folder(tmp_path / "in", n=6, seed=22)
    ref = tmp_path / "ref"
    assert main(["audit", str(folder), "--out", str(ref), *_args("make_tiny")]) \
        == EXIT_SOME_FILES_FAILED
    out = tmp_path / "out"
    proc = _torchrun(2, folder, out, "make_slow")
    pid_file = out / ".medig" / "ranks" / "rank1.pid"
    records = out / ".medig" / "records"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if pid_file.is_file() and records.is_dir() and any(records.glob("*.json")):
            break
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "results.jsonl").exists()
    # resume on a different "allocation": one process
    assert main(["audit", str(folder), "--out", str(out), *_args("make_slow")]) \
        == EXIT_SOME_FILES_FAILED
    rows = read_results(out / "results.jsonl")
    assert len(rows) == len({r["path"] for r in rows}) == 8
    assert_same_results(ref, out)


@requires_torchrun
def test_damaged_arrays_of_another_rank_are_recomputed(tmp_path):
    # Rank 1 cannot draw an overlay from damaged arrays; rank 0 finds them when it finalises,
    # computes that input's batch again and finishes with the same results and overlays.
    import hashlib

    from medig.audit.store import WorkStore, record_key

    folder = make_audit_folder(tmp_path / "in", n=4, seed=21)
    out = tmp_path / "out"
    _, err = _torchrun(2, folder, out, "make_tiny").communicate(timeout=300)
    assert (out / "results.jsonl").is_file(), err.decode()[-2000:]
    before = (out / "results.jsonl").read_bytes()
    rank1 = json.loads((out / ".medig" / "ranks" / "rank1.json").read_text())["sha256"]
    rel = next(r for r in sorted(rank1) if r.endswith((".png", ".jpg", ".tif")))
    settings_key = json.loads((out / "manifest.json").read_text())["settings_key"]
    sha = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
    arrays = WorkStore(out).array_path(record_key(sha, settings_key), 0)
    assert arrays.is_file()
    arrays.write_bytes(arrays.read_bytes()[:100])
    png = out / "overlays" / f"{rel}.png"
    drawn = png.read_bytes()
    png.unlink()
    proc = _torchrun(2, folder, out, "make_tiny")
    text = proc.communicate(timeout=300)[1].decode()
    # (torchrun itself prints a traceback for a rank's exit code 3; medig prints none)
    assert "medig/audit" not in text and f"ignoring {arrays}" in text, text[-2000:]
    assert (out / "results.jsonl").read_bytes() == before
    assert png.read_bytes() == drawn
