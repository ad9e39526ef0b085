# SPDX-License-Identifier: Apache-2.0
"""``Auditor``: one record per input from the batch steps, and a failure kept to its own file."""
from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from medig.attr.outputs import GroupProbability, SoftmaxOutput
from medig.audit.auditor import Auditor
from medig.audit.inputs import AuditInput, DecodedInput
from medig.audit.steps import ImageBatch
from medig.audit.store import WorkStore, record_key
from medig.preprocess import FundusPreprocess
from medig.utils import sha256_file
from tests.audit.steps.kit import (
    CLASSES,
    SIZE,
    decoded,
    keys_of,
    photographs,
    plan_for,
    settings,
    write_inputs,
)
from tests.audit.tiny_models import make_tiny


def _auditor(tmp_path, items, **changes) -> Auditor:
    s = settings(**changes)
    plan = plan_for(s)
    out = tmp_path / "out"
    keys = dict(enumerate(keys_of(items, plan)))
    return Auditor(make_tiny(), plan, torch.device("cpu"), WorkStore(out), out, keys)


def _inputs(tmp_path, n=3, seed=20, names=None):
    pixels = list(photographs(n, seed=seed))
    items = write_inputs(tmp_path / "in", pixels, names)
    return items, pixels, {i: sha256_file(it.path) for i, it in enumerate(items)}


class FailFor:
    """A step that fails any batch holding ``rel`` (as a step may fail on one bad image)."""

    def __init__(self, rel: str) -> None:
        self.rel, self.calls = rel, 0

    def __call__(self, batch: ImageBatch) -> None:
        self.calls += 1
        if any(it.rel == self.rel for it in batch.inputs):
            raise RuntimeError(f"cannot explain\n  {self.rel}")


def test_the_context_is_composed_from_the_plan(tmp_path) -> None:
    items, _, _ = _inputs(tmp_path, n=1)
    auditor = _auditor(tmp_path, items, baselines=("black", "blur"))
    ctx = auditor.ctx
    assert isinstance(ctx.forward, SoftmaxOutput) and ctx.ig.baselines == ["black", "blur"]
    assert ctx.class_names == CLASSES and ctx.target is None and ctx.device.type == "cpu"
    logit = _auditor(tmp_path, items, output="logit").ctx
    assert logit.forward is logit.model  # the logit is the model's own output
    group = _auditor(tmp_path, items, target="sick=1").ctx
    assert isinstance(group.forward, GroupProbability)


def test_every_input_gets_a_stored_ok_record(tmp_path) -> None:
    items, pixels, shas = _inputs(tmp_path)
    auditor = _auditor(tmp_path, items)
    records = auditor.audit_batch(decoded(items, pixels), items, shas)
    images, _ = FundusPreprocess(size=SIZE)(pixels)
    with torch.no_grad():
        probs = torch.softmax(make_tiny()(images).double(), dim=1)
    for i, record in enumerate(records):
        stored = auditor.ctx.store.load(auditor.keys[i])
        assert stored is not None and stored["key_sha256"] == shas[i]
        assert record == {k: v for k, v in stored.items()
                          if k not in ("key_sha256", "settings_key", "digest")}
        assert record["status"] == "ok" and record["sha256"] == shas[i] and record["error"] is None
        [row] = record["frames"]
        assert row["frame"] is None and row["status"] == "ok"
        assert row["predicted_index"] == int(probs[i].argmax())
        assert row["probabilities"] == {c: pytest.approx(float(p), rel=1e-5)
                                        for c, p in zip(CLASSES, probs[i])}
        assert row["quality"] == "gradeable" and isinstance(row["faithfulness"], float)
        assert auditor.ctx.store.array_path(auditor.keys[i], 0).is_file()


def test_one_failing_image_gets_an_error_row_and_its_batch_mates_are_ok(tmp_path) -> None:
    items, pixels, shas = _inputs(tmp_path, n=3)
    auditor = _auditor(tmp_path, items)
    store = auditor.ctx.store
    # Work already stored (an earlier batch) must survive whatever this batch does.
    earlier = record_key("e" * 64, auditor.settings_key)
    store.save(earlier, {"sha256": "e" * 64, "status": "error", "error": "x", "frames": []},
               key_sha256="e" * 64, settings_key=auditor.settings_key)
    store.save_arrays(earlier, 0, image=torch.ones(2).numpy())
    kept = (store.record_path(earlier).read_bytes(), store.array_path(earlier, 0).read_bytes())
    fail = FailFor(items[1].rel)
    auditor.steps.insert(5, fail)  # after Predict, before Explain
    records = auditor.audit_batch(decoded(items, pixels), items, shas)

    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    bad = records[1]
    assert bad["error"] == "could not be audited: RuntimeError: cannot explain img1.png"
    assert bad["retry"] is True and bad["frames"] == [] and bad["sha256"] == shas[1]
    assert not store.is_done(auditor.keys[1])  # retried by the next run
    assert fail.calls == 4  # the whole batch, then each image alone
    for i in (0, 2):
        assert store.is_done(auditor.keys[i]) and store.array_path(auditor.keys[i], 0).is_file()
        assert records[i]["frames"][0]["status"] == "ok"
    assert not store.array_path(auditor.keys[1], 0).exists()
    assert (store.record_path(earlier).read_bytes(),
            store.array_path(earlier, 0).read_bytes()) == kept

    # The image's numbers do not depend on whether it was audited with its batch mates.
    alone = _auditor(tmp_path / "again", items)
    good = alone.audit_batch(decoded(items, pixels)[:1], items, shas)[0]["frames"][0]
    assert good["score"] == records[0]["frames"][0]["score"]


