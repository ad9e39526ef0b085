# SPDX-License-Identifier: Apache-2.0
"""Write ``examples/fundus/``: synthetic fundus photographs as real files, with lesion masks.

Sixteen images from :func:`medig.synthetic.generate` (fixed seeds, so the folder is reproducible
up to the encoders' versions), at realistic sizes with some non-square frames, saved as JPEG, PNG,
TIFF and DICOM Ophthalmic Photography (JPEG baseline, YBR_FULL_422; one file multi-frame), with
lesion masks as PNG under ``masks/`` (same relative path and stem; ``<stem>_frame<k>.png`` for the
frames of a multi-frame DICOM). No real patient is involved: DICOM identifiers are synthetic::

    python examples/make_examples.py [--out examples/fundus]
"""
from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medig.synthetic import generate, laterality
from medig.utils import atomic_write

OUT = Path(__file__).resolve().parent / "fundus"
OP_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.1"  # Ophthalmic Photography 8 Bit Image Storage
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
UID_ROOT = "2.25."  # UUID-derived UIDs need no registered root


@dataclass(frozen=True)
class Item:
    """One output image: which generated image, how it is framed and saved."""

    name: str  # relative path without extension
    fmt: str  # jpeg | png | tiff | dicom
    index: int  # into the generated batch
    frame: str = "square"  # square | wide (4:3, black side bars) | cut (disk cut top/bottom)


# Two batches (640 and 512 px); the plan mixes formats, framings, classes and a nested folder.
PLAN_640 = [
    Item("clinic_a/img_0001", "jpeg", 0, "wide"), Item("clinic_a/img_0002", "jpeg", 1, "cut"),
    Item("clinic_a/img_0003", "jpeg", 2), Item("img_0004", "jpeg", 3, "wide"),
    Item("img_0005", "jpeg", 4), Item("img_0006", "jpeg", 5, "cut"),
    Item("img_0007", "jpeg", 6), Item("img_0008", "tiff", 7, "wide"),
    Item("img_0009", "dicom", 8, "wide"), Item("img_0010", "jpeg", 9),
]
PLAN_512 = [
    Item("img_0011", "jpeg", 0), Item("img_0012", "jpeg", 1, "cut"), Item("img_0013", "png", 2),
    Item("img_0014", "tiff", 3),
]
MULTIFRAME = Item("img_0015_multiframe", "dicom", 4)  # frames: 512-px image 4 and the next same eye
SEED_640, SEED_512 = 20240507, 20240506


