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
