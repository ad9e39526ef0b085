# SPDX-License-Identifier: Apache-2.0
"""``run_audit``: read, preprocess, predict, explain and record a folder of fundus photographs.

The flow is one way: :mod:`medig.io` decodes (in DataLoader workers), :mod:`medig.preprocess`
crops and resizes (batched, on the audit's device), :class:`medig.FundusIntegratedGradients`
explains, and each finished input is stored atomically in the work store; :func:`finalise_audit`
then renders overlays with one cohort-wide colour scale and writes the results, the manifest and
the PDF report. Under ``torchrun`` each rank audits its share and rank 0 finalises.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medig.attr import FundusIntegratedGradients
from medig.attr.outputs import explained_output
from medig.audit.distributed import (
    DistContext,
    balanced_shares,
    barrier,
    broadcast,
    device_for,
    init_distributed,
    shutdown,
)
from medig.audit.inputs import AuditInput, DecodedInput, collect_inputs, make_loader
from medig.audit.localisation import localisation
from medig.audit.manifest import read_manifest, write_manifest
from medig.audit.progress import Progress
from medig.audit.records import error_row, explanation_rows, round_float, write_results
from medig.audit.settings import AuditSettings
from medig.audit.store import WorkStore, record_key, safe_relative_path
from medig.io import ImageReadError, decode_jpeg_batch
from medig.preprocess import FundusPreprocess, crop_boxes
from medig.report import build_report
from medig.render import (
    abs_quantiles,
    attribution_map,
    clip_value,
    cohort_clip_value,
    overlay,
    save_png,
    side_by_side,
)
from medig.utils import atomic_write, sha256_file

__all__ = ["AuditError", "AuditSummary", "SettingsChangedError", "finalise_audit", "run_audit"]



class AuditError(RuntimeError):
    """The audit cannot run at all (no inputs, model not loadable, bad output folder)."""


class SettingsChangedError(AuditError):
    """The output folder holds an audit made with other settings (use a new --out or --force)."""


@dataclass
class AuditSummary:
    """Counts and paths of a finished audit."""

    out_dir: Path
    total: int = 0
    ok: int = 0
    errors: int = 0
    flagged: int = 0
    computed: int = 0  # inputs computed in this run (the rest were resumed from the store)
    seconds: float = 0.0
    mean_steps: float | None = None
    report: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


def _resolve_target(target: str, class_names: Sequence[str]) -> int | None:
    if target == "pred":
        return None
    if target.lstrip("-").isdigit():
        index = int(target)
        if not 0 <= index < len(class_names):
            raise AuditError(f"--target {target} is out of range for {len(class_names)} classes")
        return index
    if target in class_names:
        return list(class_names).index(target)
    raise AuditError(f"--target {target!r} is not a class name; classes: {', '.join(class_names)}")


class _Auditor:
    """Explains batches of decoded inputs and stores the results."""

    def __init__(self, model: nn.Module, class_names: list[str], settings: AuditSettings,
                 device: torch.device, store: WorkStore, out_dir: Path,
                 keys: dict[int, str]) -> None:
        try:  # channels_last weights match the channels_last path points of the adaptive schedule
            self.model = model.to(device, memory_format=torch.channels_last).eval()
        except (RuntimeError, TypeError):  # e.g. scripted or exported programs
            self.model = model.to(device).eval()
        self.class_names = class_names
        self.settings = settings
        self.device = device
        self.store = store
        self.out_dir = out_dir
        self.keys = keys
        self.target = _resolve_target(settings.target, class_names)
        self.preprocess = FundusPreprocess(size=settings.size, graham=settings.graham)
        self.ig = FundusIntegratedGradients(explained_output(self.model, settings.output),
                                            baselines=list(settings.baselines))

    def audit_batch(self, batch: list[DecodedInput], items: Sequence[AuditInput],
                    shas: dict[int, str]) -> list[dict[str, Any]]:
        """Audit the decoded inputs of one batch; returns the records stored."""
        self._decode_jpegs(batch, items)
        good = [d for d in batch if d.error is None]
        try:
            frame_rows = self._explain(good, items) if good else {}
        except Exception as error:  # noqa: BLE001 - isolate the file that broke the batch
            if len(good) <= 1:
                if not good:
                    raise
                frame_rows = {good[0].index: error}
            else:
                frame_rows = {}
                for d in good:
                    try:
                        frame_rows.update(self._explain([d], items))
                    except Exception as single:  # noqa: BLE001
                        frame_rows[d.index] = single
        records = []
        for d in batch:
            result = frame_rows.get(d.index)
            if d.error is not None:  # the file itself is bad: final, like its bytes
                record = {"sha256": shas[d.index], "status": "error", "error": d.error,
                          "frames": []}
            elif isinstance(result, Exception):  # explaining failed: retried by the next run
                record = {"sha256": shas[d.index], "status": "error", "error": _reason(result),
                          "frames": [], "retry": True}
            else:
                record = {"sha256": shas[d.index], "status": "ok", "error": None,
                          "frames": result}
            self.store.save(self.keys[d.index], record)
            records.append(record)
        return records

    def _decode_jpegs(self, batch: list[DecodedInput], items: Sequence[AuditInput]) -> None:
        """Decode the batch's undecoded JPEGs on the audit's device (nvJPEG on CUDA) in one call."""
        pending = [d for d in batch if d.jpeg is not None]
        if not pending:
            return
        names = [items[d.index].rel for d in pending]
        try:
            images: list[Tensor] | None = decode_jpeg_batch([d.jpeg for d in pending],
                                                            self.device, names=names)
        except ImageReadError:
            images = None  # one bad file fails the batched call: decode one by one
        for k, d in enumerate(pending):
            try:
                image = images[k] if images is not None else decode_jpeg_batch(
                    [d.jpeg], self.device, names=[names[k]])[0]
            except ImageReadError as error:
                d.error = error.reason
                continue
            finally:
                d.jpeg = None
            height, width = image.shape[-2:]
            mask = d.masks[0]
            d.frames = [image]
            d.metadata = [{"format": "jpeg", "width": int(width), "height": int(height),
                           "frames": 1, "decoded_on": self.device.type}]
            d.masks = [mask if mask is not None and tuple(mask.shape[-2:]) == (height, width)
                       else None]

    def _explain(self, decoded: list[DecodedInput],
                 items: Sequence[AuditInput]) -> dict[int, list[dict[str, Any]]]:
        # (input index, frame index or None for single-frame files) of every image in the batch
        owners = [(d.index, k if len(d.frames) > 1 else None)
                  for d in decoded for k in range(len(d.frames))]
        pixels = [f.to(self.device, non_blocking=True) for d in decoded for f in d.frames]
        metadata = [m for d in decoded for m in d.metadata]
        masks = [m for d in decoded for m in d.masks]
        images, fov, boxes = self.preprocess.forward_with_boxes(pixels)
        with torch.no_grad():
            probs = torch.softmax(self.model(images).double(), dim=1)
        target = None if self.target is None else torch.full(
            (images.shape[0],), self.target, dtype=torch.long, device=self.device)
        if target is None:
            target = probs.argmax(dim=1)
        expl = self.ig.explain(images, target=target,
                               completeness_tol=self.settings.completeness_tol,
                               max_steps=self.settings.max_steps, method=self.settings.method)
        maps = attribution_map(expl.attributions.detach())
        extra = []
        for j in range(images.shape[0]):
            fields: dict[str, Any] = {"laterality": _laterality(metadata[j])}
            if masks[j] is not None:
                lesion = crop_boxes(masks[j][None].to(self.device), boxes[j:j + 1],
                                    self.settings.size, mode="nearest")[0].bool()
                loc = localisation(maps[j], lesion, fov[j], self.settings.mask_dilation)
                fields.update({k: (round_float(v) if isinstance(v, float) else v)
                               for k, v in loc.items()})
            extra.append(fields)
        rows = explanation_rows(expl, probs, self.class_names, [""] * len(owners), extra=extra)
        result: dict[int, list[dict[str, Any]]] = {}
        for j, (index, frame) in enumerate(owners):
            self._save_arrays(items[index], self.keys[index], frame, images[j], fov[j], maps[j],
                              expl.attributions[j])
            rows[j]["frame"] = frame
            result.setdefault(index, []).append(rows[j])
        return result

    def _save_arrays(self, item: AuditInput, key: str, frame: int | None, image: Tensor,
                     fov: Tensor, amap: Tensor, attributions: Tensor) -> None:
        amap_np = amap.detach().float().cpu().numpy()
        scale = float(np.abs(amap_np).max()) or 1.0
        fov_np = fov.cpu().numpy()
        self.store.save_arrays(
            key, frame or 0,
            image=(image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(),
            fov=fov_np,
            attr_map=(amap_np / scale).astype(np.float16), attr_scale=np.float64(scale),
            sketch=abs_quantiles(amap_np, fov_np).astype(np.float32),
            clip=np.float64(clip_value(amap_np, fov_np, self.settings.percentile)),
        )
        if self.settings.save_attributions:
            rel = safe_relative_path(item.rel + ("" if frame is None else f"#{frame}"))
            buffer = io.BytesIO()
            np.savez_compressed(buffer, attributions=attributions.detach().float().cpu().numpy(),
                                fov=fov_np)
            atomic_write(self.out_dir / "attributions" / f"{rel}.npz", buffer.getvalue())


def _laterality(metadata: dict[str, Any]) -> str | None:
    for name in ("ImageLaterality", "Laterality"):
        value = metadata.get(name)
        if value:
            return str(value)
    return None


def _reason(error: BaseException | None) -> str:
    text = " ".join(str(error).split()) if error is not None else "unknown error"
    return f"could not be audited: {type(error).__name__}: {text}"[:300]


def _hash_items(items: Sequence[AuditInput]) -> list[str]:
    # Hashing is I/O bound: threads overlap the reads.
    from concurrent.futures import ThreadPoolExecutor

    def one(item: AuditInput) -> str:
        try:
            return sha256_file(item.path)
        except OSError:
            return "unreadable"

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, items))


def _check_out_dir(out_dir: Path, settings: AuditSettings, force: bool) -> bool:
    """Whether ``out_dir`` holds an audit made with other numeric settings (refused unless forced)."""
    previous = read_manifest(out_dir)
    if previous is None:
        return False
    changed = settings.changed_from(previous.get("settings", {}))
    if changed and not force:
        raise SettingsChangedError(
            f"{out_dir} holds an audit made with other settings (changed: {', '.join(changed)}); "
            "use a new --out folder, or --force to re-audit into this one")
    return bool(changed)


def _clear_previous_audit(out_dir: Path) -> None:
    """Remove a forced-over audit's work and images, so nothing stale mixes with the new one."""
    import shutil

    for name in (".medig", "overlays", "attributions"):
        shutil.rmtree(out_dir / name, ignore_errors=True)


