# SPDX-License-Identifier: Apache-2.0
"""JPEG / PNG / TIFF decoding through Pillow and the documented 8-bit RGB conversion rule."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps, TiffImagePlugin, TiffTags

from medig.io import MAX_PIXELS, ImageReadError, read_image


def _hwc(image) -> np.ndarray:
    return image.pixels.permute(1, 2, 0).numpy()


def _grey3(image) -> np.ndarray:
    px = image.pixels
    assert torch.equal(px[0], px[1]) and torch.equal(px[1], px[2]), "grey must be replicated"
    return px[0].numpy()


def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


@pytest.mark.parametrize("ext, fmt", [(".png", "png"), (".tif", "tiff")])
def test_lossless_8bit_rgb_exact(kit, tmp_path, ext, fmt):
    rgb = kit.rgb_fundus()
    path = tmp_path / f"a{ext}"
    Image.fromarray(rgb).save(path)
    image = read_image(path)
    assert image.pixels.dtype == torch.uint8 and image.pixels.shape == (3, 48, 64)
    assert image.pixels.is_contiguous()
    assert np.array_equal(_hwc(image), rgb)
    assert image.metadata["format"] == fmt and image.metadata["bits_stored"] == 8


def test_jpeg_equals_pillow_and_is_close_to_source(kit, tmp_path):
    rgb = kit.rgb_fundus(96, 128)
    path = tmp_path / "a.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    image = read_image(path)
    assert np.array_equal(_hwc(image), np.asarray(Image.open(path).convert("RGB")))
    assert np.abs(_hwc(image).astype(int) - rgb.astype(int)).mean() < 3
    assert image.metadata["format"] == "jpeg"


def test_16bit_greyscale_png_scaled_by_full_depth(tmp_path):
    values = np.linspace(0, 65535, 40 * 40).astype(np.uint16).reshape(40, 40)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    grey = _grey3(read_image(path))
    expected = np.floor(values / 257.0 + 0.5).astype(np.uint8)  # 255/65535 == 1/257
    assert np.array_equal(grey, expected)


def test_16bit_png_with_sbit_scaled_by_declared_12_bits(tmp_path):
    values = np.linspace(0, 4095, 40 * 40).astype(np.uint16).reshape(40, 40)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "PNG")
    raw = buf.getvalue()
    ihdr_end = 8 + 8 + 13 + 4
    path = tmp_path / "g12.png"
    path.write_bytes(raw[:ihdr_end] + _png_chunk(b"sBIT", bytes([12])) + raw[ihdr_end:])
    image = read_image(path)
    grey = _grey3(image)
    assert grey.max() == 255  # a 12-bit sensor's white is white, not 1/16 grey
    assert np.array_equal(grey, np.floor(values.astype(float) * 255 / 4095 + 0.5).astype(np.uint8))
    assert image.metadata["bits_stored"] == 12


def test_16bit_tiff_and_max_sample_value(tmp_path):
    values = np.linspace(0, 1023, 32 * 32).astype(np.uint16).reshape(32, 32)
    plain, declared = tmp_path / "g16.tif", tmp_path / "g10.tif"
    Image.fromarray(values).save(plain)
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[281] = 1023  # MaxSampleValue: a 10-bit sensor
    info.tagtype[281] = TiffTags.SHORT
    Image.fromarray(values).save(declared, tiffinfo=info)
    assert np.array_equal(_grey3(read_image(plain)), np.floor(values / 257 + 0.5).astype(np.uint8))
    assert np.array_equal(
        _grey3(read_image(declared)),
        np.floor(values.astype(float) * 255 / 1023 + 0.5).astype(np.uint8),
    )


@pytest.mark.parametrize("mode", ["L", "1", "LA"])
def test_greyscale_modes_replicated(kit, tmp_path, mode):
    grey = kit.rgb_fundus()[..., 0]
    im = Image.fromarray(grey).convert(mode)
    path = tmp_path / "g.png"
    im.save(path)
    expected = np.asarray(im.convert("L"))
    assert np.array_equal(_grey3(read_image(path)), expected)


def test_rgba_alpha_dropped_not_composited(kit, tmp_path):
    rgb = kit.rgb_fundus()
    alpha = np.zeros(rgb.shape[:2], np.uint8)  # fully transparent: pixels must survive anyway
    path = tmp_path / "a.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    assert np.array_equal(_hwc(read_image(path)), rgb)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_palette_converted(kit, tmp_path, ext):
    im = Image.fromarray(kit.rgb_fundus()).quantize(32)
    path = tmp_path / f"p{ext}"
    im.save(path)
    image = read_image(path)
    assert image.metadata["source_mode"] == "P"
    assert np.array_equal(_hwc(image), np.asarray(im.convert("RGB")))


@pytest.mark.parametrize("ext", [".jpg", ".tif"])
def test_cmyk_converted(kit, tmp_path, ext):
    im = Image.fromarray(kit.rgb_fundus()).convert("CMYK")
    path = tmp_path / f"c{ext}"
    im.save(path)
    image = read_image(path)
    assert image.metadata["source_mode"] == "CMYK"
    assert np.array_equal(_hwc(image), np.asarray(Image.open(path).convert("RGB")))


def test_float_tiff_in_unit_range_and_refused_outside(tmp_path):
    values = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    ok, bad = tmp_path / "f.tif", tmp_path / "bad.tif"
    Image.fromarray(values).save(ok)
    Image.fromarray(values * 1000).save(bad)
    assert np.array_equal(_grey3(read_image(ok)), np.rint(values * 255).astype(np.uint8))
    with pytest.raises(ImageReadError, match="floating-point"):
        read_image(bad)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(kit, tmp_path, orientation):
    rgb = kit.rgb_fundus(32, 48)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    image = read_image(path)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(_hwc(image), expected)
    assert image.metadata["exif_orientation"] == orientation
    assert (image.metadata["height"], image.metadata["width"]) == expected.shape[:2]
    if orientation >= 5:
        assert image.pixels.shape[1:] == (48, 32)


def test_multi_page_tiff_reads_first_page_and_counts_pages(kit, tmp_path):
    pages = [Image.fromarray(kit.rgb_fundus(seed=s)) for s in range(3)]
    path = tmp_path / "m.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    image = read_image(path)
    assert np.array_equal(_hwc(image), np.asarray(pages[0]))
    assert image.metadata["pages"] == 3 and image.metadata["frames"] == 1


def _forged_png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)


@pytest.mark.parametrize("size", [(12_000, 9_000), (30_000, 30_000)])
def test_bomb_refused_from_header(tmp_path, size):
    """108 MP passes Pillow's own guard but not MAX_PIXELS; 900 MP trips Pillow's guard first."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_forged_png(*size))  # a few hundred bytes: nothing may be decoded
    with pytest.raises(ImageReadError, match="too large") as info:
        read_image(path)
    assert info.value.path == str(path) and f"{MAX_PIXELS:,}" in info.value.reason


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif"])
def test_truncated_raster(kit, tmp_path, ext):
    full = tmp_path / f"full{ext}"
    Image.fromarray(kit.rgb_fundus(96, 128)).save(full)
    data = full.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match="truncated|corrupt") as info:
        read_image(cut)
    assert str(info.value).startswith(f"{cut}: ") and "\n" not in str(info.value)


