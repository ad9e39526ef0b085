# SPDX-License-Identifier: Apache-2.0
"""find_images: recursive, sorted, sniffing plus image extensions, hidden entries skipped."""

from __future__ import annotations

import pytest
from PIL import Image

from medig.io import ImageReadError, find_images


def test_finds_by_content_and_extension(kit, make_dicom, tmp_path):
    root = tmp_path / "cohort"
    (root / "b" / "masks").mkdir(parents=True)
    (root / ".cache").mkdir()
    rgb = kit.rgb_fundus(8, 8)
    Image.fromarray(rgb).save(root / "b" / "z.PNG")
    Image.fromarray(rgb).save(root / "a.jpeg")
    Image.fromarray(rgb).save(root / "b" / "masks" / "m.png")
    Image.fromarray(rgb).save(root / ".cache" / "hidden.png")
    Image.fromarray(rgb).save(root / ".hidden.png")
    Image.fromarray(rgb).save(root / "no_extension_png", format="PNG")
    (root / "corrupt.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("not an image")
    (root / "empty").write_bytes(b"")
    dicom = make_dicom(rgb, name="IM0001")
    dicom.rename(root / "IM0001")
    found = find_images([root])
    rel = [p.relative_to(root).as_posix() for p in found]
    assert rel == sorted(rel)
    assert rel == [
        "IM0001",
        "a.jpeg",
        "b/masks/m.png",
        "b/z.PNG",
        "corrupt.jpg",
        "no_extension_png",
    ]


def test_explicit_files_kept_deduplicated_and_sorted(tmp_path):
    a, b = tmp_path / "b.txt", tmp_path / "a.jpg"
    a.write_text("x")
    b.write_bytes(b"\xff\xd8\xff")
    assert find_images([a, b, a, str(b)]) == [b, a]
    assert find_images(str(b)) == [b]


def test_missing_input_raises(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        find_images([tmp_path / "missing"])


def test_entries_that_cannot_be_read_are_reported_not_dropped(kit, tmp_path):
    import os

    from medig.io import scan_inputs

    root = tmp_path / "cohort"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(kit.rgb_fundus()).save(root / "sub" / "ok.png")
    os.mkfifo(root / "pipe.jpg")
    os.mkfifo(root / "pipe_without_extension")
    os.symlink("/dev/zero", root / "zero")
    os.symlink("nowhere.jpg", root / "gone.jpg")
    os.symlink("nowhere", root / "gone.txt")  # not named like an image: not ours to report
    os.symlink("loop.dcm", root / "loop.dcm")
    (root / "empty.jpg").mkdir()
    (root / "study.dcm").mkdir()  # a folder named like an image but holding images is a folder
    Image.fromarray(kit.rgb_fundus()).save(root / "study.dcm" / "im.png")
    found, problems = scan_inputs([root])
    assert [p.relative_to(root).as_posix() for p in found] == ["study.dcm/im.png", "sub/ok.png"]
    reasons = {p.path.relative_to(root).as_posix(): p.reason for p in problems}
    assert set(reasons) == {"pipe.jpg", "pipe_without_extension", "zero", "gone.jpg",
                            "loop.dcm", "empty.jpg"}
    assert "FIFO" in reasons["pipe.jpg"] and "character device" in reasons["zero"]
    assert "broken symbolic link" in reasons["gone.jpg"] and "loop" in reasons["loop.dcm"]
    assert "directory" in reasons["empty.jpg"]
    assert find_images([root]) == found


def test_special_files_given_by_name_are_reported(tmp_path):
    import os

    from medig.io import scan_inputs

    os.mkfifo(tmp_path / "p")
    found, problems = scan_inputs([tmp_path / "p", "/dev/zero"])
    assert found == [] and [str(p.path) for p in problems] == ["/dev/zero", str(tmp_path / "p")]


def test_unlistable_folder_is_reported(kit, tmp_path, monkeypatch):
    # As root a chmod 000 folder is still readable, so the refusal is simulated at os.scandir,
    # which os.walk calls (and reports through its onerror callback).
    import os

    from medig.io import scan_inputs

    root = tmp_path / "cohort"
    (root / "locked").mkdir(parents=True)
    Image.fromarray(kit.rgb_fundus()).save(root / "ok.png")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found, problems = scan_inputs([root])
    assert [p.name for p in found] == ["ok.png"]
    assert [(p.path.name, p.is_folder) for p in problems] == [("locked", True)]
    assert "permission denied" in problems[0].reason


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root reads any folder")
def test_unreadable_folder_really_unreadable(kit, tmp_path):
    from medig.io import scan_inputs

    locked = tmp_path / "locked"
    locked.mkdir()
    Image.fromarray(kit.rgb_fundus()).save(locked / "x.png")
    locked.chmod(0)
    try:
        _, problems = scan_inputs([tmp_path])
    finally:
        locked.chmod(0o755)
    assert [p.path for p in problems] == [locked]
