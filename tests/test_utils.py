# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import hashlib
import os

import pytest

from medig.utils import atomic_path, atomic_write, sha256_file


def test_atomic_write_replaces_and_keeps_usual_permissions(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_text() == "second"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_sha256_file(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk_size=1 << 16) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- hostile inputs


@pytest.mark.parametrize("name", ["a" * 238 + ".json", "b" * 255, "\u773c" * 79 + ".jpg.png",
                                  "c" * 240 + "\u773c" * 5])
def test_atomic_write_to_names_up_to_name_max(tmp_path, name):
    # The temporary name used to add 18 bytes to the target's: 238-byte names failed.
    target = tmp_path / name
    atomic_write(target, b"data")
    assert target.read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_temporary_names_fit_whatever_the_target(tmp_path):
    from medig.utils import NAME_MAX, _temporary_prefix

    for name in ("x" * 255, "\u773c" * 85, os.fsdecode(b"\xff" * 255), "\u00e9" * 127 + "x"):
        prefix = _temporary_prefix(name)
        assert len(os.fsencode(prefix)) + 8 + len(".tmp") <= NAME_MAX
        assert prefix.startswith(".") and prefix.endswith(".")


def test_stale_temporaries_removed_others_kept(tmp_path):
    from medig.utils import remove_stale_temporaries

    (tmp_path / "overlays").mkdir()
    ours = [tmp_path / ".report.pdf.k2j4_8xq.tmp", tmp_path / "overlays" / ".a.png.abcdefgh.tmp"]
    theirs = [tmp_path / "notes.tmp", tmp_path / ".report.pdf.tmp", tmp_path / "report.pdf",
              tmp_path / ".x.ABCDEFGH.tmp"]
    for p in ours + theirs:
        p.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path) == 2
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)
    fresh = tmp_path / ".r.pdf.abcdefgh.tmp"
    fresh.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path, older_than_s=3600) == 0 and fresh.exists()


def test_sha256_file_never_opens_a_fifo(tmp_path):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        sha256_file(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        sha256_file("/dev/zero")
