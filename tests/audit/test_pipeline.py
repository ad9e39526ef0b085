# SPDX-License-Identifier: Apache-2.0
"""``run_audit``'s phases one by one: check, lock, open the output folder, schedule, compute."""
from __future__ import annotations

import datetime
import json
import os

import pytest
import torch

import medig.audit.pipeline as pipeline
from medig.audit.auditor import Auditor
from medig.audit.distributed import DistContext
from medig.audit.errors import AuditError, AuditUsageError, SettingsChangedError
from medig.audit.inputs import AuditInput
from medig.audit.lock import OutputLock
from medig.audit.manifest import read_manifest
from medig.audit.store import WorkStore, record_key, unreadable_key
from medig.models import LoadedModel
from medig.utils import sha256_file
from tests.audit.steps.kit import photographs, plan_for, settings, write_inputs
from tests.audit.tiny_models import make_tiny


class Problem:
    """An optional step whose options have a problem (or not)."""

    def __init__(self, problem) -> None:
        self._problem = problem

    def __call__(self, audit) -> None: ...

    def problem(self, s) -> str | None:
        return self._problem


def test_settings_are_checked_first_then_each_steps_own_options() -> None:
    bad = settings(baselines=("black", "nope"))
    good = settings()
    steps = [Problem(None), Problem("--send: no port"), Problem("--later")]
    assert pipeline._problem(bad, steps).startswith("unknown baseline 'nope'")
    assert pipeline._problem(good, steps) == "--send: no port"  # the first step's problem
    assert pipeline._problem(good, [Problem(None)]) is None


def test_a_usage_error_stops_the_audit_before_anything_is_loaded_or_written(tmp_path) -> None:
    loaded = []
    with pytest.raises(AuditUsageError, match="--max-steps >= 2"):
        pipeline.run_audit([tmp_path], tmp_path / "out", settings(max_steps=1), progress=False,
                           model_loader=lambda s: loaded.append(s))
    with pytest.raises(AuditUsageError, match="--send: no port"):
        pipeline.run_audit([tmp_path], tmp_path / "out", settings(), progress=False,
                           model_loader=lambda s: loaded.append(s),
                           extra_steps=[Problem("--send: no port")])
    assert loaded == [] and not (tmp_path / "out").exists()


def test_the_output_folder_is_locked_for_one_audit(tmp_path) -> None:
    out = tmp_path / "out"
    stale = out / ".medig" / "records" / ".k.json.0123abcd.tmp"  # left by a killed run
    stale.parent.mkdir(parents=True)
    stale.write_text("half a record")
    lock = OutputLock(out)
    try:
        pipeline._lock(DistContext(), lock, out)
        assert not stale.exists()
        with pytest.raises(AuditError, match="in use by another medig audit"):
            pipeline._lock(DistContext(), OutputLock(out), out)
    finally:
        lock.release()
    again = OutputLock(out)
    pipeline._lock(DistContext(), again, out)  # released: free again
    again.release()


def _manifest_plan(tmp_path, **changes):
    plan = plan_for(settings(**changes))
    out = tmp_path / "out"
    store, started = pipeline._open_out_dir(out, plan, False, DistContext(),
                                            torch.device("cpu"),
                                            datetime.datetime(2024, 5, 1, 12),
                                            barrier_timeout_s=1)
    return out, plan, store, started


def test_opening_writes_the_running_manifest_and_the_ranks_pid(tmp_path) -> None:
    out, plan, store, started = _manifest_plan(tmp_path)
    assert started == "2024-05-01T12:00:00"
    manifest = read_manifest(out)
    assert manifest["status"] == "running" and manifest["settings_key"] == plan.key()
    assert (store.root / "ranks" / "rank0.pid").read_text() == str(os.getpid())


def test_other_numeric_settings_are_refused_unless_forced(tmp_path) -> None:
    out, plan, _, _ = _manifest_plan(tmp_path)
    assert pipeline._check_out_dir(out, plan, force=False) is False  # the same settings
    assert pipeline._check_out_dir(out, plan_for(settings(batch_size=1, workers=3)),
                                   force=False) is False  # speed only: resumable
    other = plan_for(settings(max_steps=64, output="logit"))
    with pytest.raises(SettingsChangedError, match=r"\(changed: max_steps, output, completeness_atol\);"):
        pipeline._check_out_dir(out, other, force=False)
    assert pipeline._check_out_dir(out, other, force=True) is True
    assert pipeline._check_out_dir(tmp_path / "new", other, force=False) is False


