# SPDX-License-Identifier: Apache-2.0
"""A seeded mutation corpus: hostile variants of real image files, as a fuzzer would write them.

Mutations (one or two per file, chosen by a seeded generator, so a seed names a corpus):

* ``bitflip_header`` / ``bitflip_data`` — 1 to 8 bit flips in the file's header (markers, IFDs,
  chunks, DICOM elements) or in its pixel data;
* ``interesting_value`` — a 16- or 32-bit field of the header set to 0, 1, 0x7FFF, 0xFFFF, ...
  (sizes, lengths and offsets are where decoders go wrong);
* ``truncate`` — the file cut at a random point;
* ``random_block`` — a run of up to 256 random bytes written over the file;
* ``insert_bytes`` — up to 64 random bytes inserted;
* ``remove_chunk`` / ``duplicate_chunk`` — up to 1 KB removed, or repeated in place;
* ``remove_element`` / ``duplicate_element`` — a top-level DICOM element removed or repeated.

:func:`source_files` builds the sources: the bundled examples (``examples/fundus``, any folder)
and files generated here in formats and codecs the examples lack (16-bit PNG, greyscale and
LZW TIFF, progressive and CMYK JPEG, native multi-frame, RLE and JPEG 2000 DICOM).
"""
from __future__ import annotations

import io
import os
import random
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["MUTATIONS", "generated_sources", "make_corpus", "mutate", "source_files"]

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".dcm", ".dicom"}


# --------------------------------------------------------------------------- format structure


def _header_end(data: bytes) -> int:
    """Offset where the pixel data starts (approximately), by format."""
    if data[:3] == b"\xff\xd8\xff":
        sos = data.find(b"\xff\xda")
        return sos + 14 if sos > 0 else min(len(data), 600)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        idat = data.find(b"IDAT")
        return idat + 4 if idat > 0 else min(len(data), 200)
    if data[128:132] == b"DICM" or data[:4] in (b"\x08\x00\x05\x00", b"\x08\x00\x16\x00"):
        pixels = data.find(b"\xe0\x7f\x10\x00")
        return pixels + 12 if pixels > 0 else min(len(data), 1000)
    return min(len(data), 512)  # TIFF and others: the first IFD is usually near the start


_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}


