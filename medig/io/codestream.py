# SPDX-License-Identifier: Apache-2.0
"""Read the dimensions a compressed image stream declares, and spot streams cut short, without
decoding a pixel.

A decoder allocates what the *stream* says, not what the container (a DICOM header, say) says: a
6 KB JPEG-baseline DICOM whose header claims 256x256 while the embedded JPEG's frame header
claims 60000x60000 makes the decoder allocate gigabytes. :func:`stream_info` parses the stream's
own header so the caller can compare it with the container and with
:data:`medig.io.MAX_PIXELS` first:

* JPEG (ISO 10918-1): the SOF marker segment of any process — baseline (SOF0), extended (SOF1),
  progressive (SOF2), lossless (SOF3), hierarchical and arithmetic-coded (SOF5-SOF15);
* JPEG-LS (ISO 14495-1): the SOF55 marker segment;
* JPEG 2000 and HTJ2K (ISO 15444-1/-15): the SIZ marker segment of a raw codestream, or of the
  ``jp2c`` box of a JP2 file.

:func:`stream_info` also checks that the stream is *complete*, because decoders fill missing
data with grey and only warn (libjpeg's "premature end of data segment", which Pillow swallows):

* JPEG: an EOI marker must follow the last scan, and every Huffman-coded scan must hold at least
  the bits its blocks need — each 8x8 block of a sequential scan codes a DC difference and an
  end-of-block (or 63 coefficients), each at least one bit; each block of a progressive DC scan
  at least one bit; each sample of a lossless scan at least one bit. A header claiming far more
  pixels than the data can hold (a forged or bit-flipped SOF) is therefore refused as truncated.
* JPEG 2000: every tile-part's declared length (SOT ``Psot``) must fit in the stream.

Nothing here allocates more than the stream it is given; every malformed input raises
:class:`CodestreamError` with a reason of our own.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

__all__ = ["CodestreamError", "StreamInfo", "j2k_info", "jpeg_info", "stream_info"]


class CodestreamError(ValueError):
    """A compressed stream is malformed (``truncated`` tells a cut stream from a corrupt one)."""

    def __init__(self, reason: str, truncated: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.truncated = truncated


@dataclass(frozen=True)
class StreamInfo:
    """What a compressed stream's own header declares.

    Attributes
    ----------
    codec : str
        ``"jpeg"``, ``"jpeg-ls"`` or ``"j2k"``.
    width, height : int
        Image size in pixels (for J2K: the image area, ``Xsiz - XOsiz`` by ``Ysiz - YOsiz``).
    components : int
        Number of colour components.
    precision : int
        Bits per sample (the largest, for J2K).
    process : str
        ``"baseline"``, ``"extended"``, ``"progressive"``, ``"lossless"``, ``"hierarchical"``,
        ``"arithmetic"`` (JPEG), ``"jpeg-ls"`` or ``"j2k"``.
    """

    codec: str
    width: int
    height: int
    components: int
    precision: int
    process: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


_SOF_PROCESS = {
    0xC0: "baseline",
    0xC1: "extended",
    0xC2: "progressive",
    0xC3: "lossless",
    0xC5: "hierarchical",
    0xC6: "hierarchical",
    0xC7: "hierarchical",
    0xC9: "arithmetic",
    0xCA: "arithmetic",
    0xCB: "arithmetic",
    0xCD: "arithmetic",
    0xCE: "arithmetic",
    0xCF: "arithmetic",
    0xF7: "jpeg-ls",
}
_SOI, _EOI, _SOS, _DRI = 0xD8, 0xD9, 0xDA, 0xDD
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field


def stream_info(data: bytes | bytearray | memoryview, complete: bool = True) -> StreamInfo:
    """The dimensions a JPEG, JPEG-LS or JPEG 2000 stream declares, after checking it is complete.

    Parameters
    ----------
    data : bytes-like
        The whole stream (one DICOM frame: its fragments joined), starting with the JPEG SOI
        marker, the J2K SOC marker or a JP2 signature box.
    complete : bool
        Also check that the stream is not cut short (see the module docstring); with False only
        the header is read (the dimensions of a stream that is truncated as well).

    Returns
    -------
    StreamInfo

    Raises
    ------
    CodestreamError
        Not a JPEG / JPEG-LS / J2K stream, a malformed header, or a stream cut short
        (``error.truncated``).
    """
    view = bytes(data[:2])
    if view == b"\xff\xd8":
        return jpeg_info(data, complete)
    if view == b"\xff\x4f" or bytes(data[4:8]) == b"jP  ":
        return j2k_info(data, complete)
    raise CodestreamError("not a JPEG, JPEG-LS or JPEG 2000 stream")


# --------------------------------------------------------------------------- JPEG and JPEG-LS


@dataclass
class _Frame:
    marker: int
    precision: int
    height: int
    width: int
    components: dict[int, tuple[int, int]]  # component id -> (H, V) sampling factors


def _parse_sof(marker: int, segment: bytes) -> _Frame:
    if len(segment) < 6:
        raise CodestreamError("corrupt JPEG frame header (SOF too short)")
    precision, height, width, count = struct.unpack(">BHHB", segment[:6])
    if count == 0 or len(segment) < 6 + 3 * count:
        raise CodestreamError("corrupt JPEG frame header (bad component count)")
    components: dict[int, tuple[int, int]] = {}
    for k in range(count):
        cid, hv = segment[6 + 3 * k], segment[7 + 3 * k]
        h, v = hv >> 4, hv & 0x0F
        if marker != 0xF7 and not (1 <= h <= 4 and 1 <= v <= 4):
            raise CodestreamError("corrupt JPEG frame header (bad sampling factors)")
        components[cid] = (max(h, 1), max(v, 1))
    return _Frame(marker, precision, height, width, components)


def _scan_entropy(data: bytes, pos: int, jpeg_ls: bool) -> tuple[int, int]:
    """Skip a scan's entropy-coded data from ``pos``; returns (position of the next marker, or
    len(data) if none, count of data bytes). RST markers and byte stuffing belong to the data."""
    n = len(data)
    start = pos
    while True:
        at = data.find(b"\xff", pos)
        if at < 0 or at + 1 >= n:
            return n, n - start
        nxt = data[at + 1]
        if jpeg_ls:
            if nxt < 0x80:  # JPEG-LS bit stuffing: FF followed by a byte with a 0 top bit
                pos = at + 2
                continue
        elif nxt == 0x00 or 0xD0 <= nxt <= 0xD7:  # stuffed FF, or a restart marker
            pos = at + 2
            continue
        if nxt == 0xFF:  # fill bytes before a marker
            pos = at + 1
            continue
        return at, at - start


def _min_scan_bits(frame: _Frame, scan_ids: list[int], ss: int, ah: int) -> int:
    """A lower bound on the entropy-coded bits of one Huffman-coded scan (see module docstring)."""
    process = _SOF_PROCESS.get(frame.marker)
    hmax = max(h for h, _ in frame.components.values())
    vmax = max(v for _, v in frame.components.values())
    bits = 0
    for cid in scan_ids:
        h, v = frame.components.get(cid, (1, 1))
        cols = math.ceil(frame.width * h / hmax)
        rows = math.ceil(frame.height * v / vmax)
        blocks = math.ceil(cols / 8) * math.ceil(rows / 8)
        if process in ("baseline", "extended"):
            bits += 2 * blocks
        elif process == "progressive" and ss == 0:
            bits += blocks  # DC first scan: one code per block; refinement: one bit per block
        elif process == "lossless":
            bits += cols * rows
    return bits


def jpeg_info(data: bytes | bytearray | memoryview, complete: bool = True) -> StreamInfo:
    """Parse a JPEG or JPEG-LS stream's markers (see :func:`stream_info`)."""
    data = bytes(data)
    n = len(data)
    if not data.startswith(b"\xff\xd8"):
        raise CodestreamError("not a JPEG stream (no SOI marker)")
    pos = 2
    frame: _Frame | None = None
    scans = 0
    while True:
        # Bytes that are not a marker are skipped, as libjpeg does (with a warning); markers may
        # be preceded by any number of 0xFF fill bytes.
        at = data.find(b"\xff", pos)
        while 0 <= at < n - 1 and data[at + 1] == 0xFF:
            at += 1
        if at < 0 or at + 1 >= n:
            raise CodestreamError("truncated JPEG data (no end-of-image marker)", truncated=True)
        marker = data[at + 1]
        pos = at + 2
        if marker == 0x00:  # a stuffed byte outside a scan: garbage
            continue
        if marker == _EOI:
            break
        if marker == _SOI:
            raise CodestreamError("corrupt JPEG data (start-of-image inside the image)")
        if marker in _STANDALONE:
            continue
        if pos + 2 > n:
            raise CodestreamError("truncated JPEG data (inside a marker segment)", truncated=True)
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise CodestreamError("corrupt JPEG data (bad marker segment length)")
        if pos + length > n:
            raise CodestreamError("truncated JPEG data (inside a marker segment)", truncated=True)
        segment = data[pos + 2 : pos + length]
        pos += length
        if marker in _SOF_PROCESS:
            if frame is None:  # hierarchical files have several frames; the first sets the size
                frame = _parse_sof(marker, segment)
                if not complete:
                    break
            continue
        if marker != _SOS:
            continue
        if frame is None:
            raise CodestreamError("corrupt JPEG data (scan before the frame header)")
        if not segment or len(segment) < 1 + 2 * segment[0] + 3:
            raise CodestreamError("corrupt JPEG scan header")
        count = segment[0]
        scan_ids = [segment[1 + 2 * k] for k in range(count)]
        ss, _se, ahal = segment[1 + 2 * count : 4 + 2 * count]
        jpeg_ls = frame.marker == 0xF7
        pos, coded = _scan_entropy(data, pos, jpeg_ls)
        scans += 1
        if pos >= n:
            raise CodestreamError("truncated JPEG data (ends inside a scan)", truncated=True)
        needed = _min_scan_bits(frame, scan_ids, ss, ahal >> 4) if not jpeg_ls else 0
        if coded * 8 < needed:
            raise CodestreamError(
                f"truncated JPEG data: a scan holds {coded:,} bytes, fewer than the "
                f"{math.ceil(needed / 8):,} its {frame.width}x{frame.height} frame needs",
                truncated=True,
            )
    if frame is None:
        raise CodestreamError("corrupt JPEG data (no frame header)")
    if complete and scans == 0:
        raise CodestreamError("truncated JPEG data (no image data before end-of-image)",
                              truncated=True)
    process = _SOF_PROCESS[frame.marker]
    return StreamInfo(
        codec="jpeg-ls" if process == "jpeg-ls" else "jpeg",
        width=frame.width,
        height=frame.height,
        components=len(frame.components),
        precision=frame.precision,
        process=process,
    )


