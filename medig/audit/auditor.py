# SPDX-License-Identifier: Apache-2.0
"""``Auditor``: runs the batch steps over decoded inputs and stores one record per input file.

A failure is isolated to the file that caused it: when a batch fails, its files are audited one
by one, and the file that still fails gets an error record that a later run retries (a read error
is final instead, like the file's bytes).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from medig.attr import FundusIntegratedGradients
from medig.attr.class_group import ClassGroup
from medig.attr.compiled import compiled_forward
from medig.attr.outputs import explained_output
from medig.audit.inputs import AuditInput, DecodedInput
from medig.audit.memory_format import to_device
from medig.audit.plan import AuditPlan
from medig.audit.records import explanation_rows
from medig.audit.steps import AuditContext, ImageBatch, batch_steps
from medig.audit.store import WorkStore
from medig.audit.targets import resolve_target
from medig.io import ImageReadError, decode_jpeg_batch

__all__ = ["Auditor", "resolve_target"]


class Auditor:
    """Audits batches of decoded inputs through :func:`~medig.audit.steps.batch_steps`."""

    def __init__(self, model: nn.Module, plan: AuditPlan, device: torch.device,
                 store: WorkStore, out_dir: Path, keys: dict[int, str]) -> None:
        model = to_device(model, device)
        target = plan.target
        # A group is explained through a forward returning P(group) as its only column, so the
        # steps' target index is 0 (see Predict); a class or "pred" indexes the model's outputs.
        forward = explained_output(model, plan.settings.output,
                                   target if isinstance(target, ClassGroup) else None)
        # --compile: one compiled, padded pass shape per audit for the path passes.
        path_forward = (compiled_forward(forward, plan.size, device) if plan.compile
                        else forward)
        self.ctx = AuditContext(
            model=model, forward=forward,
            ig=FundusIntegratedGradients(path_forward, baselines=list(plan.settings.baselines)),
            plan=plan, device=device, store=store, out_dir=out_dir)
        self.steps = batch_steps(self.ctx)
        self.keys = keys
        self.settings_key = plan.key()

    def audit_batch(self, batch: list[DecodedInput], items: Sequence[AuditInput],
                    shas: dict[int, str]) -> list[dict[str, Any]]:
        """Audit the decoded inputs of one batch; returns the records stored."""
        self._decode_jpegs(batch, items)
        good = [d for d in batch if d.error is None]
        frame_rows: dict[int, list[dict[str, Any]] | Exception] = {}
        try:
            if good:
                frame_rows.update(self._run(good, items))
        except Exception as error:  # noqa: BLE001 - isolate the file that broke the batch
            if len(good) <= 1:
                frame_rows = {good[0].index: error}
            else:
                frame_rows = {}
                for d in good:
                    try:
                        frame_rows.update(self._run([d], items))
                    except Exception as single:  # noqa: BLE001
                        frame_rows[d.index] = single
        records = []
        for d in batch:
            result = frame_rows.get(d.index)
            record: dict[str, Any]
            if d.error is not None:  # the file itself is bad: final, like its bytes
                record = {"sha256": d.sha256, "status": "error", "error": d.error,
                          "frames": []}
                if d.retry:  # not about the content (missing, a FIFO, a dead worker): retried
                    record["retry"] = True
            elif isinstance(result, Exception):  # explaining failed: retried by the next run
                record = {"sha256": shas[d.index], "status": "error", "error": _reason(result),
                          "frames": [], "retry": True}
            else:
                record = {"sha256": shas[d.index], "status": "ok", "error": None,
                          "frames": result}
            self.ctx.store.save(self.keys[d.index], record, key_sha256=shas[d.index],
                                settings_key=self.settings_key)
            records.append(record)
        return records

    def _decode_jpegs(self, batch: list[DecodedInput], items: Sequence[AuditInput]) -> None:
        """Decode the batch's undecoded JPEGs on the audit's device (nvJPEG on CUDA) in one call."""
        pending = [d for d in batch if d.jpeg is not None]
        if not pending:
            return
        device = self.ctx.device
        names = [items[d.index].rel for d in pending]
        jpegs = [d.jpeg for d in pending if d.jpeg is not None]  # all of them
        try:
            images: list[Tensor] | None = decode_jpeg_batch(jpegs, device, names=names)
        except ImageReadError:
            images = None  # one bad file fails the batched call: decode one by one
        for k, d in enumerate(pending):
            try:
                image = images[k] if images is not None else decode_jpeg_batch(
                    [jpegs[k]], device, names=[names[k]])[0]
            except ImageReadError as error:
                d.error = error.reason
                continue
            finally:
                d.jpeg = None
            height, width = image.shape[-2:]
            mask = d.masks[0]
            d.frames = [image]
            d.metadata = [{"format": "jpeg", "width": int(width), "height": int(height),
                           "frames": 1, "decoded_on": device.type}]
            d.masks = [mask if mask is not None and tuple(mask.shape[-2:]) == (height, width)
                       else None]

    def _run(self, decoded: list[DecodedInput],
             items: Sequence[AuditInput]) -> dict[int, list[dict[str, Any]]]:
        """Run the steps on the frames of ``decoded``; the frame rows of each input, by index."""
        owner = [(d.index, k if len(d.frames) > 1 else None)
                 for d in decoded for k in range(len(d.frames))]
        batch = ImageBatch(
            inputs=[items[i] for i, _ in owner], frames=[f for _, f in owner],
            keys=[self.keys[i] for i, _ in owner],
            pixels=[f.to(self.ctx.device, non_blocking=True) for d in decoded for f in d.frames],
            metadata=[m for d in decoded for m in d.metadata],
            masks=[m for d in decoded for m in d.masks])
        index_of = {id(items[i]): i for i, _ in owner}
        for step in self.steps:
            if len(batch):
                step(batch)
        result: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        if len(batch):
            assert batch.explanation is not None and batch.probs is not None  # the steps ran
            rows = explanation_rows(batch.explanation, batch.probs, self.ctx.class_names,
                                    [""] * len(batch), extra=batch.fields)
            for item, frame, row in zip(batch.inputs, batch.frames, rows):
                result.setdefault(index_of[id(item)], []).append((frame or 0, {**row,
                                                                               "frame": frame}))
        for item, frame, _key, final in batch.finished:
            result.setdefault(index_of[id(item)], []).append((frame or 0, {**final,
                                                                           "frame": frame}))
        return {i: [row for _, row in sorted(rows, key=lambda r: r[0])]
                for i, rows in result.items()}


def _reason(error: BaseException | None) -> str:
    text = " ".join(str(error).split()) if error is not None else "unknown error"
    return f"could not be audited: {type(error).__name__}: {text}"[:300]
