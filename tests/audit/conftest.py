# SPDX-License-Identifier: Apache-2.0
"""A small audit folder with every kind of input a real one has, made fresh per test session."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medig.synthetic import generate
from tests.io.conftest import PHI, build_dicom

TINY = "tests.audit.tiny_models:make_tiny"


def _rgb(t) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


def make_audit_folder(root: Path, n: int = 6, seed: int = 11) -> Path:
    """JPEG, PNG, TIFF, a DICOM with PHI, a corrupt and an empty file, a nested folder, a name
    with spaces and non-ASCII characters, and lesion masks in ``masks/``."""
    images, masks, _labels = generate(n, size=128, seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "masks").mkdir()
    names = ["a.jpg", "b.png", "c.tif", "nested/deeper/d.png", "ösz fundus é.png", "e.dcm"]
    for i, name in enumerate(names[:n]):
        path = root / name
        if name.endswith(".dcm"):
            build_dicom(_rgb(images[i])).save_as(path, enforce_file_format=True)
        else:
            Image.fromarray(_rgb(images[i])).save(path, quality=95)
        Image.fromarray(masks[i, 0].numpy().astype(np.uint8) * 255).save(
            root / "masks" / (Path(name).stem + ".png"))
    (root / "nested" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (root / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="session")
def audit_folder(tmp_path_factory) -> Path:
    return make_audit_folder(tmp_path_factory.mktemp("fundus"))


@pytest.fixture(scope="session")
def phi_strings() -> list[str]:
    return [v for v in PHI.values()] + [v.replace("^", " ") for v in PHI.values()]
