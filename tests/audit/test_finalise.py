# SPDX-License-Identifier: Apache-2.0
"""``finalise_audit``: from stored work to overlays at one colour scale, ``results.*``, the
manifest, the report and the audit steps; rank reports; ``frames_of``."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

import medig.audit.finalise as finalise
from medig.audit.auditor import Auditor
from medig.audit.distributed import DistContext
from medig.audit.errors import AuditError
from medig.audit.finalise import finalise_audit, frames_of, read_rank_reports, write_rank_report
from medig.audit.inputs import AuditInput
from medig.audit.records import read_results
from medig.audit.store import WorkStore, record_key, unreadable_key
from medig.utils import sha256_file
from medig.visualize import cohort_clip_value, overlay, side_by_side
from tests.audit.steps.kit import decoded, photographs, plan_for, settings, write_inputs
from tests.audit.tiny_models import make_tiny

RUN = "2024-05-01T12:00:00+00:00"


@pytest.fixture
def stored(tmp_path):
    """Stored work of an audit of 5 inputs: 3 explained, one whose record says it failed, one
    never audited (an interrupted run), and one that could not even be read."""
    pixels = list(photographs(4, seed=50))
    items = write_inputs(tmp_path / "in", pixels, ["a.png", "b.png", "c.png", "failed.png"])
    items.append(AuditInput(path=tmp_path / "in" / "lost.png", rel="lost.png", size=0))
    plan = plan_for(settings(percentile=99.0))
    out = tmp_path / "out"
    store = WorkStore(out)
    sha_of = {it.rel: sha256_file(it.path) for it in items[:4]}
    sha_of["lost.png"] = unreadable_key("lost.png")
    keys = {i: record_key(sha_of[it.rel], plan.key()) for i, it in enumerate(items)}
    auditor = Auditor(make_tiny(), plan, torch.device("cpu"), store, out, keys)
    auditor.audit_batch(decoded(items[:3], pixels[:3]), items,
                        {i: sha_of[items[i].rel] for i in range(3)})
    store.save(keys[3], {"sha256": sha_of["failed.png"], "status": "error",
                         "error": "could not be audited: RuntimeError: boom", "frames": []},
               key_sha256=sha_of["failed.png"], settings_key=plan.key())
    write_rank_report(store, DistContext(), RUN, sha_of, computed=4, seconds=1.5)
    return out, plan, items, store, keys


def _finalise(stored, plan=None, steps=((), ())):
    out, default, items, _, _ = stored
    return finalise_audit(out, plan or default, items, RUN, "cpu", steps=steps)


def test_rows_follow_the_inputs_and_every_input_has_one(stored) -> None:
    out, _, items, _, _ = stored
    summary = _finalise(stored)
    rows = summary.rows
    assert [r["path"] for r in rows] == [it.rel for it in items]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "error", "error"]
    assert rows[3]["error"] == "could not be audited: RuntimeError: boom"
    assert rows[4]["error"] == "not audited (interrupted run?)" and rows[4]["sha256"] is None
    for row, it in zip(rows[:3], items):
        assert row["sha256"] == sha256_file(it.path) and row["overlay"] == f"overlays/{it.rel}.png"
        assert "frame" not in row and (out / row["overlay"]).is_file()
    assert read_results(out / "results.jsonl") == json.loads(json.dumps(rows))
    ok = rows[:3]
    assert (summary.total, summary.ok, summary.errors) == (5, 3, 2)
    assert summary.flagged == sum(r["flagged"] for r in ok)
    assert summary.mean_steps == pytest.approx(np.mean([r["n_steps"] for r in ok]))
    assert summary.report == out / "report.pdf" and summary.report.is_file()


def test_the_manifest_is_complete_with_counts_scale_and_ranks(stored) -> None:
    out, plan, _, store, keys = stored
    _finalise(stored)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["settings_key"] == plan.key()
    flagged = sum(r["flagged"] for r in read_results(out / "results.jsonl") if r["status"] == "ok")
    assert manifest["counts"] == {"total": 5, "ok": 3, "error": 2, "flagged": flagged}
    assert manifest["ranks"] == [{"rank": 0, "inputs": 5, "computed": 4, "seconds": 1.5}]
    sketches = [store.load_arrays(keys[i], 0, "sketch")["sketch"] for i in range(3)]
    assert manifest["cohort_clip"] == pytest.approx(cohort_clip_value(sketches, 99.0))


def test_overlays_are_drawn_at_the_cohort_scale_once(stored, monkeypatch) -> None:
    out, plan, _, store, keys = stored
    _finalise(stored)
    cohort = json.loads((out / "manifest.json").read_text())["cohort_clip"]
    arrays = store.load_arrays(keys[0], 0)
    amap = arrays["attr_map"].astype(np.float32) * float(arrays["attr_scale"])
    expected = side_by_side(arrays["image"], overlay(arrays["image"].astype(np.float32) / 255,
                                                     amap, arrays["fov"], cohort))
    drawn = np.asarray(Image.open(out / "overlays" / "a.png.png").convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(drawn, np.asarray(expected))

    rendered = []
    real = finalise._render_overlay
    monkeypatch.setattr(finalise, "_render_overlay",
                        lambda path, *a: rendered.append(path.name) or real(path, *a))
    _finalise(stored)  # re-finalised with the same work and scale: nothing drawn again
    assert rendered == []
    (out / "overlays" / "b.png.png").unlink()
    _finalise(stored)
    assert rendered == ["b.png.png"]  # only what is missing
    rendered.clear()
    per_image = dataclasses.replace(plan, settings=dataclasses.replace(plan.settings,
                                                                       overlay_scale="image"))
    _finalise(stored, per_image)  # another scale: every overlay again, each at its own clip
    assert sorted(rendered) == ["a.png.png", "b.png.png", "c.png.png"]
    assert json.loads((out / "manifest.json").read_text())["cohort_clip"] is None


def test_steps_run_before_the_results_and_after_the_report(stored) -> None:
    out = stored[0]
    seen = []

    def before(audit) -> None:
        seen.append(("before", (out / "results.jsonl").exists(), len(audit.rows)))
        audit.manifest["extra"] = {"from": "a step"}
        audit.rows[0]["laterality"] = "L"  # rows may still be completed

    def after(audit) -> None:
        seen.append(("after", (out / "report.pdf").is_file(), audit.model is None))

    _finalise(stored, steps=([before], [after]))
    assert seen == [("before", False, 5), ("after", True, True)]
    assert json.loads((out / "manifest.json").read_text())["extra"] == {"from": "a step"}
    assert read_results(out / "results.jsonl")[0]["laterality"] == "L"


def test_frames_of_lists_the_explained_frames_only(stored) -> None:
    _, _, items, store, keys = stored
    key_of = {it.rel: keys[i] for i, it in enumerate(items)}
    records = {it.rel: store.load(key_of[it.rel]) for it in items}
    records["b.png"] = {**records["b.png"], "frames": [
        {**records["b.png"]["frames"][0], "status": "skipped", "frame": 0},
        {**records["b.png"]["frames"][0], "frame": 1}]}
    frames = frames_of(store, items, key_of, records)
    assert [(it.rel, row["frame"]) for it, row, _ in frames] == \
        [("a.png", None), ("b.png", 1), ("c.png", None)]
    assert [k for *_, k in frames] == [keys[0], keys[1], keys[2]]
    assert len(frames_of(store, items, key_of)) == 3  # read from the store


def test_rank_reports_name_the_rank_that_did_not_report(stored) -> None:
    _, _, _, store, _ = stored
    [report] = read_rank_reports(store, RUN, 1)
    assert report["rank"] == 0 and report["inputs"] == 5 and report["run"] == RUN
    with pytest.raises(AuditError, match=r"rank 1 did not report for this run \(.*rank1\.json\)"):
        read_rank_reports(store, RUN, 2)
    with pytest.raises(AuditError, match="rank 0 did not report for this run"):
        read_rank_reports(store, "another run", 1)  # a stale report of an earlier run


@pytest.fixture
def stored_two_baselines(tmp_path):
    """Stored work of an audit of 2 inputs against two baselines (black and blur, averaged)."""
    pixels = list(photographs(2, seed=51))
    items = write_inputs(tmp_path / "in", pixels, ["a.png", "b.png"])
    plan = plan_for(settings(baselines=("black", "blur")))
    out = tmp_path / "out"
    store = WorkStore(out)
    sha_of = {it.rel: sha256_file(it.path) for it in items}
    keys = {i: record_key(sha_of[it.rel], plan.key()) for i, it in enumerate(items)}
    auditor = Auditor(make_tiny(), plan, torch.device("cpu"), store, out, keys)
    auditor.audit_batch(decoded(items, pixels), items, {i: sha_of[it.rel] for i, it in
                                                        enumerate(items)})
    write_rank_report(store, DistContext(), RUN, sha_of, computed=2, seconds=1.0)
    return out, plan, items, store, keys


def _own(out, baseline, name):
    return np.asarray(Image.open(out / "report_files" / "baselines" / baseline / f"{name}.png")
                      .convert("RGB")).transpose(2, 0, 1)


def test_each_baseline_s_overlay_is_drawn_at_the_cohort_scale_once(stored_two_baselines,
                                                                    monkeypatch) -> None:
    out, plan, items, store, keys = stored_two_baselines
    finalise_audit(out, plan, items, RUN, "cpu")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["baseline_overlays"] == {"black": "report_files/baselines/black",
                                             "blur": "report_files/baselines/blur"}
    arrays = store.load_arrays(keys[0], 0)
    image = arrays["image"].astype(np.float32) / 255
    for k, baseline in enumerate(["black", "blur"]):
        amap = arrays["baseline_maps"][k:k + 1].astype(np.float32) * arrays["baseline_scales"][k]
        expected = overlay(image, amap, arrays["fov"], manifest["cohort_clip"])
        assert np.array_equal(_own(out, baseline, "a.png"), np.asarray(expected))
    assert not np.array_equal(_own(out, "black", "a.png"), _own(out, "blur", "a.png"))

    rendered = []
    real = finalise._render_own
    monkeypatch.setattr(finalise, "_render_own",
                        lambda path, *a: rendered.append(path.parent.name + "/" + path.name)
                        or real(path, *a))
    finalise_audit(out, plan, items, RUN, "cpu")  # same work, same scale: nothing drawn again
    assert rendered == []
    (out / "report_files" / "baselines" / "blur" / "b.png.png").unlink()
    finalise_audit(out, plan, items, RUN, "cpu")
    assert rendered == ["blur/b.png.png"]  # only what is missing


def test_work_stored_without_per_baseline_maps_gets_no_baseline_overlays(stored_two_baselines,
                                                                         monkeypatch) -> None:
    out, plan, items, store, keys = stored_two_baselines
    # b.png's work as an older medig stored it: no per-baseline maps
    old = {k: v for k, v in store.load_arrays(keys[1], 0).items() if not k.startswith("baseline")}
    store.save_arrays(keys[1], 0, **old)
    (out / "report_files" / "baselines" / "black").mkdir(parents=True)
    (out / "report_files" / "baselines" / "black" / "b.png.png").write_bytes(b"stale")
    summary = finalise_audit(out, plan, items, RUN, "cpu")
    assert summary.ok == 2 and not store.damaged
    assert (out / "overlays" / "b.png.png").is_file()
    assert not list((out / "report_files").rglob("b.png.png"))  # the stale one is gone too
    assert (out / "report_files" / "baselines" / "blur" / "a.png.png").is_file()
    loads = []
    real = store.load_arrays
    monkeypatch.setattr(WorkStore, "load_arrays",
                        lambda self, *a, **k: loads.append(a) or real(*a, **k))
    finalise_audit(out, plan, items, RUN, "cpu")
    assert [a for a in loads if "image" in a] == []  # known to be absent: not drawn, not looked
    # for again (the sketches are read for the cohort scale, as always)
