# SPDX-License-Identifier: Apache-2.0
"""The evidence map lies on the source's pixel grid: a spot in the source lands at the same place
in the map, through the model's own crop and back."""
from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch

from medig.cli import EXIT_OK, main
from medig.pacs import read_sr
from medig.pacs.maps import (
    EVIDENCE_COLOURS,
    EVIDENCE_FRACTION,
    evidence_masks,
    evidence_threshold,
    on_source_grid,
)
from medig.preprocess import crop_boxes
from tests.io.conftest import build_dicom, rgb_fundus

SPOT = (30, 80)  # (row, column) of the bright spot in a 96 x 128 source


def spot_image(h: int = 96, w: int = 128, radius: float = 2.5) -> np.ndarray:
    img = rgb_fundus(h, w, seed=3)
    yy, xx = np.mgrid[0:h, 0:w]
    img[np.hypot(yy - SPOT[0], xx - SPOT[1]) <= radius] = 255
    return img


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


@pytest.mark.parametrize("box", [
    (-16.0, -32.0, 144.0, 128.0),  # a square around the field, beyond the frame (zero-padded)
    (40.0, 8.0, 104.0, 72.0),  # a square inside the frame, larger than the model's input
    (60.0, 14.0, 100.0, 54.0),  # smaller than the model's input: the crop is enlarged
])
def test_a_spot_cropped_as_the_model_sees_it_comes_back_to_its_place(box):
    """The model's input is the source cut to its box and resized (medig.preprocess.crop_boxes);
    the map of that input, put back on the source grid, has the spot where the source has it."""
    source = torch.from_numpy(spot_image()).permute(2, 0, 1)[None]
    crop = crop_boxes(source, torch.tensor([box]), 64)[0, 2].float().numpy()  # blue: the spot
    back = on_source_grid(crop - crop.min(), np.array(box), (96, 128))
    assert back.shape == (96, 128) and back.dtype == np.float32
    hot = back >= 0.5 * back.max()
    assert np.abs(centroid(hot) - SPOT).max() <= 0.75
    x0, y0, x1, y1 = (int(v) for v in box)
    outside = np.ones_like(back, dtype=bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert not back[outside].any()  # nothing where the model saw nothing


def test_the_segments_are_the_strongest_five_percent_by_sign():
    rng = np.random.default_rng(0)
    amap = rng.normal(size=(64, 64))
    fov = np.zeros((64, 64), dtype=bool)
    fov[8:56, 8:56] = True
    amap[~fov] = 100.0  # outside the field: not counted in the threshold
    t = evidence_threshold(amap, fov)
    masks = evidence_masks(amap * fov, t)
    share = masks[fov].sum() / fov.sum()
    assert abs(share - EVIDENCE_FRACTION) < 0.005
    assert (amap[masks[..., 0]] > 0).all() and (amap[masks[..., 1]] < 0).all()
    assert not (masks[..., 0] & masks[..., 1]).any()
    assert not evidence_masks(np.zeros((4, 4)), 0.0).any()  # a zero map has no evidence


def test_the_evidence_map_of_a_real_audit_lies_on_the_spot(tmp_path: Path):
    """A model that only looks at bright blue pixels (all of its attribution lies on the one white
    spot of the photograph): the map's "evidence for" segment, decoded with highdicom on the
    source grid, is centred on the spot; its recommended colour is green."""
    src = build_dicom(spot_image(), laterality="R")
    (tmp_path / "in").mkdir()
    src.save_as(tmp_path / "in" / "spot.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    code = main(["audit", str(tmp_path / "in"), "--out", str(out), "--model",
                 "tests.pacs.models:make_bright_spot", "--classes", "healthy", "referable",
                 "--size", "64", "--batch-size", "1", "--workers", "0", "--quiet",
                 "--dicom-out", "--include-phi"])
    assert code == EXIT_OK
    path = out / "dicom" / "maps" / "spot.dcm.dcm"
    seg = hd.seg.segread(path)
    masks = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(src.SOPInstanceUID)], segment_numbers=[1, 2])[0]
    assert masks.shape == (96, 128, 2)
    evidence_for = masks[..., 0] > 0
    assert evidence_for.any()
    assert np.abs(centroid(evidence_for) - SPOT).max() <= 1.0
    assert np.hypot(*(np.argwhere(evidence_for) - SPOT).T).max() <= 5  # nowhere else
    ds = pydicom.dcmread(path)
    labels = [str(s.SegmentLabel) for s in ds.SegmentSequence]
    assert labels == ["evidence for", "evidence against"]
    for segment, rgb in zip(ds.SegmentSequence, EVIDENCE_COLOURS):
        lab = hd.color.CIELabColor.from_dicom_value(segment.RecommendedDisplayCIELabValue)
        assert np.abs(np.subtract(lab.to_rgb(clip=True), rgb)).max() <= 2
    assert read_sr(out / "dicom" / "sr" / "spot.dcm.dcm")["predicted"] == "referable"


def test_each_frame_of_a_multiframe_source_gets_its_own_report_and_map(tmp_path: Path):
    """The bundled two-frame example: per frame, a report and a map that reference that frame,
    on the source's 512 x 512 grid, valid for dciodvfy."""
    import shutil

    from tests.pacs.test_objects import DCIODVFY, dciodvfy_errors
    from tests.pacs.test_sr import MULTIFRAME

    (tmp_path / "in").mkdir()
    shutil.copy(MULTIFRAME, tmp_path / "in" / MULTIFRAME.name)
    out = tmp_path / "out"
    code = main(["audit", str(tmp_path / "in"), "--out", str(out), "--model",
                 "tests.audit.tiny_models:make_tiny", "--classes", "healthy", "referable",
                 "--size", "64", "--workers", "0", "--quiet", "--dicom-out", "--include-phi"])
    assert code == EXIT_OK
    src = pydicom.dcmread(MULTIFRAME, stop_before_pixels=True)
    reports = sorted((out / "dicom" / "sr").iterdir())
    maps = sorted((out / "dicom" / "maps").iterdir())
    assert len(reports) == len(maps) == 2
    frames = []
    for report_path, map_path in zip(reports, maps):
        seg = pydicom.dcmread(map_path)
        assert (seg.Rows, seg.Columns) == (src.Rows, src.Columns)
        ref = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]\
            .SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
        frames.append(int(ref.ReferencedFrameNumber))
        sr = pydicom.dcmread(report_path)
        assert sr.PatientID == src.PatientID and sr.StudyInstanceUID == src.StudyInstanceUID
        if DCIODVFY is not None:
            assert dciodvfy_errors(report_path) == [] and dciodvfy_errors(map_path) == []
    assert sorted(frames) == [1, 2]
