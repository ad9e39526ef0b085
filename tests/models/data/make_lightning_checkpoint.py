# SPDX-License-Identifier: Apache-2.0
"""How ``lightning_tiny.ckpt`` was made: a genuine PyTorch Lightning checkpoint of a tiny model.

Not run by the tests (they must not need Lightning): it documents the fixture. Written with
lightning 2.6.6 and omegaconf 2.4.0 by::

    pip install lightning omegaconf
    PYTHONPATH=. python tests/models/data/make_lightning_checkpoint.py

The LightningModule saves its hyper-parameters the ways real training code does: an OmegaConf
config (Hydra), class names, a ``pathlib`` data folder and numpy mean/std; the checkpoint also
holds AdamW and OneCycleLR state and the ModelCheckpoint callback's state.
"""
from __future__ import annotations

import pathlib
import shutil
import tempfile

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf

from tests.audit.tiny_models import make_tiny

OUT = pathlib.Path(__file__).with_name("lightning_tiny.ckpt")


class ReferableDR(L.LightningModule):
    def __init__(self, cfg, class_names, data_dir, mean, std, image_size=64):
        super().__init__()
        self.save_hyperparameters()
        self.net = make_tiny()
        self.criterion = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0]))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return self.criterion(self(x), y)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=10)
        return {"optimizer": opt, "lr_scheduler": sched}


def main() -> None:
    torch.manual_seed(0)
    cfg = OmegaConf.create({"model": {"name": "tiny"},
                            "data": {"mean": [0.41, 0.22, 0.12], "std": [0.27, 0.15, 0.08]}})
    module = ReferableDR(cfg, ["no referable DR", "referable DR"], pathlib.Path("/data/fundus"),
                         np.array([0.41, 0.22, 0.12]), np.array([0.27, 0.15, 0.08]))
    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 64, 64), torch.randint(0, 2, (8,)))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp, filename="tiny")
        trainer = L.Trainer(max_steps=2, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=tmp, callbacks=[ckpt])
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
        shutil.copy(pathlib.Path(tmp) / "tiny.ckpt", OUT)
    print(OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
