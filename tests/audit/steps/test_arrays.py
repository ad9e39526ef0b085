# SPDX-License-Identifier: Apache-2.0
"""Batch step ``StoreArrays`` (what the overlays, localisation and sanity check read back) and
audit step ``NameAttributions`` (``--save-attributions`` files for every name)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from medig.audit.steps import batch_steps
from medig.audit.steps.arrays import WORK_MEMBER, NameAttributions, StoreArrays
from medig.visualize import abs_quantiles, clip_value
from tests.audit.steps.kit import (
    finished,
    make_batch,
    make_context,
    photographs,
    settings,
    write_inputs,
)


def _stored(tmp_path, **changes):
    ctx = make_context(tmp_path / "out", settings(**changes))
    batch = make_batch(ctx, tmp_path / "in", n=2, seed=10)
    for step in batch_steps(ctx)[:-1]:  # everything before StoreArrays
        step(batch)
    StoreArrays(ctx)(batch)
    return ctx, batch


def test_store_holds_what_the_later_steps_read_back(tmp_path) -> None:
    ctx, batch = _stored(tmp_path, percentile=98.0)
    for j in range(len(batch)):
        arrays = ctx.store.load_arrays(batch.keys[j], 0)
        assert set(arrays) == {"image", "fov", "attr_map", "attr_scale", "sketch", "clip", "box",
                               "source_shape"}
        image = batch.images[j]
        assert arrays["image"].dtype == np.uint8
        assert np.array_equal(arrays["image"], (image * 255).round().byte().numpy())
        assert np.array_equal(arrays["fov"], batch.fov[j].numpy())
        amap = batch.maps[j].numpy()
        # the map is stored normalised (float16) with its scale: max |a| / scale == 1
        assert arrays["attr_map"].dtype == np.float16
        assert float(arrays["attr_scale"]) == pytest.approx(np.abs(amap).max(), rel=1e-6)
        assert np.abs(arrays["attr_map"]).max() == pytest.approx(1.0, abs=1e-3)
        restored = arrays["attr_map"].astype(np.float32) * float(arrays["attr_scale"])
        assert np.allclose(restored, amap, rtol=1e-3, atol=1e-3 * np.abs(amap).max())
        # the colour scale covers the whole frame (evidence outside the FOV is drawn too)
        assert np.allclose(arrays["sketch"], abs_quantiles(amap, None), rtol=1e-6)
        assert float(arrays["clip"]) == pytest.approx(clip_value(amap, None, 98.0))
        assert np.array_equal(arrays["box"], batch.boxes[j].double().numpy())
        assert tuple(arrays["source_shape"]) == tuple(batch.pixels[j].shape[-2:])
    assert not (ctx.out_dir / "attributions").exists()  # only with --save-attributions


def test_each_baseline_s_own_map_is_stored_when_there_are_several(tmp_path) -> None:
    ctx, batch = _stored(tmp_path, baselines=("black", "blur"))
    expl = batch.explanation
    assert expl.baselines == ["black", "blur"] and len(expl.per_baseline) == 2
    assert not torch.allclose(expl.per_baseline[0], expl.per_baseline[1])  # two different maps
    for j in range(len(batch)):
        arrays = ctx.store.load_arrays(batch.keys[j], 0)
        assert list(arrays["baseline_names"]) == ["black", "blur"]
        assert arrays["baseline_maps"].dtype == np.float16
        assert arrays["baseline_maps"].shape == (2, *batch.maps[j].shape[-2:])
        for k, attributions in enumerate(expl.per_baseline):
            summed = attributions[j].sum(0).numpy()  # the channel sum, computed here
            restored = (arrays["baseline_maps"][k].astype(np.float32)
                        * float(arrays["baseline_scales"][k]))
            assert float(arrays["baseline_scales"][k]) == pytest.approx(np.abs(summed).max(),
                                                                        rel=1e-6)
            assert np.allclose(restored, summed, rtol=1e-3, atol=1e-3 * np.abs(summed).max())


def test_one_baseline_stores_no_per_baseline_maps(tmp_path) -> None:
    ctx, batch = _stored(tmp_path)
    assert len(batch.explanation.per_baseline) == 1
    arrays = ctx.store.load_arrays(batch.keys[0], 0)
    assert not {"baseline_maps", "baseline_scales", "baseline_names"} & set(arrays)


def test_an_all_zero_map_is_stored_without_dividing_by_zero(tmp_path) -> None:
    ctx, batch = _stored(tmp_path)
    batch.maps = torch.zeros_like(batch.maps)
    StoreArrays(ctx)(batch)
    arrays = ctx.store.load_arrays(batch.keys[0], 0, "attr_map", "attr_scale")
    assert float(arrays["attr_scale"]) == 1.0
    assert np.all(arrays["attr_map"] == 0) and np.isfinite(arrays["attr_map"]).all()


def test_frames_are_stored_apart_and_attribution_files_stamped(tmp_path) -> None:
    ctx, batch = _stored(tmp_path, save_attributions=True)
    batch.frames = [None, 3]  # the second image: frame 3 of a multi-frame file
    StoreArrays(ctx)(batch)
    assert ctx.store.array_path(batch.keys[1], 3).is_file()
    for j, name in enumerate([batch.inputs[0].rel, f"{batch.inputs[1].rel}_frame3"]):
        with np.load(ctx.out_dir / "attributions" / f"{name}.npz") as saved:
            assert np.array_equal(saved["attributions"], batch.explanation.attributions[j].numpy())
            assert np.array_equal(saved["fov"], batch.fov[j].numpy())
            assert str(saved[WORK_MEMBER]) == f"{batch.keys[j]}-{batch.frames[j] or 0}"


def _npz(path, work=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    members = {"attributions": np.full(3, len(work or "x"), np.float32)}
    if work is not None:
        members[WORK_MEMBER] = np.str_(work)
    np.savez(path, **members)


def test_every_name_gets_the_file_of_its_own_work(tmp_path, caplog) -> None:
    ctx = make_context(tmp_path / "out", settings(save_attributions=True))
    # a.png and b.png have the same bytes (one work); c.png other bytes whose file is missing;
    # old.png's file was written by an older medig (no stamp).
    same = photographs(1, seed=11)[0]
    items = write_inputs(tmp_path / "in", [same, same, photographs(1, seed=12)[0], same],
                         ["a.png", "b.png", "c.png", "old.png"])
    keys = ["k1", "k1", "k2", "k1"]
    folder = ctx.out_dir / "attributions"
    _npz(folder / "a.png.npz", "k1-0")  # written when the work was computed
    _npz(folder / "b.png.npz", "k9-0")  # b's bytes were another image's last run: stale
    _npz(folder / "c.png.npz", "k9-0")  # stale too, and no file holds k2's work
    _npz(folder / "old.png.npz")
    rows = [{"status": "ok", "path": it.rel} for it in items]
    rows.append({"status": "error", "path": "broken.png"})
    with caplog.at_level(logging.WARNING, logger="medig"):
        NameAttributions()(finished(ctx, items, rows, keys))
    assert (folder / "b.png.npz").read_bytes() == (folder / "a.png.npz").read_bytes()
    assert not (folder / "c.png.npz").exists()  # removed, not left to be believed
    with np.load(folder / "old.png.npz") as old:
        assert WORK_MEMBER not in old.files  # kept as it was
    assert "1 attribution file(s) not written (first: attributions/c.png.npz)" in caplog.text


def test_without_save_attributions_nothing_is_touched(tmp_path) -> None:
    ctx = make_context(tmp_path / "out")
    items = write_inputs(tmp_path / "in", photographs(1, seed=13), ["a.png"])
    stale = ctx.out_dir / "attributions" / "a.png.npz"
    _npz(stale, "other-0")
    NameAttributions()(finished(ctx, items, [{"status": "ok", "path": "a.png"}], ["k"]))
    assert stale.is_file()
