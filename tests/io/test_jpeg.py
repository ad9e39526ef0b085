# SPDX-License-Identifier: Apache-2.0
"""decode_jpeg_batch: CPU decode vs Pillow, EXIF orientation, errors; CUDA when present."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from medig.io import ImageReadError, decode_jpeg_batch, read_image
from medig.io.jpeg import apply_exif_orientation


def _jpeg(rgb: np.ndarray, mode: str = "RGB", orientation: int = 1, **kw) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(rgb).convert(mode).save(buf, "JPEG", quality=90, exif=exif, **kw)
    return buf.getvalue()


def _pil(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1)


def test_cpu_batch_matches_pillow_within_decoder_tolerance(kit):
    datas = [_jpeg(kit.rgb_fundus(96, 128, seed=s), subsampling=2) for s in range(3)]
    datas.append(_jpeg(kit.rgb_fundus(40, 56), mode="L"))  # greyscale -> 3 channels
    out = decode_jpeg_batch(datas, "cpu")
    assert len(out) == 4
    for data, image in zip(datas, out):
        assert image.dtype == torch.uint8 and image.shape[0] == 3 and image.device.type == "cpu"
        diff = (image.int() - _pil(data).int()).abs()
        assert diff.float().mean() < 1.0 and diff.max() <= 8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_read_image(kit, tmp_path, orientation):
    data = _jpeg(kit.rgb_fundus(24, 40), orientation=orientation)
    path = tmp_path / "o.jpg"
    path.write_bytes(data)
    reference = read_image(path).pixels
    (image,) = decode_jpeg_batch([data])
    assert image.shape == reference.shape
    assert (image.int() - reference.int()).abs().float().mean() < 1.0


def test_apply_exif_orientation_is_pillow_transpose():
    t = torch.arange(2 * 3 * 4, dtype=torch.uint8).reshape(2, 3, 4)
    from PIL import ImageOps

    for o in range(1, 9):
        im = Image.fromarray(t[0].numpy())
        exif = im.getexif()
        exif[0x0112] = o
        buf = io.BytesIO()
        im.save(buf, "PNG", exif=exif)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(buf)))
        assert np.array_equal(apply_exif_orientation(t, o)[0].numpy(), expected), o


def test_errors_name_the_item(kit):
    good = _jpeg(kit.rgb_fundus(96, 128))
    with pytest.raises(ImageReadError, match="^b.jpg: (corrupt or )?truncated"):
        decode_jpeg_batch([good, good[: len(good) // 2]], names=["a.jpg", "b.jpg"])
    with pytest.raises(ImageReadError, match=r"^<jpeg #1>: not JPEG data"):
        decode_jpeg_batch([good, b"\x89PNG\r\n\x1a\n"])
    with pytest.raises(ImageReadError, match="empty"):
        decode_jpeg_batch([b""])
    assert decode_jpeg_batch([]) == []


def test_bomb_refused_before_decoding(kit):
    data = bytearray(_jpeg(kit.rgb_fundus(16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") + (20000).to_bytes(2, "big")
    with pytest.raises(ImageReadError, match="too large"):
        decode_jpeg_batch([bytes(data)])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_matches_cpu(kit):
    datas = [_jpeg(kit.rgb_fundus(96, 128, seed=s), orientation=1 + s) for s in range(4)]
    datas.append(_jpeg(kit.rgb_fundus(32, 32), mode="CMYK"))  # falls back to the CPU decoder
    cpu = decode_jpeg_batch(datas, "cpu")
    gpu = decode_jpeg_batch(datas, "cuda")
    for c, g in zip(cpu, gpu):
        assert g.device.type == "cuda" and g.shape == c.shape
        assert (g.cpu().int() - c.int()).abs().float().mean() < 1.5
    good = datas[0]
    with pytest.raises(ImageReadError, match="^b.jpg"):
        decode_jpeg_batch([good, good[: len(good) // 2]], "cuda", names=["a.jpg", "b.jpg"])


def test_truncated_scan_refused_on_the_batch_path(kit):
    # A frame header claiming 9000x11000 over 2 KB of data: libjpeg-turbo paints 99 MP grey and
    # prints "premature end of data segment" on stderr; nvJPEG gets it refused before decoding.
    data = bytearray(_jpeg(kit.rgb_fundus(64, 64)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (9000).to_bytes(2, "big") + (11000).to_bytes(2, "big")
    with pytest.raises(ImageReadError, match="truncated"):
        decode_jpeg_batch([bytes(data)], names=["x.jpg"])


def test_chunk_cut_out_of_the_scan_refused_on_the_batch_path(kit, capfd):
    data = _jpeg(kit.rgb_fundus(256, 256, seed=4))
    eoi = data.rindex(b"\xff\xd9")
    with pytest.raises(ImageReadError, match="truncated"):
        decode_jpeg_batch([data[: eoi - 3000] + data[eoi:]], names=["x.jpg"])
    assert "Corrupt JPEG" not in capfd.readouterr().err  # libjpeg's own print is captured


def test_thin_jpeg_refused_on_the_batch_path(kit):
    with pytest.raises(ImageReadError, match="too small"):
        decode_jpeg_batch([_jpeg(np.zeros((8, 600, 3), np.uint8))])
