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
