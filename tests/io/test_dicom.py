# SPDX-License-Identifier: Apache-2.0
"""DICOM decoding: photometric interpretations, bit depths, frames, transfer syntaxes, PHI."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import convert_color_space
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    MPEG2MPML,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from medig.io import MAX_PIXELS, ImageReadError, read_frames, read_image
from medig.io.dicom import PHI_ATTRIBUTES, SAFE_ATTRIBUTES

PYDICOM_TEST_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


def _hwc(image) -> np.ndarray:
    return image.pixels.permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- pixels


def test_op_8bit_rgb_native_roundtrip_and_metadata(kit, make_dicom):
    rgb = kit.rgb_fundus()
    image = read_image(make_dicom(rgb))
    assert image.pixels.dtype == torch.uint8 and image.pixels.shape == (3, 48, 64)
    assert np.array_equal(_hwc(image), rgb)
    meta = image.metadata
    assert meta["format"] == "dicom"
    assert meta["Modality"] == "OP"
    assert meta["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.77.1.5.1"
    assert meta["ImageLaterality"] == "R"
    assert meta["PhotometricInterpretation"] == "RGB"
    assert meta["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    assert (meta["width"], meta["height"], meta["frames"], meta["frame"]) == (64, 48, 1, 0)
    assert meta["extension_mismatch"] is False
    json.dumps(meta)  # plain values only


def test_secondary_capture_planar_configuration_1(kit, make_dicom):
    rgb = kit.rgb_fundus(seed=3)
    ds = kit.build_dicom(rgb, sop_class=kit.SECONDARY_CAPTURE)
    ds.PlanarConfiguration = 1  # RRR..GGG..BBB.. layout
    ds.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    image = read_image(make_dicom(None, dataset=ds))
    assert np.array_equal(_hwc(image), rgb)
    assert image.metadata["Modality"] == "OT"


def test_ybr_full_is_converted_to_rgb(kit, make_dicom):
    rgb = kit.rgb_fundus(seed=1)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    image = read_image(make_dicom(ybr, photometric="YBR_FULL"))
    diff = np.abs(_hwc(image).astype(int) - rgb.astype(int))
    assert diff.max() <= 2  # YCbCr round trip in 8 bits


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_monochrome_replicated_and_monochrome1_inverted(kit, make_dicom, photometric):
    grey = kit.rgb_fundus()[..., 0]
    image = read_image(make_dicom(grey, photometric=photometric))
    expected = 255 - grey if photometric == "MONOCHROME1" else grey
    for c in range(3):
        assert np.array_equal(image.pixels[c].numpy(), expected)


def test_12_bit_monochrome_scaled_by_bits_stored(make_dicom):
    values = np.linspace(0, 4095, 32 * 32).astype(np.uint16).reshape(32, 32)
    image = read_image(make_dicom(values, bits_stored=12))
    expected = np.floor(values.astype(np.float64) * 255 / 4095 + 0.5).astype(np.uint8)
    assert np.array_equal(image.pixels[0].numpy(), expected)
    assert image.pixels[0].max() == 255 and image.pixels[0].min() == 0
    assert image.metadata["BitsStored"] == 12


def test_signed_monochrome_shifted_into_range(make_dicom):
    values = np.array([[-2048, -1, 0, 2047]], dtype=np.int16)
    tiled = np.tile(values, (16, 4))  # images need medig.io.MIN_SIDE pixels on each side
    image = read_image(make_dicom(tiled, bits_stored=12, signed=True))
    assert image.pixels[0, 0, :4].tolist() == [0, 127, 128, 255]


def test_multi_frame_frames_are_images_named_with_index(kit, make_dicom):
    frames = np.stack([kit.rgb_fundus(seed=s) for s in range(3)])
    path = make_dicom(frames, name="multi.dcm")
    images = read_frames(path)
    assert [im.path for im in images] == [f"{path}#{k}" for k in range(3)]
    for k, im in enumerate(images):
        assert np.array_equal(_hwc(im), frames[k])
        assert im.metadata["frame"] == k and im.metadata["frames"] == 3
    one = read_image(f"{path}#2")
    assert one.path == f"{path}#2" and np.array_equal(_hwc(one), frames[2])


def test_multi_frame_errors(kit, make_dicom):
    path = make_dicom(np.stack([kit.rgb_fundus(seed=s) for s in range(2)]), name="two.dcm")
    with pytest.raises(ImageReadError, match="out of range"):
        read_image(f"{path}#2")
    with pytest.raises(ImageReadError, match="multi-frame"):
        read_image(path)
    with pytest.raises(ImageReadError, match="invalid frame index"):
        read_image(f"{path}#first")


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_lossless_compressed_written_here_roundtrip_exactly(kit, make_dicom, syntax):
    rgb = kit.rgb_fundus(seed=4)
    try:
        path = make_dicom(rgb, compress=syntax)
    except RuntimeError as exc:  # no encoder plugin in this environment
        pytest.skip(f"cannot encode {syntax.name}: {exc}")
    image = read_image(path)
    assert image.metadata["TransferSyntaxUID"] == syntax
    assert np.array_equal(_hwc(image), rgb)


def test_multi_frame_rle(kit, make_dicom):
    frames = np.stack([kit.rgb_fundus(seed=s) for s in range(2)])
    images = read_frames(make_dicom(frames, compress=RLELossless))
    assert all(np.array_equal(_hwc(im), frames[k]) for k, im in enumerate(images))


def test_jpeg_baseline_ybr_full_422_op_matches_pillow(kit, make_dicom):
    """The usual OP export: a camera JPEG encapsulated with YBR_FULL_422."""
    rgb = kit.rgb_fundus(96, 128, seed=5)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92, subsampling=1)  # 4:2:2
    ds = kit.build_dicom(rgb, photometric="YBR_FULL_422")
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    image = read_image(make_dicom(None, dataset=ds))
    pil = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    diff = np.abs(_hwc(image).astype(int) - pil.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8
    assert np.abs(_hwc(image).astype(int) - rgb.astype(int)).mean() < 4  # and close to the source
    assert image.metadata["LossyImageCompression"] == "01"


# Files from the pydicom wheel: SC_rgb_rle.dcm is the lossless reference (the wheel ships no
# uncompressed SC_rgb.dcm). Lossy ones must agree within JPEG tolerance.
_LOSSLESS = [
    "SC_rgb_rle_16bit.dcm",  # 16-bit samples: also checks the bit-depth scaling rule
    "SC_rgb_rle_32bit.dcm",
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless process 14
    "SC_rgb_gdcm_KY.dcm",  # JPEG 2000
]
_LOSSY = [
    "SC_rgb_dcmtk_+eb+cr.dcm",
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",
    "SC_rgb_dcmtk_+eb+cy+n2.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_lossy_gdcm.dcm",
    "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS near-lossless
    "SC_rgb_jls_lossy_sample.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
]


def _wheel_file(name: str) -> Path:
    path = PYDICOM_TEST_FILES / name
    if not path.is_file():
        pytest.skip(f"{name} not shipped in this pydicom wheel")
    return path


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    return read_image(_wheel_file("SC_rgb_rle.dcm")).pixels.int()


@pytest.mark.parametrize("name", _LOSSLESS)
def test_pydicom_wheel_lossless_files_equal_reference(name, reference):
    assert torch.equal(read_image(_wheel_file(name)).pixels.int(), reference)


@pytest.mark.parametrize("name", _LOSSY)
def test_pydicom_wheel_lossy_files_close_to_reference(name, reference):
    pixels = read_image(_wheel_file(name)).pixels.int()
    diff = (pixels - reference).abs().float()
    assert diff.mean() < 3.5, diff.mean()
    # the image is colour bars: every bar keeps its colour after decoding
    assert (diff.flatten(1).median(dim=1).values <= 2).all()


def test_pydicom_wheel_two_frame_file(reference):
    images = read_frames(_wheel_file("SC_rgb_rle_2frame.dcm"))
    assert len(images) == 2
    assert torch.equal(images[0].pixels.int(), reference)
    assert torch.equal(images[1].pixels.int(), 255 - reference)  # frame 2 is the negative


def test_pydicom_wheel_jpeg_ls_lossless_equals_native():
    native = read_image(_wheel_file("MR_small.dcm")).pixels
    jls = read_image(_wheel_file("MR_small_jpeg_ls_lossless.dcm"))
    assert jls.metadata["TransferSyntaxUID"] == JPEGLSLossless
    assert torch.equal(jls.pixels, native)


def test_pydicom_wheel_palette_colour():
    image = read_image(_wheel_file("examples_palette.dcm"))
    assert image.pixels.shape[0] == 3
    assert image.metadata["PhotometricInterpretation"] == "PALETTE COLOR"
    assert image.pixels.float().std() > 10  # a real picture, not a flat LUT mistake


# --------------------------------------------------------------------------- preamble-less


def test_preamble_less_dicom_is_read(kit, make_dicom):
    rgb = kit.rgb_fundus(seed=6)
    path = make_dicom(rgb, name="IM0001", preamble=False)
    assert path.read_bytes()[128:132] != b"DICM"
    image = read_image(path)
    assert image.metadata["format"] == "dicom"
    assert np.array_equal(_hwc(image), rgb)


# --------------------------------------------------------------------------- bad DICOM


def test_dicom_without_pixel_data(kit, make_dicom):
    ds = kit.build_dicom(kit.rgb_fundus())
    del ds.PixelData
    path = make_dicom(None, dataset=ds)
    with pytest.raises(ImageReadError, match="no pixel data") as info:
        read_image(path)
    assert info.value.path == str(path)


def test_dicom_bomb_refused_from_header_before_decoding(kit, make_dicom):
    ds = kit.build_dicom(kit.rgb_fundus())  # 48x64 of real pixel data ...
    ds.Rows, ds.Columns = 20_000, 10_000  # ... behind a header claiming 200 MP
    path = make_dicom(None, dataset=ds)
    with pytest.raises(ImageReadError, match="too large") as info:
        read_image(path)
    assert f"{MAX_PIXELS:,}" in info.value.reason


def test_dicom_bomb_counts_all_frames(kit, make_dicom):
    ds = kit.build_dicom(kit.rgb_fundus())
    ds.Rows, ds.Columns, ds.NumberOfFrames = 5_000, 5_000, 5  # 25 MP per frame, 125 MP in all
    with pytest.raises(ImageReadError, match="too large"):
        read_frames(make_dicom(None, dataset=ds))


def test_truncated_dicom(kit, make_dicom, tmp_path):
    path = make_dicom(kit.rgb_fundus())
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ImageReadError, match="truncated") as info:
        read_image(cut)
    assert info.value.path == str(cut)


def test_unsupported_transfer_syntax_named(kit, make_dicom):
    ds = kit.build_dicom(kit.rgb_fundus())
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(64)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    with pytest.raises(ImageReadError, match="unsupported transfer syntax MPEG2"):
        read_image(make_dicom(None, dataset=ds))


def test_missing_decoder_plugin_says_what_to_install(monkeypatch):
    path = _wheel_file("MR_small_jpeg_ls_lossless.dcm")
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(ImageReadError, match="install pylibjpeg-libjpeg"):
        read_image(path)


def test_corrupt_compressed_pixel_data(kit, make_dicom):
    ds = kit.build_dicom(kit.rgb_fundus())
    ds.compress(RLELossless)
    ds.PixelData = encapsulate([b"\x07" + bytes(40)])  # RLE header claiming 7 segments, no data
    with pytest.raises(ImageReadError, match="corrupt pixel data"):
        read_image(make_dicom(None, dataset=ds))


# --------------------------------------------------------------------------- PHI


def test_no_phi_in_metadata_by_default(kit, make_dicom):
    ds = kit.build_dicom(kit.rgb_fundus())
    path = make_dicom(None, dataset=ds)
    meta = read_image(path).metadata
    dumped = json.dumps(meta)
    for value in kit.phi_values(ds):
        assert value not in dumped
    assert set(meta) & set(PHI_ATTRIBUTES) == set()
    assert not set(PHI_ATTRIBUTES) & set(SAFE_ATTRIBUTES)


def test_phi_only_with_explicit_opt_in(kit, make_dicom):
    ds = kit.build_dicom(kit.rgb_fundus())
    meta = read_image(make_dicom(None, dataset=ds), include_phi=True).metadata
    for key, value in kit.PHI.items():
        assert meta[key] == value
    assert meta["SOPInstanceUID"] == ds.SOPInstanceUID
    json.dumps(meta)


def _assert_no_phi_anywhere(kit, exc: ImageReadError, ds, caplog, capsys) -> None:
    texts = [str(exc), exc.reason, exc.path, caplog.text,
             *(capsys.readouterr() if capsys is not None else ())]
    for value in kit.phi_values(ds):
        assert all(value not in text for text in texts), value
    assert exc.__cause__ is None and exc.__suppress_context__  # no decoder traceback chained


@pytest.mark.parametrize("damage", ["truncate", "garbage_rle", "bad_rows"])
def test_corrupt_dicom_with_phi_gives_error_without_phi(
    kit, make_dicom, tmp_path, caplog, capsys, damage
):
    caplog.set_level(logging.DEBUG)
    ds = kit.build_dicom(kit.rgb_fundus())
    if damage == "garbage_rle":
        ds.compress(RLELossless)
        ds.PixelData = encapsulate([b"\x02" + bytes(20)])
    if damage == "bad_rows":
        ds.Rows = 60  # the pixel data is now too short for the declared size
    path = make_dicom(None, dataset=ds)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-300])
    with _no_warnings(), pytest.raises(ImageReadError) as info:
        read_image(path)
    _assert_no_phi_anywhere(kit, info.value, ds, caplog, capsys)


def test_malformed_value_quoting_phi_does_not_leak(kit, tmp_path, caplog, capsys):
    """pydicom quotes invalid values in warnings; a patient name in an IS element must not leak."""
    caplog.set_level(logging.DEBUG)
    ds = kit.build_dicom(kit.rgb_fundus())
    path = tmp_path / "bad_is.dcm"
    ds.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    # Rewrite the 2-byte Rows value into an IS-typed NumberOfFrames holding the patient name.
    tag = b"\x28\x00\x08\x00IS" + len(kit.PHI["PatientName"]).to_bytes(2, "little")
    insert_at = raw.index(b"\x28\x00\x10\x00US")  # before (0028,0010) Rows, keeps tag order
    path.write_bytes(raw[:insert_at] + tag + kit.PHI["PatientName"].encode() + raw[insert_at:])
    with _no_warnings(), pytest.raises(ImageReadError, match="NumberOfFrames") as info:
        read_image(path)
    _assert_no_phi_anywhere(kit, info.value, ds, caplog, capsys)


class _no_warnings:
    """Fail if any warning escapes the reader (pydicom warnings may quote element values)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self._log = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc_info):
        self._ctx.__exit__(*exc_info)
        assert not self._log, [str(w.message) for w in self._log]
        return False


