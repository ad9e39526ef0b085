# SPDX-License-Identifier: Apache-2.0
"""Measure ``outside_fov_share`` (the share of |attribution| outside the field of view) on the
clean demo model and on the corner-stamp model, to choose ``OUTSIDE_SHARE_MAX``.

Clean: the demo model on ``examples/fundus`` and on fresh synthetic photographs. Shortcut:
``--model demo-shortcut`` on synthetic photographs, half of them stamped. Each set is one
``medig audit`` (default settings, trust checks off: they do not change the maps)::

    python bench/outside.py [--n 24] [--frame 256]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from medig.synthetic import generate
from medig.synthetic.fundus import geometry
from medig.synthetic.shortcuts import corner_stamp, stamp_box

ROOT = Path(__file__).resolve().parents[1]


def write_synthetic(folder: Path, n: int, frame: int, seed: int, stamp: bool) -> list[bool]:
    raw, _, _ = generate(n, size=frame, seed=seed)
    on = np.zeros(n, dtype=bool)
    if stamp:
        import torch

        geo = geometry(n, size=frame, seed=seed)
        on = np.arange(n) % 2 == 0
        raw = corner_stamp(raw, stamp_box(geo["cx"], geo["cy"], geo["r"]), torch.from_numpy(on))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(raw[i].permute(1, 2, 0).numpy()).save(folder / f"s{i:03d}.png")
    return list(on)


def audit(inputs: Path, out: Path, model: str) -> list[dict]:
    subprocess.run([sys.executable, "-m", "medig", "audit", str(inputs), "--out", str(out),
                    "--model", model, "--no-trust-checks", "--sanity-sample", "0", "--quiet",
                    "--threads", "1"], check=True)
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def quantiles(values: list[float]) -> str:
    q = np.quantile(values, [0.0, 0.05, 0.5, 0.95, 1.0])
    return " / ".join(f"{v:.3f}" for v in q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--frame", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        sets = {}
        rows = audit(ROOT / "examples" / "fundus", t / "ex", "demo")
        sets["demo, examples/fundus"] = [r["outside_fov_share"] for r in rows
                                         if r.get("outside_fov_share") is not None]
        write_synthetic(t / "syn", args.n, args.frame, 777001, stamp=False)
        rows = audit(t / "syn", t / "syn-out", "demo")
        sets["demo, synthetic"] = [r["outside_fov_share"] for r in rows
                                   if r.get("outside_fov_share") is not None]
        on = write_synthetic(t / "st", args.n, args.frame, 777002, stamp=True)
        rows = sorted(audit(t / "st", t / "st-out", "demo-shortcut"), key=lambda r: r["path"])
        sets["shortcut, stamped"] = [r["outside_fov_share"] for r, s in zip(rows, on) if s]
        sets["shortcut, clean"] = [r["outside_fov_share"] for r, s in zip(rows, on) if not s]
        rows = sorted(audit(t / "st", t / "st-demo", "demo"), key=lambda r: r["path"])
        sets["demo, stamped"] = [r["outside_fov_share"] for r, s in zip(rows, on) if s]
    print("outside_fov_share, min / 5% / median / 95% / max:")
    for name, values in sets.items():
        print(f"  {name} ({len(values)} images): {quantiles(values)}")


if __name__ == "__main__":
    main()