def test_a_forced_audit_clears_the_previous_work_but_not_its_lock(tmp_path) -> None:
    out = tmp_path / "out"
    for name in ("overlays/a.png", "attributions/a.png.npz", "report_files/baselines/b/a.png",
                 ".medig/records/k.json",
                 ".medig/arrays/k-0.npz", ".medig/overlays.json", ".medig/lock"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")
    (out / "results.jsonl").write_text("kept until rewritten")
    pipeline._clear_previous_audit(out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        [".medig", ".medig/lock", "results.jsonl"]


def _items(tmp_path, n):
    return write_inputs(tmp_path / "in", list(photographs(n, seed=40, size=64)))


def test_batches_are_cut_from_the_whole_list_and_stored_work_is_left_out(tmp_path) -> None:
    items = _items(tmp_path, 7)
    plan = plan_for(settings(batch_size=3))
    store = WorkStore(tmp_path / "out")
    shas = [sha256_file(it.path) for it in items]
    keys = [record_key(s, plan.key()) for s in shas]

    def save(i: int, **record: object) -> None:
        store.save(keys[i], {"sha256": shas[i], "frames": [], **record}, key_sha256=shas[i],
                   settings_key=plan.key())

    save(1, status="error", error="final")  # done
    save(3, status="error", error="final")
    save(4, status="error", error="final")
    save(5, status="error", error="final")
    work = pipeline._schedule(items, plan, store, DistContext())
    assert work.mine == list(range(7)) and work.shas == dict(enumerate(shas))
    assert work.keys == dict(enumerate(keys))
    # batches [0 1 2] [3 4 5] [6]: a batch with work left is recomputed whole (same batch-mates,
    # bit-identical numbers); a finished one is left out
    assert work.todo == [[0, 1, 2], [6]] and work.n_todo == 4
    save(4, status="error", error="transient", retry=True)  # to be retried: its batch again
    assert pipeline._schedule(items, plan, store, DistContext()).todo == [[0, 1, 2], [3, 4, 5],
                                                                          [6]]


def test_ranks_share_whole_batches_and_together_cover_every_input(tmp_path) -> None:
    items = _items(tmp_path, 7)
    plan = plan_for(settings(batch_size=2))
    store = WorkStore(tmp_path / "out")
    shares = [pipeline._schedule(items, plan, store, DistContext(rank=r, world_size=2))
              for r in range(2)]
    assert sorted(i for w in shares for i in w.mine) == list(range(7))
    assert not set(shares[0].mine) & set(shares[1].mine)
    batches = [[0, 1], [2, 3], [4, 5], [6]]
    for work in shares:
        assert all(b in batches for b in work.todo)  # an image keeps its batch mates
        assert set(work.shas) == set(work.mine)


def test_an_unreadable_input_hashes_to_a_key_of_its_own(tmp_path) -> None:
    items = _items(tmp_path, 1)
    gone = AuditInput(path=tmp_path / "in" / "gone.png", rel="gone.png", size=0)
    assert pipeline._hash_items([items[0], gone]) == [sha256_file(items[0].path),
                                                      unreadable_key("gone.png")]


def test_compute_audits_only_the_batches_still_to_do(tmp_path) -> None:
    items = _items(tmp_path, 5)
    plan = plan_for(settings(batch_size=2))
    out = tmp_path / "out"
    store = WorkStore(out)
    work = pipeline._schedule(items, plan, store, DistContext())
    auditor = Auditor(make_tiny(), plan, torch.device("cpu"), store, out, work.keys)
    assert pipeline._compute(auditor, items, work, DistContext(), progress=False) == 5
    assert all(store.is_done(k) for k in work.keys.values())
    # a second schedule finds everything stored: nothing to compute
    again = pipeline._schedule(items, plan, store, DistContext())
    assert again.todo == [] and pipeline._compute(auditor, items, again, DistContext(),
                                                  progress=False) == 0


def test_a_run_writes_its_phases_outputs(tmp_path) -> None:
    items = _items(tmp_path, 3)
    summary = pipeline.run_audit([tmp_path / "in"], tmp_path / "out", settings(batch_size=2),
                                 progress=False, model_loader=lambda s: _loaded())
    assert (summary.total, summary.ok, summary.errors, summary.computed) == (3, 3, 0, 3)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [r["inputs"] for r in manifest["ranks"]] == [3]
    OutputLock(tmp_path / "out").acquire().release()  # the audit let go of its lock
    assert [r["path"] for r in summary.rows] == [it.rel for it in items]


def _loaded() -> LoadedModel:
    return LoadedModel(make_tiny(), ["healthy", "referable"], input_size=32)