def test_dicom_cut_inside_the_header_is_truncated_not_pixelless(kit, make_dicom, tmp_path):
    path = make_dicom(kit.rgb_fundus())
    raw = path.read_bytes()
    cut = tmp_path / "cut_header.dcm"
    cut.write_bytes(raw[: raw.index(b"\xe0\x7f\x10\x00") - 3])  # stops inside the element before
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(cut)


# --------------------------------------------------------------------------- hostile DICOM


def _dicom_bytes(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _with_unknown_vr(data: bytes, tag: bytes, vr: bytes) -> bytes:
    at = data.index(tag + vr)
    return data[: at + 4] + b"UW" + data[at + 6 :]  # one flipped bit: US -> UW


@pytest.mark.parametrize(
    ("tag", "vr"),
    [
        (b"\x28\x00\x00\x01", b"US"),  # BitsAllocated, also read as a default= argument
        (b"\x28\x00\x04\x00", b"CS"),  # PhotometricInterpretation
        (b"\x28\x00\x02\x00", b"US"),  # SamplesPerPixel
    ],
)
def test_unknown_vr_is_a_read_error_not_a_crash(kit, tmp_path, caplog, tag, vr):
    caplog.set_level(logging.DEBUG)
    ds = kit.build_dicom(kit.rgb_fundus())
    path = tmp_path / "uw.dcm"
    path.write_bytes(_with_unknown_vr(_dicom_bytes(ds), tag, vr))
    with _no_warnings(), pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.path == str(path)
    _assert_no_phi_anywhere(kit, info.value, ds, caplog, None)


def test_unknown_vr_on_sop_class_of_a_file_without_pixels(kit, tmp_path):
    ds = kit.build_dicom(kit.rgb_fundus())
    del ds.PixelData
    path = tmp_path / "uw_sop.dcm"
    path.write_bytes(_with_unknown_vr(_dicom_bytes(ds), b"\x08\x00\x16\x00", b"UI"))
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(path)


def test_pixel_data_length_past_the_end_of_the_file_is_truncated(kit, tmp_path):
    data = bytearray(_dicom_bytes(kit.build_dicom(kit.rgb_fundus())))
    at = data.index(b"\xe0\x7f\x10\x00OB")
    length = int.from_bytes(data[at + 8 : at + 12], "little")
    data[at + 8 : at + 12] = (length + 0xF0000000).to_bytes(4, "little")  # 4 GB past the end
    path = tmp_path / "long.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


@pytest.mark.parametrize("cut", [140, 200, 300, 400])
def test_dicom_cut_early_says_truncated_not_pixelless(kit, tmp_path, cut):
    data = _dicom_bytes(kit.build_dicom(kit.rgb_fundus()))
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:cut])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


