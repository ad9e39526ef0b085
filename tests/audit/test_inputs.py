# SPDX-License-Identifier: Apache-2.0
"""Inputs and decoding workers: what cannot be read becomes a row, a dead or hung worker too."""
from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import medig.audit.inputs as inputs_module
from medig.audit.inputs import AuditInput, collect_inputs, decode_batches
from tests.io.conftest import build_dicom, rgb_fundus


def _items(folder: Path, names: list[str]) -> list[AuditInput]:
    out = []
    for name in names:
        path = folder / name
        if not path.exists():
            Image.fromarray(rgb_fundus(48, 64, seed=len(out))).save(path)
        out.append(AuditInput(path, name, path.stat().st_size))
    return out


def test_multi_frame_file_comes_back_as_one_tensor(tmp_path):
    frames = np.stack([rgb_fundus(48, 64, seed=s) for s in range(5)])
    build_dicom(frames).save_as(tmp_path / "multi.dcm", enforce_file_format=True)
    items = _items(tmp_path, ["multi.dcm", "a.png"])
    (multi, single), = decode_batches(items, [[0, 1]], workers=1)
    assert isinstance(multi.frames, torch.Tensor) and tuple(multi.frames.shape) == (5, 3, 48, 64)
    assert np.array_equal(multi.frames[2].permute(1, 2, 0).numpy(), frames[2])
    assert len(multi.metadata) == 5 and tuple(single.frames.shape) == (1, 3, 48, 64)


def test_worker_sees_the_bytes_it_hashes(tmp_path):
    items = _items(tmp_path, ["a.png"])
    (decoded,), = decode_batches(items, [[0]], workers=0)
    assert decoded.sha256 == hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()
    assert decoded.error is None and not decoded.retry


def test_file_system_errors_are_retried_content_errors_are_final(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    items = _items(tmp_path, ["bad.jpg", "gone.png"])
    (tmp_path / "gone.png").unlink()  # vanished after it was found
    bad, gone = next(decode_batches(items, [[0, 1]], workers=0))
    assert bad.error and not bad.retry and bad.sha256  # about these bytes: final
    assert gone.error == "no such file" and gone.retry and gone.sha256 is None


def _dying_reader(real):
    def read(data, path, **kwargs):
        name = Path(os.fspath(path)).name
        if name == "kill.png":
            os.kill(os.getpid(), signal.SIGKILL)  # a decoder crash, or the OOM killer
        if name == "hang.png":
            time.sleep(120)  # a decoder stuck in a loop
        return real(data, path, **kwargs)

    return read


def test_dead_or_hung_worker_becomes_an_error_row_not_a_hang(tmp_path, monkeypatch):
    # The DataLoader workers are forked, so they decode with the patched reader.
    monkeypatch.setattr(inputs_module, "decode_image_bytes",
                        _dying_reader(inputs_module.decode_image_bytes))
    names = ["a.png", "kill.png", "b.png", "c.png", "hang.png", "d.png", "e.png"]
    items = _items(tmp_path, names)
    batches = [[0, 1], [2, 3], [4, 5], [6]]
    start = time.monotonic()
    got = [d for batch in decode_batches(items, batches, workers=2, timeout_s=2)
           for d in batch]
    assert time.monotonic() - start < 60
    assert [d.index for d in got] == list(range(7))  # every file once, in order
    by_name = {names[d.index]: d for d in got}
    assert "died" in by_name["kill.png"].error and by_name["kill.png"].retry
    assert "longer than 2 s" in by_name["hang.png"].error and by_name["hang.png"].retry
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png"):
        assert by_name[name].error is None and by_name[name].frames.shape[0] == 1, name


def test_entries_that_cannot_be_read_become_inputs_with_an_error(tmp_path):
    root = tmp_path / "cohort"
    root.mkdir()
    Image.fromarray(rgb_fundus()).save(root / "ok.png")
    os.mkfifo(root / "pipe.jpg")
    os.symlink("nowhere.jpg", root / "gone.jpg")
    (root / "empty.dcm").mkdir()
    items = collect_inputs([root])
    assert [(i.rel, i.error is None) for i in items] == [
        ("empty.dcm/", False), ("gone.jpg", False), ("ok.png", True), ("pipe.jpg", False)]
    decoded = next(decode_batches(items, [[0, 1, 2, 3]], workers=0))
    assert [d.retry for d in decoded] == [True, True, False, True]
    assert "FIFO" in decoded[3].error


def test_item_vanishing_between_discovery_and_stat(tmp_path, monkeypatch):
    root = tmp_path / "cohort"
    root.mkdir()
    Image.fromarray(rgb_fundus()).save(root / "ok.png")
    real = inputs_module.scan_inputs

    def scan(paths):
        found, problems = real(paths)
        (root / "ok.png").unlink()
        return found, problems

    monkeypatch.setattr(inputs_module, "scan_inputs", scan)
    (item,) = collect_inputs([root])
    assert item.rel == "ok.png" and item.size == 0


def test_slow_but_live_worker_is_waited_for(tmp_path, monkeypatch):
    # The loader wakes up every poll interval to check its workers; waiting on after such a
    # wake-up must pick the batch up normally (a slow decode is not a hang).
    real = inputs_module.decode_image_bytes

    def slow(data, path, **kwargs):
        if Path(os.fspath(path)).name == "slow.png":
            time.sleep(2.5)
        return real(data, path, **kwargs)

    monkeypatch.setattr(inputs_module, "decode_image_bytes", slow)
    monkeypatch.setattr(inputs_module, "_POLL_S", 0.5)
    items = _items(tmp_path, ["a.png", "slow.png", "b.png"])
    got = [d for batch in decode_batches(items, [[0], [1], [2]], workers=1, timeout_s=30)
           for d in batch]
    assert [(d.index, d.error) for d in got] == [(0, None), (1, None), (2, None)]