# --------------------------------------------------------------------------- JPEG 2000

_SOC, _SIZ, _SOT, _EOC = b"\xff\x4f", b"\xff\x51", b"\xff\x90", b"\xff\xd9"


def _jp2_codestream(data: bytes) -> bytes:
    """The contiguous codestream (``jp2c`` box) of a JP2 file."""
    pos, n = 0, len(data)
    while pos + 8 <= n:
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if length == 1:  # 64-bit extended length
            if pos + 16 > n:
                break
            (length,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        elif length == 0:  # the box runs to the end of the file
            length = n - pos
        if length < header:
            raise CodestreamError("corrupt JP2 file (bad box length)")
        if kind == b"jp2c":
            return data[pos + header : pos + length]
        pos += length
    raise CodestreamError("truncated JP2 file (no codestream box)", truncated=True)


def j2k_info(data: bytes | bytearray | memoryview, complete: bool = True) -> StreamInfo:
    """Parse a J2K codestream's SIZ segment and tile-part lengths (see :func:`stream_info`)."""
    data = bytes(data)
    if data[4:8] == b"jP  ":
        data = _jp2_codestream(data)
    n = len(data)
    if not data.startswith(_SOC + _SIZ):
        raise CodestreamError("corrupt JPEG 2000 codestream (no SIZ marker after SOC)")
    if n < 4 + 38:
        raise CodestreamError("truncated JPEG 2000 codestream (inside SIZ)", truncated=True)
    (lsiz,) = struct.unpack(">H", data[4:6])
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", data[8:24])
    (csiz,) = struct.unpack(">H", data[40:42])
    if lsiz != 38 + 3 * csiz or csiz == 0 or xsiz <= xosiz or ysiz <= yosiz:
        raise CodestreamError("corrupt JPEG 2000 codestream (inconsistent SIZ segment)")
    if 4 + lsiz > n:
        raise CodestreamError("truncated JPEG 2000 codestream (inside SIZ)", truncated=True)
    precision = max((data[42 + 3 * k] & 0x7F) + 1 for k in range(csiz))
    info = StreamInfo(codec="j2k", width=xsiz - xosiz, height=ysiz - yosiz, components=csiz,
                      precision=precision, process="j2k")
    if not complete:
        return info
    # Walk the main header to the first tile-part, then tile-part by tile-part (Psot lengths).
    pos = 4 + lsiz
    while True:
        if pos + 4 > n:
            raise CodestreamError("truncated JPEG 2000 codestream (main header)", truncated=True)
        marker = data[pos : pos + 2]
        if marker == _SOT:
            break
        if marker[0:1] != b"\xff":
            raise CodestreamError("corrupt JPEG 2000 codestream (marker expected)")
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            raise CodestreamError("corrupt JPEG 2000 codestream (bad marker segment length)")
        pos += 2 + length
    tile_parts = 0
    while pos + 2 <= n and data[pos : pos + 2] == _SOT:
        if pos + 12 > n:
            raise CodestreamError("truncated JPEG 2000 codestream (inside SOT)", truncated=True)
        (psot,) = struct.unpack(">I", data[pos + 6 : pos + 10])
        tile_parts += 1
        if psot == 0:  # the last tile-part: runs to the EOC marker
            if not data.rstrip(b"\x00").endswith(_EOC):
                raise CodestreamError("truncated JPEG 2000 codestream (no EOC marker)",
                                      truncated=True)
            pos = n
            break
        if psot < 14 or pos + psot > n:
            raise CodestreamError(
                "truncated JPEG 2000 codestream (a tile-part runs past the end)", truncated=True)
        pos += psot
    if tile_parts == 0:
        raise CodestreamError("truncated JPEG 2000 codestream (no tile data)", truncated=True)
    if pos < n and data[pos : pos + 2] != _EOC:
        raise CodestreamError("corrupt JPEG 2000 codestream (tile-part lengths)")
    return info
