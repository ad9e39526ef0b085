# SPDX-License-Identifier: Apache-2.0
"""Draw the pictures of docs/pacs.md: each DICOM object of an audit, decoded as a viewer would.

    python -m tests.pacs.docs_images [OUT_DIR]     # default docs/images

One synthetic fundus photograph (a DICOM file) is audited with a model whose attribution is known
(``tests.audit.tiny_models:make_left_minus_right``: evidence for on the left half, against on the
right); each object under ``dicom/`` is then read back with pydicom and highdicom only and drawn:
the Secondary Capture's pixels, the Segmentation's two segments over the source in their
recommended display colours, the Measurement Report's content tree as text, and the first page of
the Encapsulated PDF (pdftoppm, when installed).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont

from medig.cli import main
from medig.synthetic import generate
from tests.io.conftest import build_dicom

ROOT = Path(__file__).resolve().parents[2]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _save(image: Image.Image, path: Path, colours: int | None = None) -> None:
    if colours:
        image = image.convert("RGB").quantize(colours)
    image.save(path, optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} kB")


def segmentation_picture(source: Path, seg_path: Path, width: int = 300) -> Image.Image:
    """The source photograph, and beside it the segments blended over it (70%)."""
    src = pydicom.dcmread(source)
    photo = np.asarray(src.pixel_array, dtype=np.float32)
    seg = hd.seg.segread(seg_path)
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    masks = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(src.SOPInstanceUID)], segment_numbers=numbers)[0]
    blended = photo.copy()
    for k, segment in enumerate(seg.SegmentSequence):
        rgb = hd.color.CIELabColor.from_dicom_value(
            segment.RecommendedDisplayCIELabValue).to_rgb(clip=True)
        on = masks[..., k] > 0
        blended[on] = 0.3 * blended[on] + 0.7 * np.asarray(rgb, dtype=np.float32)
    pair = np.concatenate([photo, np.full((photo.shape[0], 8, 3), 255.0), blended], axis=1)
    image = Image.fromarray(pair.clip(0, 255).astype(np.uint8))
    return image.resize((2 * width + 8, round(image.height * (2 * width + 8) / image.width)))


def _lines(ds: pydicom.Dataset) -> list[tuple[int, str]]:
    """The content tree as (depth, text) lines, as an SR viewer lists it."""
    out: list[tuple[int, str]] = []

    def walk(items, depth: int) -> None:
        for item in items or []:
            name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in \
                item else ""
            kind = item.ValueType
            if kind == "NUM":
                value = item.MeasuredValueSequence[0].NumericValue
                text = f"{name}: {value}"
            elif kind == "CODE":
                code = item.ConceptCodeSequence[0]
                text = f"{name}: {code.CodeMeaning} ({code.CodingSchemeDesignator} " \
                       f"{code.CodeValue})"
            elif kind == "TEXT":
                text = f"{name}: {item.TextValue}"
            elif kind == "UIDREF":
                text = f"{name}: (UID)"
            elif kind == "IMAGE":
                ref = item.ReferencedSOPSequence[0]
                text = f"{name}: image {pydicom.uid.UID(ref.ReferencedSOPClassUID).name}"
            else:
                text = f"{name}"
            if not (kind == "CODE" and name == "Language of Content Item and Descendants"):
                out.append((depth, text))
            walk(item.get("ContentSequence"), depth + 1)

    title = ds.ConceptNameCodeSequence[0].CodeMeaning
    out.append((0, f"{title}   ({pydicom.uid.UID(ds.SOPClassUID).name})"))
    walk(ds.ContentSequence, 1)
    return out


def report_picture(sr_path: Path, width: int = 900) -> Image.Image:
    ds = pydicom.dcmread(sr_path)
    lines = _lines(ds)
    font, bold = _font(13), _font(14)
    line_h = 18
    image = Image.new("RGB", (width, 16 + line_h * len(lines)), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for k, (depth, text) in enumerate(lines):
        draw.text((10 + 18 * depth, 8 + k * line_h), text[:120], fill=(20, 20, 20),
                  font=bold if depth == 0 else font)
    return image


def main_(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images, _, _ = generate(1, size=256, seed=11)
        # uint8 RGB, mirrored: a left eye, its optic disc in the left half
        photo = np.ascontiguousarray(images[0].permute(1, 2, 0).numpy()[:, ::-1])
        (root / "in").mkdir()
        source = root / "in" / "fundus.dcm"
        build_dicom(photo, laterality="L").save_as(source, enforce_file_format=True)
        out = root / "out"
        code = main(["audit", str(root / "in"), "--out", str(out), "--model",
                     "tests.audit.tiny_models:make_left_minus_right", "--classes", "healthy",
                     "referable", "--target", "referable", "--output", "logit",
                     "--baseline", "black", "--size", "128", "--workers", "0", "--quiet",
                     "--dicom-out", "--include-phi"])
        if code != 0:
            raise SystemExit(f"the audit exited {code}")
        dicom = out / "dicom"
        _save(segmentation_picture(source, dicom / "maps" / "fundus.dcm.dcm"),
              out_dir / "pacs-segmentation.png", colours=128)
        _save(report_picture(dicom / "sr" / "fundus.dcm.dcm"), out_dir / "pacs-sr.png",
              colours=16)
        sc = pydicom.dcmread(dicom / "overlays" / "fundus.dcm.dcm")
        capture = Image.fromarray(np.asarray(sc.pixel_array))
        capture = capture.resize((480, round(capture.height * 480 / capture.width)))
        _save(capture, out_dir / "pacs-overlay-capture.png", colours=128)
        pdf = next((dicom / "studies").glob("*.dcm"))
        if shutil.which("pdftoppm"):
            doc = pydicom.dcmread(pdf)
            data = bytes(doc.EncapsulatedDocument)[: int(doc.EncapsulatedDocumentLength)]
            (root / "page.pdf").write_bytes(data)
            subprocess.run(["pdftoppm", "-png", "-r", "40", "-singlefile", str(root / "page.pdf"),
                            str(root / "page")], check=True)
            _save(Image.open(root / "page.png"), out_dir / "pacs-encapsulated-pdf.png",
                  colours=64)


if __name__ == "__main__":
    main_(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images")
