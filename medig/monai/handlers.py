# SPDX-License-Identifier: Apache-2.0
"""``IntegratedGradientsHandler``: an IG audit of a MONAI evaluation run, readable by ``medig report``."""
from __future__ import annotations

import datetime
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from monai.data import MetaTensor
from monai.utils import min_version, optional_import
from torch import Tensor

from medig.attr.outputs import explained_output
from medig.audit.manifest import write_manifest
from medig.audit.plan import AuditPlan
from medig.audit.records import explanation_rows, round_float, write_results
from medig.audit.settings import AuditSettings
from medig.audit.store import output_name, row_path
from medig.baselines import BaselineSpec
from medig.monai._meta import plain
from medig.monai.array import ComputeIntegratedGradients, eval_mode_of, to_unit_range
from medig.report.rows import ResultRow
from medig.utils import sha256_file
from medig.visualize import (
    DEFAULT_PERCENTILE,
    abs_quantiles,
    attribution_map,
    clip_value,
    cohort_clip_value,
    overlay,
    save_png,
    side_by_side,
)

try:  # MONAI >= 1.4
    from monai.utils import IgniteInfo
except ImportError:  # pragma: no cover - MONAI 1.3
    # mypy reads the installed MONAI, where IgniteInfo moved to monai.utils
    from monai.config import IgniteInfo  # type: ignore[attr-defined,no-redef]

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:  # pragma: no cover
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version,
                                "Engine", as_type="decorator")

__all__ = ["IntegratedGradientsHandler"]

_WORK_DIR = ".medig-monai-work"


def _filenames(items: Sequence[Any], meta_source: Any) -> list[str | None]:
    names: list[str | None] = [None] * len(items)
    if isinstance(meta_source, MetaTensor):  # collated batch: one list entry per image
        value = meta_source.meta.get("filename_or_obj")
        if isinstance(value, (list, tuple)) and len(value) == len(items):
            names = [str(v) if v else None for v in value]
        elif isinstance(value, str) and len(items) == 1:
            names = [value]
    else:
        for i, item in enumerate(items):
            if isinstance(item, MetaTensor) and item.meta.get("filename_or_obj"):
                names[i] = str(item.meta["filename_or_obj"])
    return names


def _network(engine: Engine) -> torch.nn.Module:
    # The model of a MONAI engine; a plain Ignite engine must be given a ``network`` attribute.
    return getattr(engine, "network")


