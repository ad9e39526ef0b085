# SPDX-License-Identifier: Apache-2.0
"""read_image / read_frames dispatch: content sniffing, frame syntax, and every bad-input case."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from medig.io import FundusImage, ImageReadError, read_frames, read_image


def _assert_one_line_naming(exc: ImageReadError, path) -> None:
    text = str(exc)
    assert text == f"{exc.path}: {exc.reason}"
    assert exc.path == str(path) and "\n" not in text and exc.reason


def test_png_named_jpg_decodes_as_png_and_flags_mismatch(kit, tmp_path):
    rgb = kit.rgb_fundus()
    path = tmp_path / "looks_like.jpg"
    Image.fromarray(rgb).save(path, format="PNG")
    image = read_image(path)
    assert image.metadata["format"] == "png" and image.metadata["extension_mismatch"] is True
    assert np.array_equal(image.pixels.permute(1, 2, 0).numpy(), rgb)  # lossless: really PNG


def test_dicom_without_extension_and_with_jpg_extension(kit, make_dicom):
    rgb = kit.rgb_fundus()
    bare = read_image(make_dicom(rgb, name="IM000001"))
    wrong = read_image(make_dicom(rgb, name="scan.jpg"))
    assert bare.metadata["extension_mismatch"] is False
    assert wrong.metadata["extension_mismatch"] is True
    assert bare.metadata["format"] == wrong.metadata["format"] == "dicom"


def test_read_frames_of_single_image_and_frame_zero(kit, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(kit.rgb_fundus()).save(path)
    frames = read_frames(path)
    assert len(frames) == 1 and isinstance(frames[0], FundusImage)
    assert frames[0].path == str(path)
    assert read_image(f"{path}#0").path == str(path)
    with pytest.raises(ImageReadError, match="out of range"):
        read_image(f"{path}#1")


def test_hash_in_real_file_name_is_not_a_frame_index(kit, tmp_path):
    path = tmp_path / "eye#1.png"
    Image.fromarray(kit.rgb_fundus()).save(path)
    assert read_image(path).path == str(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file") as info:
        read_image(path)
    _assert_one_line_naming(info.value, path)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".dcm", ".tiff"])
def test_image_extension_with_non_image_content(tmp_path, ext):
    path = tmp_path / f"notes{ext}"
    path.write_text("Referral letter: please grade both eyes.\n")
    with pytest.raises(ImageReadError, match=f"named \\{ext} but content is not an image") as info:
        read_image(path)
    _assert_one_line_naming(info.value, path)


def test_non_image_without_image_extension(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ImageReadError, match="not a supported image") as info:
        read_image(path)
    _assert_one_line_naming(info.value, path)


def test_recognised_unsupported_formats_named(kit, tmp_path):
    for fmt, ext in (("BMP", ".bmp"), ("GIF", ".gif")):
        path = tmp_path / f"a{ext}"
        Image.fromarray(kit.rgb_fundus()).save(path, format=fmt)
        with pytest.raises(ImageReadError, match=f"unsupported image format {fmt}"):
            read_image(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="no such file") as info:
        read_image(tmp_path / "nope.png")
    _assert_one_line_naming(info.value, tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_error_survives_pickling():
    err = pickle.loads(pickle.dumps(ImageReadError("a/b.dcm", "truncated")))
    assert (err.path, err.reason, str(err)) == ("a/b.dcm", "truncated", "a/b.dcm: truncated")


def test_reason_is_forced_to_one_line():
    assert str(ImageReadError("x.png", "bad\nthing\r\n  here")) == "x.png: bad thing here"


# --------------------------------------------------------------------------- hostile files


def _read_in_subprocess(path, timeout: float = 20.0) -> str:
    """read_image in a child process, so a reader that blocks fails the test instead of hanging."""
    import subprocess
    import sys

    code = ("import sys\nfrom medig.io import read_image, ImageReadError\n"
            "try:\n    read_image(sys.argv[1])\nexcept ImageReadError as e:\n    print(e.reason)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.slow
def test_fifo_is_refused_without_being_opened(tmp_path):
    import os

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes: forever
    assert "FIFO" in _read_in_subprocess(fifo)


def test_devices_are_refused_without_being_read(tmp_path):
    import os

    with pytest.raises(ImageReadError, match="character device"):
        read_image("/dev/zero")
    link = tmp_path / "zero.dcm"
    os.symlink("/dev/zero", link)
    with pytest.raises(ImageReadError, match="character device"):
        read_image(link)


def test_broken_link_and_link_loop(tmp_path):
    import os

    os.symlink("nowhere.jpg", tmp_path / "gone.jpg")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    with pytest.raises(ImageReadError, match="broken symbolic link"):
        read_image(tmp_path / "gone.jpg")
    with pytest.raises(ImageReadError, match="loop"):
        read_image(tmp_path / "loop.jpg")


@pytest.mark.parametrize(
    ("save", "name", "fmt"),
    [("WEBP", "x.jpg", "WebP"), ("WEBP", "x.dcm", "WebP"), ("WEBP", "x", "WebP"),
     ("PDF", "report.png", "PDF")],
)
def test_recognisable_formats_are_named_even_behind_an_image_extension(kit, tmp_path, save, name,
                                                                      fmt):
    path = tmp_path / name
    Image.fromarray(kit.rgb_fundus()).save(path, format=save)
    with pytest.raises(ImageReadError, match=f"unsupported image format {fmt}"):
        read_image(path)


def test_bytes_are_read_once_then_decoded(kit, tmp_path):
    from medig.io import decode_image_bytes, read_file_bytes

    path = tmp_path / "a.png"
    Image.fromarray(kit.rgb_fundus()).save(path)
    data = read_file_bytes(path)
    path.unlink()  # decoding needs only the bytes
    (image,) = decode_image_bytes(data, path)
    assert image.path == str(path) and image.pixels.shape == (3, 48, 64)


def test_file_above_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    import medig.io.read as read_module

    monkeypatch.setattr(read_module, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(ImageReadError, match="file too large"):
        read_image(path)