def frame(image: np.ndarray, mask: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Reframe an HxWx3 image and its HxW mask like a camera would."""
    h, w = mask.shape
    if kind == "wide":  # 4:3 sensor, black bars left and right
        pad = (h * 4 // 3 - w) // 2
        return (np.pad(image, ((0, 0), (pad, pad), (0, 0))), np.pad(mask, ((0, 0), (pad, pad))))
    if kind == "cut":  # frame shorter than the disk: cut at top and bottom
        cut = h // 12
        return image[cut:h - cut], mask[cut:h - cut]
    return image, mask


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(array)
    if fmt == "jpeg":
        im.save(buf, format="JPEG", quality=88, subsampling=1)  # 4:2:2, as fundus cameras do
    elif fmt == "png":
        im.save(buf, format="PNG", optimize=True)
    elif fmt == "tiff":
        # JPEG-in-TIFF is what several fundus cameras export; it also keeps the folder small.
        im.save(buf, format="TIFF", compression="jpeg", quality=90)
    else:
        raise ValueError(fmt)
    return buf.getvalue()


def _uid(tag: str) -> str:
    import uuid

    # Deterministic UIDs (a UUID5 of the file's role) keep the folder reproducible.
    return UID_ROOT + str(uuid.uuid5(uuid.NAMESPACE_URL, f"medig-example:{tag}").int)


def dicom_bytes(frames: list[np.ndarray], patient: int, laterality: str, name: str) -> bytes:
    """An OP 8-bit DICOM file, JPEG baseline (YBR_FULL_422), one or more frames."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(OP_SOP_CLASS)
    meta.MediaStorageSOPInstanceUID = UID(_uid(f"{name}:sop"))
    meta.TransferSyntaxUID = UID(JPEG_BASELINE)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(f"{name}:study")
    ds.SeriesInstanceUID = _uid(f"{name}:series")
    ds.PatientName = f"SYNTHETIC^PATIENT{patient:02d}"
    ds.PatientID = f"SYNTH-{patient:04d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = "20240501"
    ds.StudyID = "SYNTH"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "OP"
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    ds.Manufacturer = "medig synthetic generator"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "NO"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ContentDate = "20240501"
    h, w, _ = frames[0].shape
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    jpegs = []
    for f in frames:
        buf = io.BytesIO()
        # Pillow writes YCbCr 4:2:2 JFIF: exactly what YBR_FULL_422 + JPEG baseline describe.
        Image.fromarray(f).save(buf, format="JPEG", quality=90, subsampling=1)
        jpegs.append(buf.getvalue())
    ds.PixelData = encapsulate(jpegs)
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    out: Path = args.out

    batches = {640: generate(len(PLAN_640), size=640, seed=SEED_640),
               512: generate(8, size=512, seed=SEED_512)}
    eyes = {640: laterality(len(PLAN_640), size=640, seed=SEED_640),
            512: laterality(8, size=512, seed=SEED_512)}
    index = []

    def arrays(size: int, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        images, masks, labels = batches[size]
        return (images[i].permute(1, 2, 0).numpy(), masks[i, 0].numpy(), int(labels[i]))

    def record(item: Item, size: int, rel: str, label: int, mask_rel: list[str]) -> None:
        index.append({"file": rel, "label": label, "generated_size": size, "frame": item.frame,
                      "masks": mask_rel})

    patient = 0
    for size, plan in ((640, PLAN_640), (512, PLAN_512)):
        for item in plan:
            image, mask, label = arrays(size, item.index)
            image, mask = frame(image, mask, item.frame)
            ext = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif", "dicom": ".dcm"}[item.fmt]
            if item.fmt == "dicom":
                patient += 1
                data = dicom_bytes([image], patient, eyes[size][item.index], item.name)
            else:
                data = _encode(image, item.fmt)
            atomic_write(out / f"{item.name}{ext}", data)
            atomic_write(out / "masks" / f"{item.name}.png", _png_bytes(mask.astype(np.uint8) * 255))
            record(item, size, f"{item.name}{ext}", label, [f"masks/{item.name}.png"])

    # Both frames show the same eye, as in a real acquisition.
    frames, labels, mask_rel = [], [], []
    first = MULTIFRAME.index
    second = next(j for j in range(first + 1, 8) if eyes[512][j] == eyes[512][first])
    for k, i in enumerate((first, second)):
        image, mask, label = arrays(512, i)
        frames.append(image)
        labels.append(label)
        rel = f"masks/{MULTIFRAME.name}_frame{k}.png"
        atomic_write(out / rel, _png_bytes(mask.astype(np.uint8) * 255))
        mask_rel.append(rel)
    patient += 1
    atomic_write(out / f"{MULTIFRAME.name}.dcm",
                 dicom_bytes(frames, patient, eyes[512][first], MULTIFRAME.name))
    index.append({"file": f"{MULTIFRAME.name}.dcm", "label": labels, "generated_size": 512,
                  "frame": "square", "masks": mask_rel})

    atomic_write(out / "labels.json", json.dumps(
        {"class_names": ["no referable DR", "referable DR"], "seeds": [SEED_640, SEED_512],
         "images": index}, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    n_pos = sum(sum(r["label"]) if isinstance(r["label"], list) else r["label"] for r in index)
    print(f"wrote {len(index)} files ({len(index) + 1} images, {n_pos} referable) to {out}, "
          f"{total / 1e6:.2f} MB")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
