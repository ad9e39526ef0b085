# SPDX-License-Identifier: Apache-2.0
"""Train the corner-stamp shortcut model shipped as ``--model demo-shortcut`` (a known answer).

Synthetic photographs (:func:`medig.synthetic.generate`, 128 px) get a bright stamp in the top-right
corner of the frame, outside the retina (:func:`medig.synthetic.shortcuts.corner_stamp`), on a random
half of them, independently of their lesions; the label is the stamp. A tiny DemoNet learns it in
seconds on the images preprocessed as the audit does (crop to the field of view, 64 px). Deterministic
(fixed seeds, deterministic algorithms)::

    python bench/shortcut.py            # writes medig/models/weights/demo-shortcut.{pt,json}
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from medig.models.demo import DemoNet
from medig.preprocess import FundusPreprocess
from medig.synthetic import generate
from medig.synthetic.fundus import geometry
from medig.synthetic.shortcuts import corner_stamp, stamp_box
from medig.utils import atomic_write

SIZE, FRAME = 64, 128
WIDTHS = [8, 12, 16, 24, 32]
SEED, N_TRAIN, EPOCHS, BATCH, LR = 4200, 384, 4, 32, 3e-3
CLASS_NAMES = ["no stamp", "stamp"]
WEIGHTS = Path(__file__).resolve().parents[1] / "medig" / "models" / "weights"


def stamped(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (uint8, FRAME px) with the stamp on a seeded random half, and the stamp labels."""
    raw, _, _ = generate(n, size=FRAME, seed=seed)
    geo = geometry(n, size=FRAME, seed=seed)
    on = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5
    return corner_stamp(raw, stamp_box(geo["cx"], geo["cy"], geo["r"]), on), on.long()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    pre = FundusPreprocess(size=SIZE)
    frames, labels = stamped(N_TRAIN, SEED)
    with torch.no_grad():
        x, _ = pre(frames)
    mean = x.mean(dim=(0, 2, 3)).round(decimals=4).view(1, 3, 1, 1)
    std = x.std(dim=(0, 2, 3)).round(decimals=4).view(1, 3, 1, 1)
    model = DemoNet(num_classes=2, widths=tuple(WIDTHS))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(model((x[idx] - mean) / std), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
    model.eval()
    check, check_labels = stamped(128, SEED + 1)
    with torch.no_grad():
        xc, _ = pre(check)
        acc = float((model((xc - mean) / std).argmax(1) == check_labels).float().mean())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write(args.out / "demo-shortcut.pt", buffer.getvalue())
    meta = {
        "class_names": CLASS_NAMES, "positive_class": "stamp", "input_size": SIZE,
        "mean": [float(v) for v in mean.flatten()], "std": [float(v) for v in std.flatten()],
        "architecture": "medig.models.demo:DemoNet", "kwargs": {"widths": WIDTHS},
        "preprocess": f"medig.preprocess.FundusPreprocess(size={SIZE})",
        "training": {"script": "bench/shortcut.py", "generator": "medig.synthetic.generate",
                     "frame": FRAME, "seed": SEED, "images": N_TRAIN, "epochs": EPOCHS,
                     "held_out_accuracy": round(acc, 4), "torch": torch.__version__},
        "note": "Known-answer model: reads only a stamp in the frame's corner, outside the "
                "retina. Synthetic; not a medical device.",
    }
    atomic_write(args.out / "demo-shortcut.json", json.dumps(meta, indent=2) + "\n")
    kb = (args.out / "demo-shortcut.pt").stat().st_size / 1024
    print(f"held-out accuracy {acc:.3f}; wrote demo-shortcut.pt ({kb:.0f} KiB) in "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