def run_audit(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: AuditSettings,
    force: bool = False,
    progress: bool = True,
    model_loader: Callable[[AuditSettings], tuple[nn.Module, list[str], int | None, str | None]]
    | None = None,
    barrier_timeout_s: float = 3600.0,
) -> AuditSummary:
    """Audit ``inputs`` into ``out_dir``; resumable, and distributed under ``torchrun``.

    Parameters
    ----------
    inputs : sequence of path
        Folders (searched recursively) and files.
    out_dir : path
        Output folder (created).
    settings : AuditSettings
        The audit's settings; ``class_names``/``size``/``weights_sha256`` are filled in from the
        model when left empty.
    force : bool
        Re-audit into a folder that holds an audit with other numeric settings (its work, overlays
        and attributions are deleted first); without it such a folder is refused with
        :class:`SettingsChangedError`.
    progress : bool
        Show progress (a bar on a terminal, log lines otherwise).
    model_loader : callable, optional
        ``settings -> (model, class_names, input_size, weights_sha256)``; default
        :func:`medig.load_model` on ``settings.model``/``settings.weights``.
    barrier_timeout_s : float
        How long rank 0 waits for the other ranks before naming the missing ones.
    """
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    out = Path(out_dir)
    requested = settings.device
    device_type = "cpu" if requested == "cpu" or not torch.cuda.is_available() else "cuda"
    ctx = init_distributed(device_type)
    try:
        device = device_for(ctx, requested)
        if device.type == "cpu" and (settings.threads or ctx.local_world_size > 1):
            # Share the cores between the ranks of a node instead of oversubscribing them.
            torch.set_num_threads(settings.threads
                                  or max(1, (os.cpu_count() or 1) // ctx.local_world_size))
        model, class_names, input_size, weights_sha = (model_loader or _load_model)(settings)
        settings.class_names = settings.class_names or list(class_names)
        if len(settings.class_names) != len(class_names):
            raise AuditError(f"--classes names {len(settings.class_names)} classes but the model "
                             f"has {len(class_names)}")
        settings.weights_sha256 = weights_sha
        if not settings.size:
            settings.size = int(input_size or 512)
        items = collect_inputs(inputs, settings.masks, exclude=[out])
        if not items:
            raise AuditError(f"no image files found in {', '.join(map(str, inputs))}")
        stale = _check_out_dir(out, settings, force)
        if stale and ctx.is_main:
            _clear_previous_audit(out)
        barrier(ctx, barrier_timeout_s)
        store = WorkStore(out)
        # Which process is which rank, for operators (and the crash test) to find.
        atomic_write(store.root / "ranks" / f"rank{ctx.rank}.pid", str(os.getpid()))
        started_iso = broadcast(ctx, started.isoformat(timespec="seconds"))
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_manifest(out, settings, started=started_iso, status="running",
                           device=str(device), world_size=ctx.world_size)
        # Batches are cut from the whole input list and handed out whole: an image is always
        # computed with the same batch-mates, so its numbers are bit-identical whatever the
        # number of processes and after a resume (a killed batch is recomputed as a whole).
        size = settings.batch_size
        batches = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)]
        share = balanced_shares([sum(items[i].size for i in b) for b in batches],
                                ctx.world_size)[ctx.rank]
        my_batches = [batches[b] for b in share]
        mine = sorted(i for b in my_batches for i in b)
        shas = dict(zip(mine, _hash_items([items[i] for i in mine])))
        keys = {i: record_key(shas[i], settings.key()) for i in mine}
        todo = [[i for i in b if not store.is_done(keys[i])] for b in my_batches]
        todo = [b for b in todo if b]
        auditor = _Auditor(model, settings.class_names, settings, device, store, out, keys)
        n_todo = sum(len(b) for b in todo)
        bar = Progress(len(mine), len(mine) - n_todo, enabled=progress,
                       prefix=f"rank {ctx.rank}: " if ctx.distributed else "")
        # JPEGs decode on the GPU (nvJPEG, batched) when the audit runs on one.
        jpeg_on_device = (settings.jpeg_on_device if settings.jpeg_on_device is not None
                          else device.type == "cuda")
        loader = make_loader(items, todo, settings.workers, settings.include_phi, jpeg_on_device)
        computed = 0
        for batch in loader:
            auditor.audit_batch(batch, items, shas)
            computed += len(batch)
            bar.update(len(batch))
        bar.close()
        rank_seconds = time.monotonic() - t0
        _write_rank_report(store, ctx, started_iso, {items[i].rel: shas[i] for i in mine},
                           computed, rank_seconds)
        barrier(ctx, barrier_timeout_s)
        cohort = None
        if ctx.distributed:
            # Rank 0 pools the colour scale; every rank then draws its own share of overlays.
            if ctx.is_main:
                reports = _read_rank_reports(store, started_iso, ctx.world_size)
                sha_all = {rel: s for rep in reports for rel, s in rep["sha256"].items()}
                key_all = {it.rel: record_key(sha_all[it.rel], settings.key()) for it in items}
                cohort = _cohort_scale(store, _frames_of(store, items, key_all), settings)
            cohort = broadcast(ctx, cohort)
            draw_own_overlays(out, settings, [items[i] for i in mine],
                              {items[i].rel: keys[i] for i in mine}, cohort, ctx)
            barrier(ctx, barrier_timeout_s)
        summary = AuditSummary(out, computed=computed)
        if ctx.is_main:
            summary = finalise_audit(out, settings, items, started_iso, str(device), ctx,
                                     cohort)
            summary.computed = computed
        summary.seconds = time.monotonic() - t0
        return summary
    finally:
        shutdown(ctx)


