# SPDX-License-Identifier: Apache-2.0
"""Stream headers of real encoded JPEG, JPEG-LS and JPEG 2000 data, and streams cut short."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, features
from pydicom.encaps import generate_frames

from medig.io.codestream import CodestreamError, j2k_info, jpeg_info, stream_info

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _noise(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels > 1 else (h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _encode(arr: np.ndarray, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _dicom_frame(name: str) -> tuple[bytes, pydicom.Dataset]:
    path = TEST_FILES / name
    if not path.is_file():
        pytest.skip(f"{name} not shipped in this pydicom wheel")
    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return next(generate_frames(ds.PixelData, number_of_frames=frames)), ds


@pytest.mark.parametrize(
    ("kwargs", "channels", "process"),
    [
        ({"quality": 90}, 3, "baseline"),
        ({"quality": 90, "subsampling": 2}, 3, "baseline"),  # 4:2:0, MCUs of 16x16
        ({"quality": 95, "subsampling": 0, "optimize": True}, 3, "baseline"),
        ({"quality": 90, "progressive": True}, 3, "progressive"),
        ({"quality": 90}, 1, "baseline"),
    ],
)
def test_jpeg_frame_header_of_pillow_streams(kwargs, channels, process):
    data = _encode(_noise(123, 77, channels), "JPEG", **kwargs)
    info = jpeg_info(data)
    assert (info.codec, info.width, info.height, info.components) == ("jpeg", 77, 123, channels)
    assert (info.precision, info.process) == (8, process)
    assert stream_info(data) == info


@pytest.mark.parametrize(
    ("name", "codec", "process"),
    [
        ("JPGExtended.dcm", "jpeg", "extended"),  # 12-bit, process 2/4
        ("SC_rgb_jpeg_gdcm.dcm", "jpeg", "lossless"),  # process 14
        ("MR_small_jpeg_ls_lossless.dcm", "jpeg-ls", "jpeg-ls"),  # SOF55
        ("SC_rgb_jls_lossy_sample.dcm", "jpeg-ls", "jpeg-ls"),
        ("MR_small_jp2klossless.dcm", "j2k", "j2k"),
        ("SC_rgb_gdcm_KY.dcm", "j2k", "j2k"),
    ],
)
def test_dicom_frames_declare_the_dicom_header_size(name, codec, process):
    frame, ds = _dicom_frame(name)
    info = stream_info(frame)
    assert (info.codec, info.process) == (codec, process)
    assert (info.width, info.height) == (ds.Columns, ds.Rows)
    assert info.components == ds.SamplesPerPixel


@pytest.mark.skipif(not features.check("jpg_2000"), reason="Pillow built without OpenJPEG")
@pytest.mark.parametrize("no_jp2", [True, False])
def test_j2k_size_from_raw_codestream_and_jp2_box(no_jp2):
    data = _encode(_noise(123, 77), "JPEG2000", no_jp2=no_jp2, tile_size=(32, 32))
    assert data.startswith(b"\xff\x4f\xff\x51") if no_jp2 else data[4:8] == b"jP  "
    info = j2k_info(data)
    assert (info.width, info.height, info.components, info.precision) == (77, 123, 3, 8)


@pytest.mark.skipif(not features.check("jpg_2000"), reason="Pillow built without OpenJPEG")
def test_j2k_cut_inside_a_tile_part_is_truncated():
    data = _encode(_noise(123, 77), "JPEG2000", no_jp2=True, tile_size=(32, 32))
    for cut in (len(data) // 2, len(data) - 3):
        with pytest.raises(CodestreamError) as info:
            j2k_info(data[:cut])
        assert info.value.truncated
    assert j2k_info(data[: len(data) // 2], complete=False).width == 77  # header still read


def test_jpeg_cut_anywhere_after_the_header_is_truncated():
    data = _encode(_noise(64, 64), "JPEG", quality=90)
    sos = data.index(b"\xff\xda")
    for cut in (sos + 20, len(data) // 2 + sos // 2, len(data) - 2):
        with pytest.raises(CodestreamError) as info:
            jpeg_info(data[:cut])
        assert info.value.truncated


def test_frame_header_claiming_more_pixels_than_the_data_holds_is_truncated():
    # libjpeg decodes this (the data ends at EOI) and fills 99 MP with grey, only warning.
    data = bytearray(_encode(_noise(64, 64), "JPEG", quality=90))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 9000, 11000)
    with pytest.raises(CodestreamError, match="11000x9000") as info:
        jpeg_info(bytes(data))
    assert info.value.truncated
    assert jpeg_info(bytes(data), complete=False).pixels == 99_000_000


def test_progressive_lower_bound_counts_dc_scans_only():
    # A flat progressive image codes its AC scans in a few bytes (EOB runs): no false alarm.
    data = _encode(np.full((400, 400, 3), 128, np.uint8), "JPEG", quality=90, progressive=True)
    assert jpeg_info(data).process == "progressive"


def test_flat_baseline_image_is_not_mistaken_for_truncated():
    # The tightest real case: every block codes a zero DC difference and an end-of-block.
    data = _encode(np.full((512, 512), 128, np.uint8), "JPEG", quality=50)
    assert jpeg_info(data).width == 512


def test_garbage_between_segments_is_skipped_like_libjpeg():
    data = _encode(_noise(32, 32), "JPEG", quality=90)
    dqt = data.index(b"\xff\xdb")
    assert jpeg_info(data[:dqt] + b"\x00junk" + data[dqt:]).width == 32


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xc0\x00\x03\x08", b"\xff\x4f\xff\x51"],
)
def test_malformed_streams_raise_codestream_error(data):
    with pytest.raises(CodestreamError):
        stream_info(data)
