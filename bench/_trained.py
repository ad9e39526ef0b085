# SPDX-License-Identifier: Apache-2.0
"""A small torchvision ResNet trained for a few minutes on CPU on synthetic fundus photographs.

The benchmarks need a *trained* ResNet besides the demo model (a different architecture) and an
untrained ResNet (whose paths are almost linear): trained networks saturate their softmax and switch
many ReLUs along the path, which is what the adaptive schedule is for. Nothing is downloaded: the
network is trained here, deterministically, on :func:`medig.synthetic.generate` images (referable DR
or not) and its state dict is cached outside the repository (``$MEDIG_BENCH_CACHE``, default
``~/.cache/medig-bench``), so later runs load it in a second.

``python bench/_trained.py`` trains (or loads) it and prints its held-out accuracy.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

ARCH = "resnet18"
SIZE = 128
N_TRAIN = 1536
EPOCHS = 3
BATCH = 32
LR = 1e-3
TRAIN_SEED, TEST_SEED = 2000, 2100
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def cache_path() -> Path:
    root = Path(os.environ.get("MEDIG_BENCH_CACHE", Path.home() / ".cache" / "medig-bench"))
    recipe = f"{ARCH}-{SIZE}-{N_TRAIN}-{EPOCHS}-{BATCH}-{LR}-{TRAIN_SEED}-bn-recalibrated"
    return root / f"{ARCH}_synthetic_{SIZE}_{hashlib.sha256(recipe.encode()).hexdigest()[:8]}.pt"


def _data(n: int, seed: int):
    import torch

    from medig.synthetic import generate

    xs, ys = [], []
    for k, start in enumerate(range(0, n, 64)):
        img, _mask, lab = generate(min(64, n - start), size=SIZE, seed=seed + k)
        xs.append(img)
        ys.append(lab)
    return torch.cat(xs), torch.cat(ys)


def build(num_classes: int = 2):
    """The architecture, ImageNet normalisation folded in (inputs are RGB in [0, 1])."""
    import torchvision

    from medig.attr import with_normalization

    net = getattr(torchvision.models, ARCH)(weights=None, num_classes=num_classes)
    return with_normalization(net, *IMAGENET)


def recalibrate_batch_norm(model, x) -> None:
    """Batch-norm statistics as the mean over the training set, then eval mode.

    After so few steps the running averages lag behind the weights: in eval mode the network above
    predicted one class for every image (50% held-out) while train mode reached 81%. Re-estimating
    the statistics with the final weights (cumulative average, no gradient) fixes that.
    """
    import torch

    for bn in (m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for s in range(0, min(len(x), 512), 64):
            model(x[s:s + 64].float() / 255)
    model.eval()


def trained_model(log=lambda s: print(s, file=sys.stderr, flush=True)):
    """The trained network in eval mode (trained now if not cached) and its held-out accuracy."""
    import torch

    path = cache_path()
    model = build()
    if path.is_file():
        state = torch.load(path, weights_only=True)
        model.load_state_dict(state["model"])
        return model.eval(), float(state["accuracy"])
    torch.manual_seed(0)
    t0 = time.perf_counter()
    x, y = _data(N_TRAIN, TRAIN_SEED)
    log(f"training {ARCH} at {SIZE} px on {N_TRAIN} synthetic images "
        f"({(y == 1).float().mean():.0%} referable; data {time.perf_counter() - t0:.0f} s)")
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(1)
    model.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(N_TRAIN, generator=g)
        total = 0.0
        for s in range(0, N_TRAIN, BATCH):
            idx = order[s:s + BATCH]
            xb = x[idx].float() / 255
            xb = torch.where(torch.rand(len(idx), 1, 1, 1, generator=g) < 0.5, xb.flip(-1), xb)
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log(f"  epoch {epoch + 1}/{EPOCHS}: loss {total / N_TRAIN:.3f} "
            f"({time.perf_counter() - t0:.0f} s)")
    recalibrate_batch_norm(model, x)
    xt, yt = _data(256, TEST_SEED)
    with torch.no_grad():
        acc = float((model(xt.float() / 255).argmax(1) == yt).float().mean())
    log(f"held-out accuracy {acc:.1%} on 256 images; {time.perf_counter() - t0:.0f} s in all")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "accuracy": acc}, path)
    return model, acc


if __name__ == "__main__":
    _model, accuracy = trained_model()
    print(f"{cache_path()}: held-out accuracy {accuracy:.1%}")