def test_corrupt_jpeg_header(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 200)
    with pytest.raises(ImageReadError, match="corrupt JPEG"):
        read_image(path)


# --------------------------------------------------------------------------- hostile rasters


def _jpeg(rgb, **kwargs) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90, **kwargs)
    return buffer.getvalue()


def test_jpeg_header_claiming_9000x11000_over_small_data_is_truncated_not_grey(kit, tmp_path):
    data = bytearray(_jpeg(kit.rgb_fundus(64, 64)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (9000).to_bytes(2, "big") + (11000).to_bytes(2, "big")
    path = tmp_path / "claims.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


def test_jpeg_with_a_chunk_cut_out_before_its_end_marker_is_truncated(kit, tmp_path):
    data = _jpeg(kit.rgb_fundus(256, 256, seed=3))
    eoi = data.rindex(b"\xff\xd9")
    path = tmp_path / "chunk.jpg"
    path.write_bytes(data[: eoi - 3000] + data[eoi:])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


def test_truncated_files_stay_errors_when_pillow_is_told_to_load_them(kit, tmp_path,
                                                                      monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # set by some other library
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".tif", "TIFF")):
        full = tmp_path / f"full{ext}"
        Image.fromarray(kit.rgb_fundus(96, 128)).save(full, format=fmt)
        cut = tmp_path / f"cut{ext}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
        with pytest.raises(ImageReadError, match="truncated|corrupt"):
            read_image(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored after the read


@pytest.mark.parametrize("shape", [(3, 5000), (5000, 3), (1, 20_000_000), (16, 200), (200, 16)])
def test_thin_images_are_refused_with_the_stated_limits(tmp_path, shape):
    from medig.io import MAX_ASPECT, MIN_SIDE

    path = tmp_path / "thin.png"
    Image.fromarray(np.full(shape, 128, np.uint8)).save(path)
    with pytest.raises(ImageReadError, match="too small|too narrow") as info:
        read_image(path)
    assert f"{MIN_SIDE}" in info.value.reason or f"{MAX_ASPECT}" in info.value.reason


def test_smallest_accepted_image(tmp_path):
    from medig.io import MAX_ASPECT, MIN_SIDE

    path = tmp_path / "small.png"
    Image.fromarray(np.full((MIN_SIDE, MIN_SIDE * MAX_ASPECT), 9, np.uint8)).save(path)
    assert read_image(path).pixels.shape == (3, MIN_SIDE, MIN_SIDE * MAX_ASPECT)