class IntegratedGradientsHandler:
    """Ignite handler auditing a MONAI evaluator's batches with Integrated Gradients.

    Attach it to a ``monai.engines.SupervisedEvaluator`` (or any Ignite engine with a ``network``
    attribute): after each iteration it explains the batch (or a deterministic sample of it) with
    :meth:`medig.FundusIntegratedGradients.explain`; when the run completes it writes, in
    ``out_dir``, exactly what ``medig audit`` writes: ``results.jsonl``/``results.csv`` (rows from
    :func:`medig.audit.records.explanation_rows`), ``overlays/<path>.png`` (original | green/red
    overlay, :mod:`medig.visualize`) and ``manifest.json``, so ``medig report out_dir`` (or
    :func:`medig.report.build_report`) turns the evaluation into the same PDF.

    Engines run under ``torch.no_grad()``; the core re-enables input gradients itself. The network
    is put in eval mode for the attribution and its modes restored after. Each run of the engine
    writes a fresh audit (a run replaces the previous run's results in ``out_dir``). Attribution maps
    wait on disk under ``out_dir/.medig-monai-work/`` until the run ends, so that every overlay can
    use the same colour scale (``overlay_scale="cohort"``, like the audit).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder (created).
    class_names : sequence of str
        One name per model output.
    baselines, completeness_tol, max_steps, method, internal_batch_size :
        As :meth:`medig.FundusIntegratedGradients.explain`.
    output : {"probability", "logit"}
        What F is: the softmax probability of the explained class (``medig audit``'s default) or
        the raw logit. Recorded in the manifest.
    target : int, optional
        Class explained for every image; None: the predicted class.
    sample : int, optional
        Explain only this many images per batch, drawn without replacement from a generator seeded
        with ``(seed, iteration)``: the same images on every run. None: the whole batch.
    seed : int
        Seed of the sampling.
    image_key : str
        Image key of the batch dicts (pixel-space RGB in [0, 1], e.g. :class:`PreprocessFundusd`'s
        output); file names come from its MetaTensor ``filename_or_obj`` metadata.
    mask_key : str, optional
        Key of the FOV masks (default ``f"{image_key}_fov_mask"``, as :class:`PreprocessFundusd`
        writes); when absent the overlays and colour scale use every pixel.
    root : str, optional
        Paths in the rows are relative to it (default: the deepest folder common to all inputs).
    overlay_scale : {"cohort", "image"}
        One colour scale for the whole run (default) or one per image.
    percentile : float
        Percentile of ``|attribution|`` at which the colours saturate.
    model_spec : str, optional
        Model name recorded in the manifest (default: the network's class name).
    trust_checks : bool
        Add the per-image trust checks (:func:`medig.checks.image_checks`: baseline agreement
        with two or more baselines, faithfulness by deletion) and ``trust_flags`` to the rows,
        as ``medig audit`` does; their thresholds go into the manifest.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        class_names: Sequence[str],
        baselines: BaselineSpec = "black",
        completeness_tol: float = 0.01,
        max_steps: int = 512,
        method: Literal["adaptive"] | str = "adaptive",
        internal_batch_size: int | Literal["auto"] | None = "auto",
        output: Literal["probability", "logit"] = "probability",
        target: int | None = None,
        sample: int | None = None,
        seed: int = 0,
        image_key: str = "image",
        mask_key: str | None = None,
        root: str | os.PathLike | None = None,
        overlay_scale: Literal["cohort", "image"] = "cohort",
        percentile: float = DEFAULT_PERCENTILE,
        model_spec: str | None = None,
        trust_checks: bool = True,
    ) -> None:
        if output not in ("probability", "logit"):
            raise ValueError(f"output must be 'probability' or 'logit', got {output!r}")
        if overlay_scale not in ("cohort", "image"):
            raise ValueError(f"overlay_scale must be 'cohort' or 'image', got {overlay_scale!r}")
        if sample is not None and sample < 1:
            raise ValueError(f"sample must be a positive number of images or None, got {sample}")
        self.out_dir = Path(out_dir)
        self.class_names = list(class_names)
        self.baselines = baselines
        self.options: dict[str, Any] = dict(
            completeness_tol=completeness_tol, max_steps=max_steps, method=method,
            internal_batch_size=internal_batch_size)
        self.output = output
        self.target = target
        self.sample = sample
        self.seed = seed
        self.image_key = image_key
        self.mask_key = mask_key or f"{image_key}_fov_mask"
        self.root = None if root is None else str(root)
        self.overlay_scale = overlay_scale
        self.percentile = percentile
        self.model_spec = model_spec
        self.trust_checks = trust_checks
        self._reset()

    # ------------------------------------------------------------------ ignite plumbing
    def attach(self, engine: Engine) -> None:
        """Register on ``STARTED`` (reset), ``ITERATION_COMPLETED`` (explain) and ``COMPLETED`` (write)."""
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def _reset(self) -> None:
        self._rows: list[ResultRow] = []
        self._files: list[str | None] = []
        self._sketches: list[Any] = []
        self._baseline_names: list[str] = []
        self._size: int | None = None
        self._started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def started(self, engine: Engine) -> None:
        """Start a fresh audit: forget the previous run's rows and maps."""
        self._reset()
        shutil.rmtree(self.out_dir / _WORK_DIR, ignore_errors=True)

    # ------------------------------------------------------------------ per iteration
    def _batch(self, engine: Engine) -> tuple[Tensor, Tensor | None, list[str | None]]:
        batch = engine.state.batch
        if isinstance(batch, dict) and self.image_key in batch:  # collated (decollate=False)
            images = batch[self.image_key]
            masks = batch.get(self.mask_key)
            names = _filenames(list(plain(images)), images)
            return plain(images), None if masks is None else plain(masks), names
        if isinstance(batch, list) and batch and isinstance(batch[0], dict):  # decollated
            if all(self.image_key in item for item in batch):
                items = [item[self.image_key] for item in batch]
                masks = [item.get(self.mask_key) for item in batch]
                mask_t = (torch.stack([plain(m) for m in masks])
                          if all(m is not None for m in masks) else None)
                return torch.stack([plain(t) for t in items]), mask_t, _filenames(items, None)
        output = engine.state.output  # the inputs the network saw
        if isinstance(output, dict) and "image" in output:
            images = output["image"]
            return plain(images), None, _filenames(list(plain(images)), images)
        if isinstance(output, list) and output and isinstance(output[0], dict):
            items = [o["image"] for o in output]
            return torch.stack([plain(t) for t in items]), None, _filenames(items, None)
        raise KeyError(f"no {self.image_key!r} images in engine.state.batch or engine.state.output")

    def _indices(self, n: int, iteration: int) -> Tensor:
        if self.sample is None or self.sample >= n:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
        return torch.randperm(n, generator=g)[: self.sample].sort().values

    def __call__(self, engine: Engine) -> None:
        """Explain the current batch (or its sample) and keep its rows and maps."""
        images, masks, names = self._batch(engine)
        idx = self._indices(images.shape[0], engine.state.iteration)
        model = _network(engine)
        device = next((p.device for p in model.parameters()), images.device)
        x = to_unit_range(images[idx].to(device))
        x = x.float() if x.dtype == torch.uint8 else x
        masks = None if masks is None else masks[idx].bool()
        names = [names[int(i)] for i in idx]

        scored = explained_output(model, self.output)
        ig = ComputeIntegratedGradients(scored, baselines=self.baselines, target=self.target,
                                        **self.options)
        with eval_mode_of(model), torch.no_grad():
            probabilities = torch.softmax(model(x).double(), dim=1)
        explanation = ig.explain(x, None if self.target is None else self.target)
        self._baseline_names = list(explanation.baselines)
        self._size = int(x.shape[-1])

        work = self.out_dir / _WORK_DIR
        work.mkdir(parents=True, exist_ok=True)
        maps = attribution_map(explanation.attributions.detach().float().cpu())
        for i in range(x.shape[0]):
            k = len(self._files) + i
            mask = None if masks is None else masks[i].cpu()
            torch.save({"image": (x[i].detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8),
                        "map": maps[i], "mask": mask}, work / f"{k:07d}.pt")
            # the colour scale covers the whole frame, as in medig audit
            self._sketches.append(abs_quantiles(maps[i], None))
        placeholder = [f"iteration-{engine.state.iteration:06d}-{int(i):03d}" for i in idx]
        self._files.extend(names)
        self._rows.extend(explanation_rows(
            explanation, probabilities, self.class_names,
            paths=[n or p for n, p in zip(names, placeholder)],
            extra=self._checks(model, x, explanation, masks)))

    def _checks(self, model: Any, x: Tensor, explanation: Any,
                masks: Tensor | None) -> list[dict[str, Any]]:
        """Per-image trust check columns and ``trust_flags`` of an explained batch."""
        from medig.checks import image_checks, image_trust_flags, outside_fov_share
        from medig.checks.deletion import faithfulness_output

        checks = {}
        if self.trust_checks:
            with eval_mode_of(model):
                checks = image_checks(faithfulness_output(model, self.output), x, explanation,
                                      None if masks is None else masks.to(x.device))
        if masks is not None:
            checks["outside_fov_share"] = outside_fov_share(
                explanation.attributions, masks.to(explanation.attributions.device)).cpu()
        flags = image_trust_flags(explanation, checks)
        extra = []
        for i, image_flags in enumerate(flags):
            row: dict[str, Any] = {k: None if math.isnan(float(v[i])) else round_float(float(v[i]))
                                   for k, v in checks.items()}
            row["trust_flags"] = image_flags
            extra.append(row)
        return extra

    # ------------------------------------------------------------------ end of run
    def _relative_paths(self) -> list[str]:
        files = [f for f in self._files if f]
        root = self.root
        if root is None and files:
            root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
        out = []
        for row, f in zip(self._rows, self._files):
            if f is None:
                out.append(row["path"])
                continue
            rel = os.path.relpath(os.path.abspath(f), root) if root else os.path.basename(f)
            if rel.startswith(".."):  # outside the given root: keep overlays inside out_dir
                rel = os.path.basename(f)
            out.append(rel.replace(os.sep, "/"))
        return out

    def _trust_manifest(self) -> dict[str, Any]:
        from medig.checks import checks_manifest

        entry = checks_manifest()
        entry["per_image_checks"] = self.trust_checks
        entry["sanity_check"] = {"status": "not run",
                                 "reason": "not part of the MONAI engine handler; run "
                                           "medig.checks.randomisation_test on a sample"}
        return entry

    def completed(self, engine: Engine) -> None:
        """Render the overlays on one colour scale and write results, overlays and manifest."""
        work = self.out_dir / _WORK_DIR
        paths = self._relative_paths()
        cohort = (cohort_clip_value(self._sketches, self.percentile)
                  if self._sketches and self.overlay_scale == "cohort" else None)
        for k, (row, rel, f) in enumerate(zip(self._rows, paths, self._files)):
            item = torch.load(work / f"{k:07d}.pt", weights_only=True)
            clip = cohort if cohort is not None else clip_value(item["map"], None,
                                                                self.percentile)
            picture = side_by_side(item["image"],
                                   overlay(item["image"], item["map"], item["mask"], clip))
            # named as medig audit names them: escaped one-line paths, safe output names
            row["path"] = row_path(rel)
            png = f"overlays/{output_name(rel)}.png"
            row["overlay"] = png
            row["sha256"] = sha256_file(f) if f and os.path.isfile(f) else None
            save_png(self.out_dir / png, picture)
        write_results(self.out_dir, self._rows, self.class_names)
        ok = [r for r in self._rows if r["status"] == "ok"]
        target = "pred" if self.target is None else self.class_names[self.target]
        settings = AuditSettings(
            model=self.model_spec or type(_network(engine)).__name__,
            class_names=tuple(self.class_names),
            target=target,
            baselines=tuple(self._baseline_names),
            completeness_tol=self.options["completeness_tol"],
            max_steps=self.options["max_steps"], size=self._size or 0, output=self.output,
            method=self.options["method"], device=str(engine.state.device)
            if hasattr(engine.state, "device") else "cpu",
            batch_size=getattr(getattr(engine.state, "dataloader", None), "batch_size", None) or 0,
            workers=0, overlay_scale=self.overlay_scale, percentile=self.percentile)
        # The handler's values are in effect as given: its plan is the settings themselves.
        plan = AuditPlan(settings, class_names=settings.class_names, target=self.target,
                         target_spec=target, size=settings.size)
        write_manifest(
            self.out_dir, plan, started=self._started, status="complete",
            device=settings.device,
            counts={"total": len(self._rows), "ok": len(ok), "error": len(self._rows) - len(ok),
                    "flagged": sum(bool(r["flagged"]) for r in ok)},
            cohort_clip=cohort, source="medig.monai.IntegratedGradientsHandler",
            sample=self.sample, seed=self.seed, trust_checks=self._trust_manifest())
        shutil.rmtree(work, ignore_errors=True)