def test_native_pixel_data_shorter_than_declared(kit, make_dicom):
    ds = kit.build_dicom(kit.rgb_fundus())
    ds.NumberOfFrames = 3  # only one frame of pixels follows
    with pytest.raises(ImageReadError, match="fewer than"):
        read_frames(make_dicom(None, dataset=ds))


def test_frames_per_file_are_limited(kit, make_dicom):
    from medig.io import MAX_FRAMES

    frames = np.zeros((MAX_FRAMES + 1, 16, 16), np.uint8)
    with pytest.raises(ImageReadError, match="too many frames"):
        read_frames(make_dicom(frames, photometric="MONOCHROME2"))
    ok = np.zeros((3, 16, 16), np.uint8)
    assert len(read_frames(make_dicom(ok, name="ok.dcm", photometric="MONOCHROME2"))) == 3


@pytest.mark.parametrize(("h", "w", "frames"), [(4, 4, 2_000), (1, 1, 20_000)])
def test_many_tiny_frames_are_refused_before_decoding(make_dicom, h, w, frames):
    import time

    path = make_dicom(np.zeros((frames, h, w), np.uint8), photometric="MONOCHROME2")
    start = time.monotonic()
    with pytest.raises(ImageReadError, match="frames|too small"):
        read_frames(path)
    assert time.monotonic() - start < 2.0


