# SPDX-License-Identifier: Apache-2.0
"""Inputs and decoding workers: what cannot be read becomes a row, a dead or hung worker too."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import medig.audit.inputs as inputs_module
from medig.audit import read_results
from medig.audit.inputs import AuditInput, collect_inputs, decode_batches
from medig.cli import EXIT_OK
from tests.audit.conftest import TINY
from tests.io.conftest import build_dicom, rgb_fundus

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.slow
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


@pytest.mark.slow
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


# An audit whose decoding worker cannot create its shared-memory tensors: the file-size limit
# makes sizing the segment fail with EFBIG (Python ignores SIGXFSZ), as a full /dev/shm fails with
# ENOSPC. The limit is below one decoded image (3 x 600 x 600 bytes) and above every output.
_LIMITED_AUDIT = """
import resource, sys
import medig.audit.inputs as inputs
from medig.cli import main
inputs.DECODE_TIMEOUT_S = 40.0  # a hang wait, if the death were missed, stays bounded
resource.setrlimit(resource.RLIMIT_FSIZE, (900_000, resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_worker_that_cannot_share_memory_is_noticed_at_once(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    names = [f"{k}.png" for k in range(3)]
    for k, name in enumerate(names):
        Image.fromarray(rgb_fundus(600, 600, seed=k)).save(folder / name)
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", _LIMITED_AUDIT, "audit", str(folder), "--out", str(out),
           "--model", TINY, "--classes", "healthy", "referable", "--size", "64",
           "--batch-size", "2", "--workers", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    done = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    seconds = time.monotonic() - start
    assert done.returncode == EXIT_OK, done.stderr
    assert seconds < 35  # far below one hang timeout
    assert "Traceback" not in done.stderr  # no worker traceback on the console
    lines = [line for line in done.stderr.splitlines() if "/dev/shm" in line]
    assert len(lines) == 1 and "File too large" in lines[0] and "--workers 0" in lines[0]
    rows = read_results(out / "results.jsonl")
    assert sorted(r["path"] for r in rows) == names
    assert all(r["status"] == "ok" for r in rows)


def test_share_failure_is_decoded_here_and_later_batches_too(tmp_path, monkeypatch, caplog):
    # The worker's share step raising (as on a full /dev/shm): the same pixels come back, decoded
    # in this process, for this batch and every later one, with one warning.
    def full(decoded):
        raise RuntimeError("unable to write to file </torch_1_2_0>: No space left on device (28)")

    monkeypatch.setattr(inputs_module, "_share_tensors", full, raising=False)
    names = ["a.png", "b.png", "c.png", "d.png"]
    items = _items(tmp_path, names)
    with caplog.at_level("WARNING", logger="medig"):
        got = [d for batch in decode_batches(items, [[0, 1], [2], [3]], workers=2, timeout_s=60)
               for d in batch]
    assert [(d.index, d.error, d.share_error) for d in got] == [(k, None, None) for k in range(4)]
    for d, name in zip(got, names):
        pixels = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        assert np.array_equal(d.frames[0].permute(1, 2, 0).numpy(), pixels)
    warned = [r.getMessage() for r in caplog.records if "/dev/shm" in r.getMessage()]
    assert len(warned) == 1 and "No space left on device" in warned[0]
    assert "torch_1_2_0" not in warned[0]
