# SPDX-License-Identifier: Apache-2.0
"""Train medig's demo model on synthetic fundus images and write its weights.

Deterministic (fixed seeds, ``torch.use_deterministic_algorithms``) and CPU-only: about five minutes
on two cores. Writes ``medig/models/weights/demo.pt`` (a state dict, loadable with
``weights_only=True``) and ``demo.json`` (class names, input size, normalisation, provenance)::

    python examples/train_demo_model.py            # train, write weights, report accuracy
    python examples/evaluate_demo_model.py         # accuracy + IG localisation on fresh images

Training images come from :func:`medig.synthetic.generate` with seeds ``TRAIN_SEEDS``, preprocessed
exactly as the audit does (:class:`medig.preprocess.FundusPreprocess`, crop to the field of view,
256 px). Evaluation seeds are disjoint from them (see ``evaluate_demo_model.py``).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from medig.models.demo import DemoNet
from medig.preprocess import FundusPreprocess
from medig.synthetic import generate
from medig.utils import atomic_write

SIZE = 256
CHUNK = 64
N_TRAIN = 2560
TRAIN_SEEDS = range(1000, 1000 + N_TRAIN // CHUNK)  # one generate() call per chunk
CHECK_SEED = 5000  # quick held-out check printed during training
EPOCHS = 8
BATCH = 32
LR = 3e-3
CLASS_NAMES = ["no referable DR", "referable DR"]
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "medig" / "models" / "weights"


def make_data(seeds: range | list[int], size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessed uint8 images (N, 3, size, size) and labels, generated chunk by chunk."""
    pre = FundusPreprocess(size=size)
    images, labels = [], []
    for seed in seeds:
        raw, _, lab = generate(CHUNK, size=size, seed=seed)
        with torch.no_grad():
            x, _ = pre(raw)
        images.append((x * 255).round().to(torch.uint8))  # uint8 keeps the set at ~0.3 GB
        labels.append(lab)
    return torch.cat(images), torch.cat(labels)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Flips (eye side, superior/inferior) and a mild gain jitter, from a seeded generator."""
    n = x.shape[0]
    hflip = torch.rand(n, generator=g) < 0.5
    vflip = torch.rand(n, generator=g) < 0.5
    gain = 0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    x = torch.where(hflip.view(-1, 1, 1, 1), x.flip(-1), x)
    x = torch.where(vflip.view(-1, 1, 1, 1), x.flip(-2), x)
    return (x * gain).clamp(0, 1)


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             mean: torch.Tensor, std: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), 64):
        x = (images[i:i + 64].float() / 255 - mean) / std
        correct += int((model(x).argmax(1) == labels[i:i + 64]).sum())
    return correct / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for demo.pt/.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear when run under nohup
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    images, labels = make_data(TRAIN_SEEDS)
    check_images, check_labels = make_data([CHECK_SEED])
    x = images.float() / 255
    mean = x.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = x.std(dim=(0, 2, 3)).view(1, 3, 1, 1)
    mean, std = mean.round(decimals=4), std.round(decimals=4)
    del x
    print(f"data: {len(images)} images ({float(labels.float().mean()):.2f} referable), "
          f"{time.perf_counter() - start:.0f} s")

    model = DemoNet(num_classes=len(CLASS_NAMES))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    steps = EPOCHS * math.ceil(len(images) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.2)
    g = torch.Generator().manual_seed(0)
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(images), generator=g)
        total = 0.0
        for i in range(0, len(images), BATCH):
            idx = order[i:i + BATCH]
            xb = (augment(images[idx].float() / 255, g) - mean) / std
            loss = F.cross_entropy(model(xb), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = accuracy(model, check_images, check_labels, mean, std)
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {total / len(images):.4f}, "
              f"held-out accuracy {acc:.3f} ({len(check_images)} images), "
              f"{time.perf_counter() - start:.0f} s")

    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    # Saved through memory: torch.save names the archive after the file, and the temporary
    # file's random name would make the bytes differ between identical trainings.
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write(args.out / "demo.pt", buffer.getvalue())
    meta = {
        "class_names": CLASS_NAMES,
        "input_size": SIZE,
        "mean": [round(float(v), 4) for v in mean.flatten()],
        "std": [round(float(v), 4) for v in std.flatten()],
        "architecture": "medig.models.demo:DemoNet",
        "preprocess": f"medig.preprocess.FundusPreprocess(size={SIZE})",
        "training": {"generator": "medig.synthetic.generate", "seeds": [TRAIN_SEEDS.start,
                     TRAIN_SEEDS.stop - 1], "images": len(images), "epochs": EPOCHS,
                     "batch": BATCH, "lr": LR, "torch": torch.__version__,
                     "seconds": round(time.perf_counter() - start)},
        "note": "Synthetic demonstration model; not a medical device.",
    }
    atomic_write(args.out / "demo.json", json.dumps(meta, indent=2) + "\n")
    size_kb = (args.out / "demo.pt").stat().st_size / 1024
    print(f"wrote {args.out / 'demo.pt'} ({size_kb:.0f} KiB) and demo.json in "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