def _jpeg_dicom(kit):
    from tests.fuzz.cases import jpeg_dicom

    return jpeg_dicom(kit.rgb_fundus(48, 64))


def test_jpeg_dicom_decodes_and_its_stream_matches(kit, make_dicom):
    source = kit.rgb_fundus(48, 64)
    path = make_dicom(None, dataset=_jpeg_dicom(kit))
    image = read_image(path)
    assert tuple(image.pixels.shape) == (3, 48, 64)
    pixels = image.pixels.numpy().transpose(1, 2, 0).astype(np.int16)
    # The encapsulated stream decoded independently (Pillow, RGB): the reader converts YBR_FULL_422
    # to RGB through another path, so a few grey levels of rounding differ, no more.
    stream = next(generate_frames(pydicom.dcmread(path).PixelData))
    independent = np.asarray(Image.open(io.BytesIO(stream)).convert("RGB"), dtype=np.int16)
    assert np.abs(pixels - independent).max() <= 4
    # and it is the photograph that was encoded (JPEG quality 90), channels in RGB order
    assert np.abs(pixels - source.astype(np.int16)).mean() < 6
    assert np.abs(pixels[..., ::-1] - source.astype(np.int16)).mean() > 10


def _patch_sof(data: bytes, width: int, height: int) -> bytes:
    raw = bytearray(data)
    at = raw.index(b"\xff\xc0")
    raw[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(raw)


def test_jpeg_stream_larger_than_the_dicom_header_is_refused_before_decoding(kit, tmp_path):
    # The campaign's memory bomb was 60000x60000 in the stream behind a 256x256 header; 2000x2000
    # shows the same check without letting an unfixed reader allocate gigabytes.
    path = tmp_path / "bomb.dcm"
    path.write_bytes(_patch_sof(_dicom_bytes(_jpeg_dicom(kit)), 2000, 2000))
    with pytest.raises(ImageReadError, match="compressed frame is 2000x2000 .* says 64x48"):
        read_image(path)


def test_jpeg_ls_stream_size_is_checked(tmp_path):
    source = _wheel_file("MR_small_jpeg_ls_lossless.dcm")
    raw = bytearray(source.read_bytes())
    at = raw.index(b"\xff\xf7")  # SOF55
    raw[at + 5 : at + 9] = (4000).to_bytes(2, "big") + (4000).to_bytes(2, "big")
    path = tmp_path / "jls.dcm"
    path.write_bytes(bytes(raw))
    with pytest.raises(ImageReadError, match="4000x4000"):
        read_image(path)


def test_j2k_stream_size_is_checked(kit, make_dicom, tmp_path):
    path = make_dicom(kit.rgb_fundus(), compress=JPEG2000Lossless)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"\xff\x4f\xff\x51")  # SOC, SIZ
    raw[at + 8 : at + 16] = (3000).to_bytes(4, "big") + (3000).to_bytes(4, "big")  # Xsiz, Ysiz
    bad = tmp_path / "j2k.dcm"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ImageReadError, match="3000x3000"):
        read_image(bad)