def _load_model(settings: AuditSettings) -> tuple[nn.Module, list[str], int | None, str | None]:
    from medig.models import load_model

    loaded = load_model(settings.model, weights=settings.weights,
                        class_names=settings.class_names or None)
    return loaded.model, list(loaded.class_names), loaded.input_size, loaded.weights_sha256


def _write_rank_report(store: WorkStore, ctx: DistContext, run: str, sha_of: dict[str, str],
                       computed: int, seconds: float) -> None:
    report = {"run": run, "rank": ctx.rank, "computed": computed, "inputs": len(sha_of),
              "seconds": round(seconds, 3), "sha256": sha_of}
    atomic_write(store.root / "ranks" / f"rank{ctx.rank}.json", json.dumps(report))


def _read_rank_reports(store: WorkStore, run: str, world_size: int) -> list[dict[str, Any]]:
    reports = []
    for r in range(world_size):
        path = store.root / "ranks" / f"rank{r}.json"
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if data is None or data.get("run") != run:
            raise AuditError(f"rank {r} did not report for this run ({path})")
        reports.append(data)
    return reports


_Frame = tuple[AuditInput, dict[str, Any], str]  # (input, stored frame row, record key)


def _frames_of(store: WorkStore, items: Sequence[AuditInput], key_of: dict[str, str],
               records: dict[str, dict[str, Any] | None] | None = None) -> list[_Frame]:
    """The explained frames of ``items``, in order, from their stored (or given) records."""
    frames: list[_Frame] = []
    for it in items:
        record = records[it.rel] if records is not None else store.load(key_of[it.rel])
        if record is not None and record["status"] == "ok":
            frames.extend((it, row, key_of[it.rel]) for row in record["frames"])
    return frames


