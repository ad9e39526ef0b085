# SPDX-License-Identifier: Apache-2.0
"""What an audit derives from file names, end to end: names that are not UTF-8, one content under
several names, and lesion masks that change between runs."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medig.audit import read_results
from medig.cli import EXIT_OK, main
from medig.synthetic import generate
from tests.audit.conftest import TINY

BASE = ["--model", TINY, "--classes", "a", "b", "--size", "64", "--workers", "0", "--quiet"]
# Not UTF-8, or UTF-8 holding a line break of str.splitlines (U+2028, U+0085).
NON_UTF8 = [b"caf\xff.jpg", b"\xff\xfe.jpg", b"caf\xe9_left.jpg", "a\u2028b\x85.jpg".encode()]


def _fundus(seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, masks, _ = generate(1, size=64, seed=seed)
    return images[0].permute(1, 2, 0).numpy(), masks[0, 0].numpy()


def _audit(folder, out, *extra: str) -> tuple[int, dict[str, dict]]:
    code = main(["audit", os.fsdecode(folder), "--out", os.fsdecode(out), *BASE, *extra])
    rows = read_results(os.path.join(os.fsdecode(out), "results.jsonl"))
    return code, {r["path"]: r for r in rows}


def _records(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / ".medig" / "records").iterdir()}


def test_names_that_are_not_utf8_are_audited_and_resumed(tmp_path, capsys):
    # Made with bytes paths: exactly the bytes a file system may hold (no UTF-8 spelling exists).
    folder = os.path.join(os.fsencode(tmp_path), b"in\xff")
    os.mkdir(folder)
    masks = os.path.join(os.fsencode(tmp_path), b"m\xfd")  # in the manifest's settings
    os.mkdir(masks)
    for seed, name in enumerate(NON_UTF8):
        image, _ = _fundus(seed)
        with open(os.path.join(folder, name), "wb") as fh:
            Image.fromarray(image).save(fh, format="JPEG", quality=95)
    square = np.zeros((64, 64), np.uint8)
    square[20:36, 14:30] = 255
    with open(os.path.join(masks, b"caf\xff.png"), "wb") as fh:
        Image.fromarray(square).save(fh, format="PNG")
    out = os.path.join(os.fsencode(tmp_path), b"out\xfe")
    code, rows = _audit(folder, out, "--per-study", "--masks", os.fsdecode(masks))
    assert code == EXIT_OK, capsys.readouterr()
    assert set(rows) == {"caf%FF.jpg", "%FF%FE.jpg", "caf%E9_left.jpg", "a%u2028b%u0085.jpg"}
    assert all(r["status"] == "ok" and r["study"] for r in rows.values())
    assert rows["caf%E9_left.jpg"]["laterality"] == "L"
    assert rows["caf%FF.jpg"]["mask_area_fraction"] is not None
    assert rows["%FF%FE.jpg"]["mask_area_fraction"] is None
    manifest = json.loads((Path(os.fsdecode(out)) / "manifest.json").read_text("utf-8"))
    assert os.fsencode(manifest["settings"]["masks"]) == masks
    assert len({r["study"] for r in rows.values()}) == 4
    assert "\\udcfe" in capsys.readouterr().out  # the --out path, printed escaped
    results = Path(os.fsdecode(out)) / "results.jsonl"
    before, records = results.read_bytes(), _records(Path(os.fsdecode(out)))
    before.decode("utf-8")
    code, _ = _audit(folder, out, "--per-study", "--masks", os.fsdecode(masks))
    assert code == EXIT_OK
    assert results.read_bytes() == before
    assert _records(Path(os.fsdecode(out))) == records  # resumed, not recomputed or retried


def test_one_content_under_many_names_takes_each_name(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_fundus(3)[0]).save(folder / "c.jpg", quality=95)
    out = tmp_path / "out"
    assert _audit(folder, out)[0] == EXIT_OK  # c.jpg's work is stored first, on its own
    names = ["a_left.jpg", "b_right.jpg", "10_left.jpg", "10_right.jpg"]
    for name in names:
        shutil.copy(folder / "c.jpg", folder / name)
    code, rows = _audit(folder, out, "--per-study")
    assert code == EXIT_OK
    assert len({r["sha256"] for r in rows.values()}) == 1
    assert len(list((out / ".medig" / "records").iterdir())) == 1  # one piece of work
    eyes = {p: (r["laterality"], r["laterality_source"]) for p, r in rows.items()}
    assert eyes == {"a_left.jpg": ("L", "file name"), "b_right.jpg": ("R", "file name"),
                    "c.jpg": (None, None), "10_left.jpg": ("L", "file name"),
                    "10_right.jpg": ("R", "file name")}
    study = {p: r["study"] for p, r in rows.items()}
    assert study["10_left.jpg"] == study["10_right.jpg"]
    assert len({study["10_left.jpg"], study["a_left.jpg"], study["b_right.jpg"],
                study["c.jpg"]}) == 4
    assert sorted(p.stem for p in (out / "studies").glob("*.pdf")) == sorted(set(study.values()))
    assert {r["overlay"] for r in rows.values()} == {f"overlays/{n}.png" for n in [*names, "c.jpg"]}


def _mask_png(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


FIGURES = ("pointing_hit", "mask_mass_fraction", "mask_area_fraction")


def _figures(rows: dict[str, dict], name: str) -> tuple:
    return tuple(rows[name][k] for k in FIGURES)


@pytest.fixture
def masked(tmp_path):
    folder, masks = tmp_path / "in", tmp_path / "masks"
    folder.mkdir()
    masks.mkdir()
    for seed, name in ((5, "x"), (6, "y")):
        image, _ = _fundus(seed)
        Image.fromarray(image).save(folder / f"{name}.png")
        square = np.zeros(image.shape[:2], bool)
        square[20:36, 14:30] = True  # a lesion left of the centre, inside the field of view
        _mask_png(masks / f"{name}.png", square)
    return folder, masks


def test_replaced_mask_gives_new_figures_without_recomputing(masked, tmp_path):
    folder, masks = masked
    out = tmp_path / "out"
    code, first = _audit(folder, out, "--masks", str(masks))
    assert code == EXIT_OK and first["x.png"]["mask_area_fraction"] is not None
    records = _records(out)
    moved = np.zeros((64, 64), bool)
    moved[30:46, 36:52] = True  # another place, another size
    _mask_png(masks / "x.png", moved)
    _, second = _audit(folder, out, "--masks", str(masks))
    assert _records(out) == records  # the attribution is reused: only the figures change
    assert _figures(second, "x.png") != _figures(first, "x.png")
    assert _figures(second, "y.png") == _figures(first, "y.png")
    # the figures are those a fresh audit with the new mask gives
    _, fresh = _audit(folder, tmp_path / "fresh", "--masks", str(masks))
    assert _figures(second, "x.png") == _figures(fresh, "x.png")


def test_deleted_mask_leaves_no_figures(masked, tmp_path):
    folder, masks = masked
    out = tmp_path / "out"
    _, first = _audit(folder, out, "--masks", str(masks))
    assert all(v is not None for v in _figures(first, "x.png"))
    (masks / "x.png").unlink()
    code, second = _audit(folder, out, "--masks", str(masks))
    assert code == EXIT_OK
    assert _figures(second, "x.png") == (None, None, None)
    assert _figures(second, "y.png") == _figures(first, "y.png")
    on_disk = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["mask_area_fraction"] for r in on_disk if r["path"] == "x.png"] == [None]


def test_same_content_different_masks(masked, tmp_path):
    # One content, two names, two masks: the figures follow each name's mask.
    folder, masks = masked
    (folder / "y.png").unlink()
    shutil.copy(folder / "x.png", folder / "x2.png")
    other = np.zeros((64, 64), bool)
    other[30:46, 36:52] = True
    _mask_png(masks / "x2.png", other)
    code, rows = _audit(folder, tmp_path / "out", "--masks", str(masks))
    assert code == EXIT_OK and rows["x.png"]["sha256"] == rows["x2.png"]["sha256"]
    assert rows["x.png"]["mask_area_fraction"] != rows["x2.png"]["mask_area_fraction"]


def _saved(out: Path, name: str) -> np.ndarray:
    with np.load(out / "attributions" / f"{name}.npz") as data:
        return data["attributions"]


def test_attribution_files_follow_the_names(tmp_path, caplog):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for seed, name in ((7, "a.png"), (8, "b.png")):
        Image.fromarray(_fundus(seed)[0]).save(folder / name)
    assert _audit(folder, out, "--save-attributions")[0] == EXIT_OK
    first = {n: _saved(out, n) for n in ("a.png", "b.png")}
    assert not np.array_equal(first["a.png"], first["b.png"])
    records = _records(out)
    # a name added with bytes audited before, and two files whose bytes were swapped
    shutil.copy(folder / "a.png", folder / "c.png")
    data_a, data_b = (folder / "a.png").read_bytes(), (folder / "b.png").read_bytes()
    (folder / "a.png").write_bytes(data_b)
    (folder / "b.png").write_bytes(data_a)
    code, _ = _audit(folder, out, "--save-attributions")
    assert code == EXIT_OK and _records(out) == records  # nothing recomputed
    assert np.array_equal(_saved(out, "c.png"), first["a.png"])
    assert np.array_equal(_saved(out, "a.png"), first["b.png"])
    assert np.array_equal(_saved(out, "b.png"), first["a.png"])
    # work stored without --save-attributions has no file to give: said, not invented
    shutil.copy(folder / "a.png", folder / "d.png")
    plain = tmp_path / "plain"
    assert _audit(folder, plain)[0] == EXIT_OK
    caplog.clear()
    assert _audit(folder, plain, "--save-attributions")[0] == EXIT_OK
    assert not (plain / "attributions").exists()
    assert "attribution file(s) not written" in caplog.text


def test_dicom_laterality_is_read_as_dicom_defines_it(tmp_path):
    # R, L, B or U (any case, padded) is the eye; anything else says nothing, and the name may.
    from tests.io.conftest import build_dicom, rgb_fundus

    folder = tmp_path / "in"
    folder.mkdir()
    for seed, (name, value) in enumerate([("p_left.dcm", "XX"), ("q_left.dcm", "r ")]):
        ds = build_dicom(rgb_fundus(64, 64, seed=seed))
        ds.ImageLaterality = value
        ds.save_as(folder / name, enforce_file_format=True)
    code, rows = _audit(folder, tmp_path / "out")
    assert code == EXIT_OK
    assert (rows["p_left.dcm"]["laterality"], rows["p_left.dcm"]["laterality_source"]) == (
        "L", "file name")
    assert (rows["q_left.dcm"]["laterality"], rows["q_left.dcm"]["laterality_source"]) == (
        "R", "dicom")
