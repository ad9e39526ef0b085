# SPDX-License-Identifier: Apache-2.0
"""The measurements behind :mod:`medig.preprocess.quality_thresholds`, and the verdicts they give.

Builds groups of photographs whose answer is known and prints, per group, the range (min /
median / max) of every quality measure, then each group's verdicts and every image whose
verdict is wrong:

- ``real``: scikit-image's real fundus photograph ``retina.jpg`` and variants of it (resized,
  full-frame crops, cut by the frame, red-free grey and green channel, darker, small in a large
  frame, burned-in text) -- all gradeable;
- ``examples``: the bundled ``examples/fundus`` files (JPEG, PNG, TIFF, DICOM, multi-frame) --
  gradeable;
- ``generated``: :func:`medig.synthetic.generate` photographs at 256, 512 and 1024 px --
  gradeable;
- ``<degradation>:<kind>``: each degradation of :mod:`medig.synthetic.degrade` at its declared
  gradeable and ungradeable severities (:data:`~medig.synthetic.degrade.SEVERITIES`), on
  generated photographs and on ``retina.jpg``;
- ``non_fundus``: scikit-image's data images, the same placed inside a black disk (an aperture
  like a fundus camera's), white, grey and black frames -- never gradeable.

Needs scikit-image (``pip install -e ".[test]"``). Usage::

    python bench/quality_thresholds.py [--quick] [--n 100]
"""
from __future__ import annotations

import argparse
import glob
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medig.io import read_frames
from medig.preprocess import assess_quality
from medig.synthetic import generate
from medig.synthetic.degrade import SEVERITIES, degrade

REPO = Path(__file__).resolve().parents[1]
MEASURES = ("fov_fraction", "fov_diameter", "sharpness", "saturated_fraction", "dark_fraction",
            "shadow_fraction", "mean_luminance", "edge_density", "vessel_density", "green_ratio",
            "blue_ratio",
            "chroma", "hue")
NON_FUNDUS = ("astronaut", "coffee", "chelsea", "rocket", "page", "text", "checkerboard",
              "camera", "coins", "moon", "horse", "cell", "hubble_deep_field",
              "immunohistochemistry", "brick", "grass", "gravel", "logo", "colorwheel", "clock")