def _cohort_scale(store: WorkStore, frames: Sequence[_Frame],
                  settings: AuditSettings) -> float | None:
    """One colour scale for the whole audit, pooled from every image's quantile sketch."""
    if settings.overlay_scale == "image":
        return None
    sketches = [store.load_arrays(k, fr.get("frame") or 0, "sketch")["sketch"]
                for _, fr, k in frames]
    return cohort_clip_value(sketches, settings.percentile)


def _frame_name(it: AuditInput, frame_row: dict[str, Any]) -> tuple[str, str]:
    frame = frame_row.get("frame")
    name = it.rel if frame is None else f"{it.rel}#{frame}"
    return name, f"overlays/{safe_relative_path(name)}.png"


def _draw_overlays(out_dir: Path, store: WorkStore, frames: Sequence[_Frame],
                   settings: AuditSettings, cohort: float | None,
                   drawn: dict[str, Any]) -> dict[str, Any]:
    """Render the overlays not yet drawn from the same work at the same scale; returns the stamps.

    The stamps (record key, frame, scale) let a resumed audit, or rank 0 after the ranks drew
    their own shares, skip overlays that are already up to date.
    """
    stamps = {}
    for it, frame_row, key in frames:
        frame = frame_row.get("frame")
        _name, rel_png = _frame_name(it, frame_row)
        stamp = [key, frame, settings.overlay_scale, cohort, settings.percentile]
        if drawn.get(rel_png) != stamp or not (out_dir / rel_png).is_file():
            arrays = store.load_arrays(key, frame or 0, "image", "fov", "attr_map",
                                       "attr_scale", "clip")
            _render_overlay(out_dir / rel_png, arrays,
                            float(arrays["clip"]) if cohort is None else cohort)
        stamps[rel_png] = stamp
    return stamps


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def draw_own_overlays(out_dir: Path, settings: AuditSettings, items: Sequence[AuditInput],
                      key_of: dict[str, str], cohort: float | None, ctx: DistContext) -> None:
    """Under torchrun: each rank draws the overlays of its own inputs once the scale is known,
    so rank 0 does not render the whole cohort alone after the barrier."""
    store = WorkStore(out_dir)
    drawn = _read_json(store.root / "overlays.json")
    stamps = _draw_overlays(out_dir, store, _frames_of(store, items, key_of), settings, cohort,
                            drawn)
    atomic_write(store.root / "ranks" / f"overlays-rank{ctx.rank}.json", json.dumps(stamps))