def _dicom_elements(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of the top-level explicit-VR little-endian elements after the file meta."""
    if data[128:132] != b"DICM":
        return []
    pos, out = 132, []
    while pos + 8 <= len(data):
        group, _element = struct.unpack("<HH", data[pos : pos + 4])
        vr = data[pos + 4 : pos + 6]
        if not vr.isalpha():
            break
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                break
            (length,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            start = pos + 12
        else:
            (length,) = struct.unpack("<H", data[pos + 6 : pos + 8])
            start = pos + 8
        if length == 0xFFFFFFFF:  # undefined length: stop before sequences and encapsulation
            break
        end = start + length
        if end > len(data):
            break
        if group != 0x0002:
            out.append((pos, end))
        pos = end
    return out


# --------------------------------------------------------------------------- mutations


def _flip(data: bytearray, lo: int, hi: int, rng: random.Random) -> None:
    if hi <= lo:
        return
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(lo, hi)
        data[at] ^= 1 << rng.randrange(8)


def bitflip_header(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    _flip(out, 0, _header_end(data), rng)
    return bytes(out)


def bitflip_data(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    _flip(out, _header_end(data), len(data), rng)
    return bytes(out)


_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                0x7FFFFFFF, 0xFFFFFFFF)


def interesting_value(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    end = max(8, _header_end(data))
    width = rng.choice((2, 4))
    at = rng.randrange(0, max(1, min(end, len(data)) - width))
    value = rng.choice(_INTERESTING) & ((1 << (8 * width)) - 1)
    order = rng.choice("<>")
    out[at : at + width] = struct.pack(order + ("H" if width == 2 else "I"), value)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(0, max(1, len(data)))]


def random_block(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    size = rng.randint(1, 256)
    at = rng.randrange(0, max(1, len(data) - size))
    out[at : at + size] = rng.randbytes(min(size, max(0, len(data) - at)))
    return bytes(out)


def insert_bytes(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(0, len(data) + 1)
    return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]


def remove_chunk(data: bytes, rng: random.Random) -> bytes:
    size = rng.randint(1, 1024)
    at = rng.randrange(0, max(1, len(data) - size))
    return data[:at] + data[at + size :]


def duplicate_chunk(data: bytes, rng: random.Random) -> bytes:
    size = rng.randint(1, 1024)
    at = rng.randrange(0, max(1, len(data) - size))
    return data[: at + size] + data[at : at + size] + data[at + size :]


def remove_element(data: bytes, rng: random.Random) -> bytes:
    elements = _dicom_elements(data)
    if not elements:
        return remove_chunk(data, rng)
    start, end = rng.choice(elements)
    return data[:start] + data[end:]


def duplicate_element(data: bytes, rng: random.Random) -> bytes:
    elements = _dicom_elements(data)
    if not elements:
        return duplicate_chunk(data, rng)
    start, end = rng.choice(elements)
    return data[:end] + data[start:end] + data[end:]


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "bitflip_header": bitflip_header,
    "bitflip_data": bitflip_data,
    "interesting_value": interesting_value,
    "truncate": truncate,
    "random_block": random_block,
    "insert_bytes": insert_bytes,
    "remove_chunk": remove_chunk,
    "duplicate_chunk": duplicate_chunk,
    "remove_element": remove_element,
    "duplicate_element": duplicate_element,
}
_DICOM_ONLY = ("remove_element", "duplicate_element")


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """One or two mutations of ``data``; returns the result and the mutations' names."""
    is_dicom = data[128:132] == b"DICM"
    kinds = [k for k in MUTATIONS if is_dicom or k not in _DICOM_ONLY]
    names = [rng.choice(kinds) for _ in range(1 if rng.random() < 0.7 else 2)]
    for name in names:
        if data:
            data = MUTATIONS[name](data, rng)
    return data, names


# --------------------------------------------------------------------------- sources


def _disk(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - h / 2, xx - w / 2) / (min(h, w) / 2)
    disk = np.clip(1.2 - r, 0, 1)
    img = np.stack([200 * disk, 90 * disk + 20 * np.sin(xx / 5), 40 * disk], axis=-1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _save(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def generated_sources(folder: str | os.PathLike) -> list[Path]:
    """Small files in the formats and codecs the bundled examples lack; written to ``folder``."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless, RLELossless

    from tests.io.conftest import build_dicom

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    rgb = _disk(96, 128, 0)
    files = {
        "progressive.jpg": _save(Image.fromarray(rgb), "JPEG", quality=85, progressive=True),
        "cmyk.jpg": _save(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=85),
        "grey16.png": _save(Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)), "PNG"),
        "palette.png": _save(Image.fromarray(rgb).convert("P"), "PNG"),
        "lzw.tif": _save(Image.fromarray(rgb), "TIFF", compression="tiff_lzw"),
        "grey.tif": _save(Image.fromarray(rgb[..., 1]), "TIFF"),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    frames = np.stack([_disk(64, 64, s) for s in range(3)])
    build_dicom(frames).save_as(root / "native_3frames.dcm", enforce_file_format=True)
    for name, syntax in (("rle.dcm", RLELossless), ("j2k.dcm", JPEG2000Lossless)):
        ds = build_dicom(_disk(64, 80, 1))
        try:
            ds.compress(syntax)
        except Exception:  # noqa: BLE001 - encoder not installed: skip this source
            continue
        ds.save_as(root / name, enforce_file_format=True)
    mono = build_dicom((_disk(64, 64, 2)[..., 0].astype(np.uint16) * 16), bits_stored=12)
    mono.save_as(root / "mono12.dcm", enforce_file_format=True)
    del pydicom
    return sorted(p for p in root.iterdir() if p.is_file())


def source_files(folders: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files (by extension) under ``folders``, sorted; lesion masks are left out."""
    out: list[Path] = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and path.suffix.lower() in _IMAGE_SUFFIXES \
                    and "masks" not in path.parts:
                out.append(path)
    return out


def make_corpus(sources: Sequence[Path], folder: str | os.PathLike, seed: int,
                count: int) -> dict[str, list[str]]:
    """Write ``count`` mutants of ``sources`` into ``folder``; returns name -> mutations.

    Names are ``<index>-<mutations>-<source name>``: the source's extension is kept, so a mutant
    still claims its format by name.
    """
    if not sources:
        raise ValueError("no source files to mutate")
    rng = random.Random(seed)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[str]] = {}
    for index in range(count):
        source = rng.choice(list(sources))
        data, names = mutate(source.read_bytes(), rng)
        name = f"{index:04d}-{'+'.join(names)}-{source.name}"
        (root / name).write_bytes(data)
        made[name] = names
    return made