def _tensor(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    return torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(2, 0, 1).contiguous()


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return F.interpolate(x[None].float(), size=(h, w), mode="bilinear", antialias=True
                         ).round().clamp(0, 255).byte()[0]


def in_disk(x: torch.Tensor, fraction: float = 0.9) -> torch.Tensor:
    """``x`` seen through a circular aperture: black outside a centred disk."""
    _, h, w = x.shape
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    disk = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 <= (fraction * min(h, w) / 2) ** 2
    return torch.where(disk, x, torch.zeros_like(x))


def burn_text(x: torch.Tensor) -> torch.Tensor:
    """White date/ID-like strokes burned into the top-left and bottom-right corners."""
    x = x.clone()
    _, h, w = x.shape
    th, tw, step = max(6, h // 20), w // 4, max(3, w // 120)
    for k in range(0, tw, step):
        x[:, h // 40:h // 40 + th, w // 40 + k:w // 40 + k + max(1, step // 2)] = 250
        x[:, h - h // 40 - th:h - h // 40, w - w // 40 - tw + k:w - w // 40 - tw + k
          + max(1, step // 2)] = 250
    return x


def real_fundus() -> dict[str, torch.Tensor]:
    from skimage import data

    ret = _tensor(data.retina())
    h = ret.shape[1]
    grey = (ret.float() * torch.tensor([0.3, 0.59, 0.11]).view(3, 1, 1)).sum(0, keepdim=True)
    return {
        "retina": ret, "retina_700": _resize(ret, 700, 700), "retina_300": _resize(ret, 300, 300),
        "retina_green": ret[1:2].expand(3, -1, -1).contiguous(),
        "retina_grey": grey.round().byte().expand(3, -1, -1).contiguous(),
        "retina_text": burn_text(ret), "retina_cut": ret[:, 180:-180].contiguous(),
        "retina_cut_side": ret[:, 120:-120, 80:-80].contiguous(),
        "retina_wide": F.pad(ret, (235, 235)),
        "retina_crop_4x3": ret[:, 355:1055, 255:1155].contiguous(),
        "retina_crop_square": ret[:, 400:1000, 400:1000].contiguous(),
        "retina_dark": (ret.float() * 0.35).round().byte(),
        "retina_small_in_frame": F.pad(_resize(ret, 400, 400), (400, 400, 200, 200)),
        "retina_small_480": _resize(ret[:, 180:-180], 480 * (h - 360) // h, 480),
    }


def examples() -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(glob.glob(str(REPO / "examples" / "fundus" / "**" / "*.*"),
                                 recursive=True)):
        if "/masks/" in path or path.endswith((".json", ".md")):
            continue
        for k, frame in enumerate(read_frames(path)):
            out[f"{Path(path).relative_to(REPO / 'examples' / 'fundus')}#{k}"] = frame.pixels
    return out


def generated(n: int) -> dict[str, torch.Tensor]:
    out = {}
    for size, count in ((256, n), (512, n), (1024, max(1, n // 5))):
        images, _, _ = generate(count, size=size, seed=100 + size)
        out.update({f"gen{size}_{i}": images[i] for i in range(count)})
    return out


def non_fundus() -> dict[str, torch.Tensor]:
    from skimage import data

    out = {name: _tensor(getattr(data, name)()) for name in NON_FUNDUS}
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera",
                 "coins", "moon", "cell"):
        out[f"{name}_in_disk"] = in_disk(out[name])
    out["astronaut_face"] = out["astronaut"][:, 20:200, 140:300].contiguous()
    out["coffee_saucer"] = out["coffee"][:, 50:350, 100:450].contiguous()
    for name, level in (("white_frame", 255), ("grey_frame", 128), ("black_frame", 0)):
        out[name] = torch.full((3, 400, 600), level, dtype=torch.uint8)
    return out


def degraded(n: int) -> dict[str, dict[str, torch.Tensor]]:
    from skimage import data

    base, _, _ = generate(n, size=512, seed=7)
    ret = _resize(_tensor(data.retina()), 512, 512)[None]
    base = torch.cat([ret, base])
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, declared in SEVERITIES.items():
        for kind, severities in declared.items():
            for s in severities:
                out = degrade(base, name, s, seed=int(1000 * s))
                groups.setdefault(f"{name}:{kind}", {}).update(
                    {f"{name}{s:g}_{i}": out[i] for i in range(len(out))})
    return groups


def expected(group: str) -> str:
    if group == "non_fundus":
        return "not gradeable"
    if group.endswith(":ungradeable"):
        return "ungradeable"
    return "gradeable"


def correct(group: str, verdict: str) -> bool:
    want = expected(group)
    return verdict != "gradeable" if want == "not gradeable" else verdict == want


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer generated images")
    parser.add_argument("--n", type=int, default=100, help="generated images per size")
    args = parser.parse_args()
    n = 10 if args.quick else args.n
    groups = {"real": real_fundus(), "examples": examples(), "generated": generated(n)}
    groups.update(degraded(max(4, n // 5)))
    groups["non_fundus"] = non_fundus()
    total, right, seconds, count = 0, 0, 0.0, 0
    rows, wrong = [], []
    for group, images in groups.items():
        names, items = list(images), list(images.values())
        t0 = time.perf_counter()
        result = assess_quality(items)
        seconds += time.perf_counter() - t0
        count += len(items)
        ok = [correct(group, q) for q in result.quality]
        total += len(ok)
        right += sum(ok)
        wrong += [(group, names[i], result.quality[i], result.fov_shape[i], result.colour[i],
                   result.reasons[i]) for i in range(len(ok)) if not ok[i]]
        stats = []
        for m in MEASURES:
            v = [x for x in result.measures[m].tolist() if math.isfinite(x)]
            stats.append(f"{min(v):.3g} / {statistics.median(v):.3g} / {max(v):.3g}" if v
                         else "n/a")
        verdicts = {q: result.quality.count(q) for q in ("gradeable", "ungradeable",
                                                         "not_fundus")}
        rows.append((group, len(items), expected(group), verdicts, sum(ok), stats))
    print("| group | images | expected | gradeable / ungradeable / not_fundus | right | "
          + " | ".join(MEASURES) + " |")
    print("|---" * (5 + len(MEASURES)) + "|")
    for group, k, want, verdicts, ok, stats in rows:
        print(f"| {group} | {k} | {want} | {verdicts['gradeable']} / {verdicts['ungradeable']} / "
              f"{verdicts['not_fundus']} | {ok}/{k} | " + " | ".join(stats) + " |")
    print(f"\nverdicts right: {right}/{total} ({100 * right / total:.1f}%); "
          f"assess_quality {1000 * seconds / count:.1f} ms per image (CPU, whole groups)")
    for group, name, q, shape, colour, reasons in wrong:
        print(f"WRONG {group}: {name}: {q} ({shape}, {colour}) {reasons}")


if __name__ == "__main__":
    main()