def finalise_audit(out_dir: Path, settings: AuditSettings, items: Sequence[AuditInput],
                   started: str, device: str, ctx: DistContext | None = None,
                   cohort: float | None = None) -> AuditSummary:
    """Merge the stored work into overlays, ``results.*``, ``manifest.json`` and ``report.pdf``.

    ``cohort`` is the colour scale when the caller already pooled it (the distributed path).
    """
    ctx = ctx or DistContext()
    store = WorkStore(out_dir)
    reports = _read_rank_reports(store, started, ctx.world_size)
    sha_of = {rel: s for rep in reports for rel, s in rep["sha256"].items()}
    key_of = {it.rel: record_key(sha_of[it.rel], settings.key()) for it in items}
    records = {it.rel: store.load(key_of[it.rel]) for it in items}  # each record read once
    frames = _frames_of(store, items, key_of, records)
    if cohort is None:
        cohort = _cohort_scale(store, frames, settings)

    # Overlays already drawn (by a previous run, or by the ranks) are not drawn again.
    drawn_path = store.root / "overlays.json"
    drawn = _read_json(drawn_path)
    if ctx.distributed:
        for r in range(ctx.world_size):
            drawn.update(_read_json(store.root / "ranks" / f"overlays-rank{r}.json"))
    drawn.update(_draw_overlays(out_dir, store, frames, settings, cohort, drawn))
    atomic_write(drawn_path, json.dumps(drawn))

    frame_rows = iter(frames)
    final_rows: list[dict[str, Any]] = []
    for it in items:
        record = records[it.rel]
        if record is None:
            final_rows.append(error_row(it.rel, sha_of[it.rel], "not audited (interrupted run?)"))
            continue
        if record["status"] != "ok":
            final_rows.append(error_row(it.rel, record["sha256"], record["error"]))
            continue
        for _ in record["frames"]:
            _it, frame_row, _key = next(frame_rows)
            name, rel_png = _frame_name(it, frame_row)
            row = {k: v for k, v in frame_row.items() if k != "frame"}
            row.update(path=name, sha256=sha_of[it.rel], overlay=rel_png)
            final_rows.append(row)

    write_results(out_dir, final_rows, settings.class_names)
    ok = [r for r in final_rows if r["status"] == "ok"]
    summary = AuditSummary(
        out_dir, total=len(final_rows), ok=len(ok),
        errors=len(final_rows) - len(ok), flagged=sum(bool(r["flagged"]) for r in ok),
        mean_steps=float(np.mean([r["n_steps"] for r in ok])) if ok else None, rows=final_rows)
    write_manifest(
        out_dir, settings, started=started, status="complete", device=device,
        world_size=ctx.world_size, cohort_clip=cohort,
        counts={"total": summary.total, "ok": summary.ok, "error": summary.errors,
                "flagged": summary.flagged},
        ranks=[{k: rep[k] for k in ("rank", "inputs", "computed", "seconds")}
               for rep in reports])
    summary.report = build_report(out_dir, template=settings.template,
                                  include_phi=settings.include_phi)
    return summary


def _render_overlay(path: Path, arrays: dict[str, np.ndarray], clip: float) -> None:
    image = arrays["image"].astype(np.float32) / 255.0
    amap = arrays["attr_map"].astype(np.float32) * float(arrays["attr_scale"])
    picture = overlay(image, amap, arrays["fov"], clip)
    save_png(path, side_by_side(arrays["image"], picture))