def test_jpeg_frame_with_a_chunk_cut_out_is_an_error(kit, make_dicom):
    # The fragment is well formed and ends with EOI, but its scan stops early: libjpeg paints the
    # rest grey and only warns.
    ds = _jpeg_dicom(kit)
    from pydicom.encaps import generate_frames

    stream = next(generate_frames(ds.PixelData, number_of_frames=1))
    eoi = stream.rindex(b"\xff\xd9")
    ds.PixelData = encapsulate([stream[: eoi - 600] + stream[eoi:]])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(make_dicom(None, dataset=ds))


def test_decoder_tracebacks_never_reach_the_log(kit, make_dicom, caplog, capsys):
    # pydicom.pixels.decoders.base logs a traceback for corrupt RLE; only the "pydicom" logger
    # used to be silenced, and its children propagate to the root handlers.
    caplog.set_level(logging.DEBUG)
    ds = kit.build_dicom(kit.rgb_fundus())
    ds.compress(RLELossless)
    ds.PixelData = encapsulate([b"\x07" + bytes(40)])
    with pytest.raises(ImageReadError, match="corrupt pixel data"):
        read_image(make_dicom(None, dataset=ds))
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]
    assert "Traceback" not in capsys.readouterr().err


def test_deflated_data_set_is_read_and_its_inflated_size_bounded(monkeypatch):
    import medig.io.dicom as dicom_module

    path = _wheel_file("image_dfl.dcm")  # Deflated Explicit VR Little Endian
    assert read_image(path).pixels.shape[0] == 3  # element offsets are not file offsets here
    monkeypatch.setattr(dicom_module, "MAX_FILE_BYTES", 1000)  # a zip bomb, in miniature
    with pytest.raises(ImageReadError, match="inflates past"):
        read_image(path)