def test_a_batch_of_one_that_fails_is_not_retried_inside_the_batch(tmp_path) -> None:
    items, pixels, shas = _inputs(tmp_path, n=1)
    auditor = _auditor(tmp_path, items)
    fail = FailFor(items[0].rel)
    auditor.steps.insert(0, fail)
    [record] = auditor.audit_batch(decoded(items, pixels), items, shas)
    assert record["status"] == "error" and record["retry"] is True and fail.calls == 1


def test_read_errors_are_final_unless_not_about_the_content(tmp_path) -> None:
    items, pixels, shas = _inputs(tmp_path, n=3)
    auditor = _auditor(tmp_path, items)
    batch = decoded(items, pixels)
    batch[0] = DecodedInput(index=0, frames=[], metadata=[], masks=[], error="not an image",
                            sha256=shas[0])
    batch[2] = DecodedInput(index=2, frames=[], metadata=[], masks=[], error="vanished",
                            retry=True)
    records = auditor.audit_batch(batch, items, shas)
    assert records[0] == {"sha256": shas[0], "status": "error", "error": "not an image",
                          "frames": []}
    assert auditor.ctx.store.is_done(auditor.keys[0])  # final, like the file's bytes
    assert records[2]["retry"] is True and records[2]["sha256"] is None
    assert records[1]["status"] == "ok"


def test_frames_of_a_multi_frame_file_are_rows_of_one_record(tmp_path) -> None:
    items, pixels, shas = _inputs(tmp_path, n=2)
    auditor = _auditor(tmp_path, items)
    batch = decoded(items, pixels)
    frames = torch.stack([pixels[1], photographs(1, seed=30)[0], pixels[0]])
    batch[1] = DecodedInput(index=1, frames=frames, masks=[None] * 3,
                            metadata=[{"format": "dicom"}] * 3, sha256=shas[1])
    records = auditor.audit_batch(batch, items, shas)
    assert [row["frame"] for row in records[1]["frames"]] == [0, 1, 2]
    for k in range(3):
        assert auditor.ctx.store.array_path(auditor.keys[1], k).is_file()
    # frame 2 is the first file's photograph: the same numbers
    assert records[1]["frames"][2]["score"] == pytest.approx(records[0]["frames"][0]["score"],
                                                             rel=1e-5)
    assert len(records[0]["frames"]) == 1 and records[0]["frames"][0]["frame"] is None


def test_images_the_quality_gate_skips_are_rows_of_their_own(tmp_path) -> None:
    items, pixels, shas = _inputs(tmp_path, n=2)
    white = torch.full((3, 140, 180), 255, dtype=torch.uint8)
    items += write_inputs(tmp_path / "in", [white], ["white.png"])
    shas[2] = sha256_file(items[2].path)
    auditor = _auditor(tmp_path, items, quality="skip")
    records = auditor.audit_batch(decoded(items, [*pixels, white]), items, shas)
    assert [r["status"] for r in records] == ["ok", "ok", "ok"]  # a skip is no error
    [row] = records[2]["frames"]
    assert row["status"] == "skipped" and row["quality"] == "ungradeable" and row["frame"] is None
    assert "score" not in row
    assert not auditor.ctx.store.array_path(auditor.keys[2], 0).exists()
    assert all(r["frames"][0]["status"] == "ok" for r in records[:2])
    # a batch the gate empties still stores its record (no step runs on an empty batch)
    [alone] = _auditor(tmp_path / "alone", items, quality="skip").audit_batch(
        decoded(items, [*pixels, white])[2:], items, shas)
    assert alone["status"] == "ok" and alone["frames"] == records[2]["frames"]


def _jpeg(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_jpegs_left_undecoded_are_decoded_on_the_device_one_bad_file_alone(tmp_path) -> None:
    pixels = list(photographs(2, seed=31))
    data = [_jpeg(pixels[0]), b"\xff\xd8\xff\xe0 truncated", _jpeg(pixels[1])]
    items = []
    for i, blob in enumerate(data):
        path = tmp_path / "in" / f"j{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        items.append(AuditInput(path=path, rel=path.name, size=len(blob)))
    shas = {i: sha256_file(it.path) for i, it in enumerate(items)}
    auditor = _auditor(tmp_path, items)
    batch = [DecodedInput(index=i, frames=[], metadata=[], masks=[None], jpeg=blob,
                          sha256=shas[i]) for i, blob in enumerate(data)]
    records = auditor.audit_batch(batch, items, shas)
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert "JPEG" in records[1]["error"] and "retry" not in records[1]  # the bytes: final
    assert all(d.jpeg is None for d in batch)  # the bytes are let go
    assert batch[0].metadata == [{"format": "jpeg", "width": 160, "height": 160, "frames": 1,
                                  "decoded_on": "cpu"}]
    saved = json.loads(auditor.ctx.store.record_path(auditor.keys[2]).read_text())
    assert saved["frames"][0]["status"] == "ok"
