# SPDX-License-Identifier: Apache-2.0
"""Save one model the ways real training code does, for the loading and audit tests.

- ``safetensors``: ``safetensors.torch.save_file(model.state_dict())``, nothing else inside;
- ``lightning``: a PyTorch Lightning ``.ckpt`` layout: ``state_dict`` with the model under
  ``model.`` beside a loss module's weights, ``hyper_parameters`` holding the class names and
  values ``weights_only`` refuses on its own (a ``PosixPath``, numpy numbers), optimiser, loop
  and callback state;
- ``self_describing``: a plain training-script dict, ``{"model_state_dict": ... (DataParallel
  "module." keys), "classes": [...], "normalization": {"mean": numpy, "std": tensor},
  "image_size": N, "optimizer_state_dict": ..., "epoch": ...}``.
"""
from __future__ import annotations

import pathlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

GRADES = ["none", "mild", "moderate", "severe", "proliferative"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FORMS = ("safetensors", "lightning", "self_describing")


def quick_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights in one draw per tensor (the libraries' truncated-normal initialisation of
    28 M parameters takes seconds): matrices N(0, 1/fan_in), norm scales 1, biases 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) * p[0].numel() ** -0.5)
            else:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
    return model


def liven(model: nn.Module, seed: int = 0, side: int = 32) -> nn.Module:
    """Make an untrained model's probabilities depend on its input, as a trained model's do.

    Untrained networks often give every input the same probabilities (torchvision's ViT starts
    with a zero head; BatchNorm statistics of 0 and 1 shrink an EfficientNet's features) or
    saturate them, and IG then has nothing to explain. On a sample of synthetic fundus images and
    a black one (normalised as the audit feeds them): BatchNorm statistics are set from the
    sample, and the head (the last matrix) is redrawn and scaled so that the logits differ
    between inputs by about one.
    """
    from medig.synthetic import generate

    images = generate(4, size=side, seed=seed)[0].float() / 255.0
    sample = torch.cat([images, torch.zeros(1, 3, side, side)])
    sample = (sample - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    head = [p for p in model.parameters() if p.ndim >= 2][-1]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics
        if norms:
            model.train()(sample)
        model.eval()
        head.copy_(torch.randn(head.shape, generator=generator))
        logits = model(sample)
        spread = (logits - logits.mean(dim=0)).std().item()
        head.mul_(1.0 / max(spread, 1e-12))
    return model


def save_form(model: nn.Module, form: str, folder: Path, stem: str, image_size: int) -> Path:
    """Write ``model``'s weights in ``form`` under ``folder``; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if form == "safetensors":
        from safetensors.torch import save_file

        path = folder / f"{stem}.safetensors"
        save_file(state, str(path))
        return path
    if form == "lightning":
        path = folder / f"{stem}.ckpt"
        torch.save({
            "epoch": 7, "global_step": 560, "pytorch-lightning_version": "2.4.0",
            "state_dict": {**{f"model.{k}": v for k, v in state.items()},
                           "criterion.weight": torch.tensor([1.0, 2.0, 1.5, 3.0, 3.0])},
            "hyper_parameters": {"class_names": GRADES, "num_classes": 5, "lr": np.float64(3e-4),
                                 "data_dir": pathlib.PosixPath("/data/fundus"),
                                 "image_size": image_size, "target": "level"},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 3e-4, "params": [0]}]}],
            "lr_schedulers": [], "loops": {"fit_loop": {"epoch_progress": {"current": 7}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val_kappa'}": {
                "best_model_score": torch.tensor(0.81), "dirpath": "/ckpt"}},
        }, path)
        return path
    if form == "self_describing":
        path = folder / f"{stem}.pth"
        torch.save({
            "epoch": 30,
            "model_state_dict": {f"module.{k}": v for k, v in state.items()},
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-4}]},
            "classes": GRADES,
            "normalization": {"mean": np.asarray(MEAN), "std": torch.tensor(STD)},
            "image_size": image_size,
        }, path)
        return path
    raise ValueError(form)
