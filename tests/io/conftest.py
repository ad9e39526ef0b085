# SPDX-License-Identifier: Apache-2.0
"""Shared factories for medig.io tests: real files written with Pillow and pydicom in tmp_path.

Exposed as fixtures only (``kit``, ``make_dicom``) so the tests work under any pytest import mode
and whether or not ``tests/`` becomes a package.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

OP_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"  # Ophthalmic Photography 8 Bit Image Storage
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

#: Identifying values written into test DICOMs; none may appear in output without include_phi.
PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-4471902",
    "PatientBirthDate": "19610417",
    "AccessionNumber": "ACC-88121",
    "StudyDate": "20240219",
    "InstitutionName": "Saint Example Eye Hospital",
    "ReferringPhysicianName": "Who^Doctor",
}

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def rgb_fundus(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A small smooth RGB image (a bright disk with noise) that compresses like a photograph."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - h / 2, xx - w / 2) / (min(h, w) / 2)
    disk = np.clip(1.2 - r, 0, 1)
    img = np.stack([200 * disk, 90 * disk + 20 * np.sin(xx / 5), 40 * disk], axis=-1)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def phi_values(ds: Dataset) -> list[str]:
    return [str(v) for v in PHI.values()] + [str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)]


def build_dicom(
    pixels: np.ndarray,
    *,
    photometric: str | None = None,
    bits_stored: int | None = None,
    signed: bool = False,
    sop_class: str = OP_8BIT,
    laterality: str | None = "R",
) -> Dataset:
    """An in-memory DICOM data set around ``pixels`` ((F,)H,W(,3)) with PHI filled in."""
    arr = np.asarray(pixels)
    colour = (
        arr.shape[-1] == 3
        and arr.ndim in (3, 4)
        and photometric
        not in (
            "MONOCHROME1",
            "MONOCHROME2",
        )
    )
    frames = arr.shape[0] if arr.ndim == (4 if colour else 3) else 1
    rows, cols = (arr.shape[-3], arr.shape[-2]) if colour else (arr.shape[-2], arr.shape[-1])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    for key, value in PHI.items():
        setattr(ds, key, value)
    ds.Modality = "OP" if sop_class == OP_8BIT else "OT"
    if laterality:
        ds.ImageLaterality = laterality
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if colour else "MONOCHROME2")
    if colour:
        ds.PlanarConfiguration = 0
    allocated = arr.dtype.itemsize * 8
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    return ds


@pytest.fixture
def make_dicom(tmp_path: Path) -> Callable[..., Path]:
    """``make_dicom(pixels, name="x.dcm", compress=None, preamble=True, **build_kwargs)``."""

    def make(
        pixels: np.ndarray,
        name: str = "image.dcm",
        *,
        compress: str | None = None,
        preamble: bool = True,
        dataset: Dataset | None = None,
        **kwargs: object,
    ) -> Path:
        ds = dataset if dataset is not None else build_dicom(pixels, **kwargs)
        if compress:
            ds.compress(compress)
        path = tmp_path / name
        if preamble:
            ds.save_as(path, enforce_file_format=True)
        else:
            del ds.file_meta
            ds.save_as(path, implicit_vr=False, little_endian=True)
        return path

    return make


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """Helpers and constants: ``kit.rgb_fundus``, ``kit.build_dicom``, ``kit.PHI``, ..."""
    return SimpleNamespace(
        OP_8BIT=OP_8BIT,
        SECONDARY_CAPTURE=SECONDARY_CAPTURE,
        PHI=PHI,
        PYDICOM_TEST_FILES=PYDICOM_TEST_FILES,
        rgb_fundus=rgb_fundus,
        build_dicom=build_dicom,
        phi_values=phi_values,
    )
