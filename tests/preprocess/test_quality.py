# SPDX-License-Identifier: Apache-2.0
"""The image-quality gate on real photographs (scikit-image's bundled data, the bundled examples)
and on synthetic degradations of known severity."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medig.io import read_frames
from medig.preprocess import (
    QUALITY_FIELDS,
    THRESHOLDS,
    FundusPreprocess,
    assess_quality,
    detect_fov,
    detect_fov_circles,
)
from medig.synthetic import generate
from medig.synthetic.degrade import SEVERITIES, degrade
from medig.synthetic.disk import synthetic_disk

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the test extra)")
DATA = Path(skimage_data.__file__).parent
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fundus"

#: The scikit-image images the issue lists, and more, with the file each is bundled as.
NON_FUNDUS = {
    "astronaut": "astronaut.png", "coffee": "coffee.png", "chelsea": "chelsea.png",
    "rocket": "rocket.jpg", "page": "page.png", "text": "text.png",
    "checkerboard": "chessboard_GRAY.png", "camera": "camera.png", "coins": "coins.png",
    "moon": "moon.png", "horse": "horse.png", "immunohistochemistry": "ihc.png",
    "hubble_deep_field": "hubble_deep_field.jpg", "brick": "brick.png", "grass": "grass.png",
    "gravel": "gravel.png", "colorwheel": "color.png", "logo": "logo.png", "cell": "cell.png",
}


def bundled(name: str, filename: str) -> torch.Tensor:
    """A scikit-image data image as uint8 (3, H, W): only from files inside the installed wheel
    (so nothing is ever downloaded)."""
    if not (DATA / filename).is_file():
        pytest.skip(f"{filename} is not bundled with this scikit-image")
    a = np.asarray(getattr(skimage_data, name)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    return torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def retina() -> torch.Tensor:
    return bundled("retina", "retina.jpg")


def resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return F.interpolate(x[None].float(), size=(h, w), mode="bilinear", antialias=True
                         ).round().clamp(0, 255).byte()[0]


def in_disk(x: torch.Tensor) -> torch.Tensor:
    """``x`` seen through a circular aperture (black outside a centred disk)."""
    _, h, w = x.shape
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    disk = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 <= (0.45 * min(h, w)) ** 2
    return torch.where(disk, x, torch.zeros_like(x))


def test_real_retina_is_gradeable_in_every_framing(retina):
    h = retina.shape[1]
    grey = (retina.float() * torch.tensor([0.3, 0.59, 0.11]).view(3, 1, 1)).sum(0, keepdim=True)
    framings = {
        "as is": retina,
        "700 px": resize(retina, 700, 700),
        "cut by the frame": retina[:, 180:h - 180].contiguous(),
        "full-frame crop": retina[:, 355:1055, 255:1155].contiguous(),
        "red-free (grey)": grey.round().byte().expand(3, -1, -1).contiguous(),
        "darker": (retina.float() * 0.35).round().byte(),
        "small in a large frame": F.pad(resize(retina, 400, 400), (400, 400, 200, 200)),
    }
    result = assess_quality(list(framings.values()))
    verdicts = dict(zip(framings, result.quality))
    assert verdicts == dict.fromkeys(framings, "gradeable"), dict(zip(framings, result.reasons))
    shapes = dict(zip(framings, result.fov_shape))
    assert shapes["as is"] == "circle" and shapes["cut by the frame"] == "cut"
    assert shapes["full-frame crop"] == "full_frame"
    assert result.colour[0] == "red" and result.colour[4] == "grey"
    # fov_fraction: the retina's disk (r ~ 696 of 1411) covers pi r^2 / 1411^2 of the frame
    assert abs(float(result.fov_fraction[0]) - math.pi * 696 ** 2 / 1411 ** 2) < 0.02
    assert abs(float(result.fov_fraction[3]) - 1.0) < 0.02


def test_listed_non_fundus_images_are_never_gradeable():
    images = {name: bundled(name, f) for name, f in NON_FUNDUS.items()}
    # The same scenes through a circular aperture, like a fundus camera's (or a dermatoscope's).
    images.update({f"{n} in a disk": in_disk(images[n])
                   for n in ("astronaut", "coffee", "chelsea", "camera", "coins", "moon")})
    result = assess_quality(list(images.values()))
    verdicts = dict(zip(images, result.quality))
    assert "gradeable" not in verdicts.values(), verdicts
    for name in ("astronaut", "coffee", "chelsea", "rocket", "page", "text", "checkerboard"):
        assert verdicts[name] in ("not_fundus", "ungradeable")
    # A warm-coloured scene is rejected for its texture, not its colour.
    assert verdicts["coffee"] == "not_fundus"
    assert "texture" in result.reasons[list(images).index("coffee")][0]


@pytest.mark.slow
def test_every_bundled_example_is_gradeable():
    frames = [(f"{p.name}#{k}", fr.pixels) for p in sorted(EXAMPLES.rglob("*"))
              if p.suffix in (".jpg", ".png", ".tif", ".dcm") and "masks" not in p.parts
              for k, fr in enumerate(read_frames(p))]
    assert len(frames) == 16
    result = assess_quality([f for _, f in frames])
    bad = {name: why for (name, _), q, why in zip(frames, result.quality, result.reasons)
           if q != "gradeable"}
    assert not bad


@pytest.fixture(scope="module")
def degradation_base(retina) -> torch.Tensor:
    images, _, _ = generate(3, size=256, seed=3)
    return torch.cat([resize(retina, 256, 256)[None], images])


@pytest.fixture(scope="module")
def circles(degradation_base) -> torch.Tensor:
    return detect_fov_circles(degradation_base)


@pytest.mark.slow
def test_verdicts_on_declared_degradations_are_right(degradation_base, circles):
    right = total = 0
    wrong = []
    for name, declared in SEVERITIES.items():
        for kind, severities in declared.items():
            for severity in severities:
                images = degrade(degradation_base, name, severity, seed=int(100 * severity),
                                 circles=circles)
                for i, q in enumerate(assess_quality(list(images)).quality):
                    ok = q == kind
                    right += ok
                    total += 1
                    if not ok:
                        wrong.append((name, severity, i, q))
    assert total == 4 * sum(len(s) for d in SEVERITIES.values() for s in d.values())
    assert right / total >= 0.95, wrong


def test_exposure_measures_recover_the_known_severity(degradation_base):
    washed = assess_quality(list(degrade(degradation_base, "over_expose", 0.5)))
    # half the field clipped; the measure (second channel >= 250/255, rim excluded) is within 10%
    assert torch.allclose(washed.saturated_fraction, torch.full((4,), 0.5, dtype=torch.float64),
                          atol=0.1)
    assert all("over-exposed" in r[0] for r in washed.reasons)
    dark = assess_quality(list(degrade(degradation_base, "under_expose", 7.0)))
    assert bool((dark.dark_fraction > 0.9).all())
    assert all(r[0].startswith("under-exposed") for r in dark.reasons)
    normal = assess_quality(list(degradation_base))
    assert bool((normal.saturated_fraction < 0.05).all() and (normal.dark_fraction < 0.05).all())
    assert bool((dark.mean_luminance < 0.05).all() and (normal.mean_luminance > 0.15).all())


def test_sharpness_falls_with_defocus_and_does_not_depend_on_resolution(degradation_base):
    blurs = (0.0, 0.003, 0.006, 0.012)
    sharp = torch.stack([assess_quality(list(degrade(degradation_base, "defocus", b))).sharpness
                         for b in blurs])
    assert bool((sharp[1:] < sharp[:-1]).all()), sharp
    # The same photographs at twice the resolution measure the same (fixed working resolution).
    big = torch.stack([resize(x, 512, 512) for x in degradation_base])
    twice = assess_quality(list(big)).sharpness
    assert torch.allclose(twice, sharp[0], rtol=0.2), (twice, sharp[0])


def test_small_pupil_is_uneven_illumination(degradation_base):
    result = assess_quality(list(degrade(degradation_base, "small_pupil", 0.7)))
    assert result.quality == ["ungradeable"] * 4
    assert all("uneven illumination" in r[0] for r in result.reasons)
    # the field of view is the camera's aperture, not the lit disk inside it
    full = detect_fov(list(degradation_base)).circles[:, 2]
    torch.testing.assert_close(detect_fov(list(degrade(degradation_base, "small_pupil", 0.7))
                                          ).circles[:, 2], full, rtol=0.03, atol=0)


def test_blank_and_white_frames_have_no_invented_disk():
    black = torch.zeros(3, 300, 400, dtype=torch.uint8)
    white = torch.full((3, 300, 400), 255, dtype=torch.uint8)
    result = assess_quality([black, white])
    assert result.fov_shape == ["none", "full_frame"]
    assert result.quality == ["ungradeable", "ungradeable"]
    assert result.reasons[0] == ["no field of view (blank image)"]
    assert result.reasons[1][0].startswith("over-exposed") and result.saturated_fraction[1] > 0.97
    assert abs(float(result.fov_fraction[1]) - 1.0) < 0.01  # the whole frame, no disk


def test_burned_in_text_changes_nothing():
    clean = synthetic_disk(300, 400, 200, 150, 135, seed=1)
    text = synthetic_disk(300, 400, 200, 150, 135, text=True, seed=1)
    result = assess_quality([clean, text])
    assert result.fov_shape == ["circle", "circle"]
    assert result.quality[0] == result.quality[1]
    assert abs(float(result.fov_fraction[0] - result.fov_fraction[1])) < 1e-3


def test_rows_are_json_ready_and_thresholds_live_in_one_place(degradation_base):
    result = assess_quality(list(degradation_base[:2]))
    rows = result.rows()
    assert [list(r) for r in rows] == [list(QUALITY_FIELDS)] * 2
    json.dumps(rows, allow_nan=False)
    # Raising one threshold changes the verdict, and says why.
    strict = dataclasses.replace(THRESHOLDS, min_sharpness=1.0)
    again = assess_quality(list(degradation_base[:2]), thresholds=strict)
    assert again.quality == ["ungradeable"] * 2
    assert all(r[0].startswith("out of focus") for r in again.reasons)


def test_fundus_preprocess_returns_quality_only_when_asked(degradation_base):
    pre = FundusPreprocess(size=64)
    images = [degradation_base[0], degradation_base[1, :, 40:-40]]
    out = pre(images)
    assert len(out) == 2
    x, masks, quality = pre(images, return_quality=True)
    torch.testing.assert_close(x, out[0])
    assert quality.quality == assess_quality(images).quality
    assert quality.fov_shape == ["circle", "cut"]
    *_, boxes, again = pre.forward_with_boxes(images, return_quality=True)
    assert boxes.shape == (2, 4) and again.quality == quality.quality


def test_bad_input_raises_clearly():
    with pytest.raises(ValueError, match="no images"):
        assess_quality([])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        assess_quality([torch.zeros(2, 5, 5, dtype=torch.uint8)])
    img = torch.zeros(3, 20, 20, dtype=torch.uint8)
    with pytest.raises(ValueError, match="fov has 2 entries for 1 images"):
        assess_quality([img], detect_fov([img, img]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(degradation_base):
    cpu = assess_quality(list(degradation_base))
    gpu = assess_quality([x.cuda() for x in degradation_base])
    assert gpu.quality == cpu.quality and gpu.fov_shape == cpu.fov_shape
    torch.testing.assert_close(gpu.sharpness, cpu.sharpness, rtol=0.05, atol=1e-3)
