# SPDX-License-Identifier: Apache-2.0
"""Magic-byte sniffing."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from medig.io.sniff import sniff_bytes, sniff_file


@pytest.mark.parametrize(
    "fmt, expected",
    [("JPEG", "jpeg"), ("PNG", "png"), ("TIFF", "tiff"), ("BMP", "bmp"), ("GIF", "gif")],
)
def test_pillow_formats(kit, fmt, expected):
    buf = io.BytesIO()
    Image.fromarray(kit.rgb_fundus(8, 8)).save(buf, format=fmt)
    assert sniff_bytes(buf.getvalue()[:132]) == expected


def test_dicom_with_and_without_preamble(kit, make_dicom):
    assert sniff_file(make_dicom(kit.rgb_fundus(8, 8), name="a.dcm")) == "dicom"
    assert sniff_file(make_dicom(kit.rgb_fundus(8, 8), name="b", preamble=False)) == "dicom"


@pytest.mark.parametrize(
    "head",
    [b"", b"hello world, this is text", b"BMW service report", b"\x08\x00" * 2, bytes(200)],
)
def test_non_images(head):
    assert sniff_bytes(head) is None
