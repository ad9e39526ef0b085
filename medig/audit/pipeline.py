# SPDX-License-Identifier: Apache-2.0
"""``run_audit``: read, preprocess, predict, explain and record a folder of fundus photographs.

The flow is one way: the settings (what the user asked for) and the loaded model make the
audit's plan (:func:`~medig.audit.plan.resolve`), which everything after reads; :mod:`medig.io`
decodes (in DataLoader workers), the batch steps of :mod:`medig.audit.steps` preprocess, predict,
explain and check each batch on the audit's device (:class:`~medig.audit.auditor.Auditor`), and
each finished input is stored atomically in the work store;
:func:`~medig.audit.finalise.finalise_audit` then renders overlays with one cohort-wide colour
scale and writes the results, the manifest and the PDF report. Under ``torchrun`` each rank
audits its share and rank 0 finalises. This module only orchestrates, in named phases: lock the
output folder, plan, open it, schedule the batches, compute them, finalise.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from medig.audit.auditor import Auditor
from medig.audit.distributed import (
    DistContext,
    balanced_shares,
    barrier,
    broadcast,
    device_for,
    init_distributed,
    shutdown,
)
from medig.audit.errors import AuditError, AuditUsageError, SettingsChangedError
from medig.audit.finalise import (
    AuditStep,
    AuditSummary,
    cohort_scale,
    draw_own_overlays,
    finalise_audit,
    frames_of,
    read_rank_reports,
    write_rank_report,
)
from medig.audit.inputs import AuditInput, adopt_hashes, collect_inputs, decode_batches
from medig.audit.lock import OutputLock
from medig.audit.manifest import read_manifest, write_manifest
from medig.audit.model_setup import load_for_audit
from medig.audit.plan import AuditPlan, resolve
from medig.audit.progress import Progress
from medig.audit.settings import NUMERIC_SETTINGS, AuditSettings, settings_problem
from medig.audit.steps import audit_steps
from medig.audit.store import DamagedWorkError, WorkStore, record_key, unreadable_key
from medig.audit.study import SECRET_NAME, StudySecretError, audit_secret
from medig.utils import atomic_write, remove_stale_temporaries, sha256_file

if TYPE_CHECKING:
    from medig.models import LoadedModel

__all__ = ["AuditError", "AuditSummary", "SettingsChangedError", "finalise_audit", "run_audit"]

#: How often damaged stored work found while finalising is recomputed before the audit gives up.
_REPAIRS = 2


def _hash_items(items: Sequence[AuditInput]) -> list[str]:
    # Hashing is I/O bound: threads overlap the reads.
    from concurrent.futures import ThreadPoolExecutor

    def one(item: AuditInput) -> str:
        try:
            return sha256_file(item.path)
        except OSError:  # never final: a key of its own, retried by the next run
            return unreadable_key(item.rel)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, items))


def _changed_settings(out_dir: Path, plan: AuditPlan) -> list[str]:
    """The numeric settings in which the audit stored in ``out_dir`` differs from ``plan``.

    The evidence is ``manifest.json`` and the work store's own copy of the settings
    (``.medig/settings.json``); when neither can be read, the settings keys of the stored records:
    a deleted or damaged manifest never lets work of other settings mix with this audit's.
    """
    store = WorkStore(out_dir)
    manifest = read_manifest(out_dir)
    saved = store.load_settings()
    recorded = [m["settings"] for m in (manifest, saved) if m is not None and "settings" in m]
    changed = {name for previous in recorded for name in plan.changed_from(previous)}
    found = [n for n in NUMERIC_SETTINGS if n in changed]
    if not recorded and store.settings_keys() - {plan.key()}:
        found.append("numeric settings, according to the stored work (manifest.json is missing "
                     "or damaged)")
    return found


def _check_out_dir(out_dir: Path, plan: AuditPlan, force: bool) -> bool:
    """Whether ``out_dir`` holds an audit that must be cleared first: one made with other numeric
    settings, or whose study secret is damaged (new study ids). Refused unless forced."""
    changed = _changed_settings(out_dir, plan)
    if changed and not force:
        raise SettingsChangedError(
            f"{out_dir} holds an audit made with other settings (changed: {', '.join(changed)}); "
            "use a new --out folder, or --force to re-audit into this one")
    store = WorkStore(out_dir)
    if (not force and read_manifest(out_dir, warn=False) is None and store.load_settings() is None
            and store.settings_keys()):
        # Both records of when the audit's first run started are lost, and that date is printed
        # on its study pages and DICOM objects: a new one would re-date them and send them again.
        raise SettingsChangedError(
            f"{out_dir}: manifest.json and .medig/settings.json are both missing or damaged, so "
            "the date of this audit's first run (on its study pages and DICOM objects) is lost; "
            "restore one of them, use a new --out folder, or --force to re-audit into this one")
    secret_damaged = False
    if os.path.lexists(Path(out_dir) / ".medig" / SECRET_NAME):
        try:
            audit_secret(out_dir)
        except StudySecretError as error:
            if not force:
                raise SettingsChangedError(
                    f"{error}: restore it, use a new --out folder, or --force to re-audit into "
                    "this one with new study ids") from None
            secret_damaged = True
    return bool(changed) or secret_damaged


def _clear_previous_audit(out_dir: Path) -> None:
    """Remove a forced-over audit's work and images, so nothing stale mixes with the new one."""
    import shutil

    for name in ("overlays", "attributions", "report_files/baselines"):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    with contextlib.suppress(OSError):  # kept if anything else is in it
        (out_dir / "report_files").rmdir()
    work = out_dir / ".medig"
    for entry in work.iterdir() if work.is_dir() else ():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name != "lock":  # the output lock this audit holds stays
            entry.unlink(missing_ok=True)


def run_audit(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: AuditSettings,
    force: bool = False,
    progress: bool = True,
    model_loader: Callable[[AuditSettings], LoadedModel] | None = None,
    barrier_timeout_s: float = 3600.0,
    extra_steps: Sequence[AuditStep] = (),
) -> AuditSummary:
    """Audit ``inputs`` into ``out_dir``; resumable, and distributed under ``torchrun``.

    Parameters
    ----------
    inputs : sequence of path
        Folders (searched recursively) and files.
    out_dir : path
        Output folder (created).
    settings : AuditSettings
        What the user asked for; never changed. What follows from it and the model (class names,
        target, size, tolerances, ...) is the audit's plan (:func:`medig.audit.plan.resolve`), so
        one settings object may run any number of audits.
    force : bool
        Re-audit into a folder that holds an audit with other numeric settings (its work, overlays
        and attributions are deleted first); without it such a folder is refused with
        :class:`SettingsChangedError`.
    progress : bool
        Show progress (a bar on a terminal, log lines otherwise).
    model_loader : callable, optional
        ``settings -> LoadedModel``; default :func:`medig.load_model` on the settings' model
        options (``model``, ``weights``, ``class_names``, ``mean``/``std``, ...).
    barrier_timeout_s : float
        How long rank 0 waits for the other ranks before naming the missing ones.
    extra_steps : sequence of AuditStep
        Steps of packages above the audit run after the report (e.g.
        :func:`medig.pacs.steps.pacs_steps`: DICOM output and sending); their options are
        checked (``step.problem(settings)``) before anything is loaded.
    """
    before, after = audit_steps(settings, extra_steps)
    problem = _problem(settings, after)
    if problem:
        raise AuditUsageError(problem)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    out = Path(out_dir)
    device_type = ("cpu" if settings.device == "cpu" or not torch.cuda.is_available()
                   else "cuda")
    ctx = init_distributed(device_type)
    lock = OutputLock(out)
    try:
        _lock(ctx, lock, out)
        device = _device(ctx, settings)
        loaded = (model_loader or load_for_audit)(settings)
        plan = resolve(settings, loaded)  # usage errors (e.g. the target) before any output
        items = collect_inputs(inputs, settings.masks, exclude=[out])
        if not items:
            raise AuditError(f"no image files found in {', '.join(map(str, inputs))}")
        store, started_iso = _open_out_dir(out, plan, force, ctx, device, started,
                                           barrier_timeout_s)
        work = _schedule(items, plan, store, ctx)
        plan = plan.scheduled(device, work.n_todo)  # --compile where it pays
        auditor = Auditor(loaded.model, plan, device, store, out, work.keys)
        computed = _compute(auditor, items, work, ctx, progress)
        write_rank_report(store, ctx, started_iso, {items[i].rel: work.shas[i] for i in work.mine},
                          computed, time.monotonic() - t0)
        barrier(ctx, barrier_timeout_s)
        summary, repaired = _finalise(out, plan, items, work, store, started_iso, device, ctx,
                                      auditor, (before, after), barrier_timeout_s)
        summary.computed = computed + repaired
        summary.seconds = time.monotonic() - t0
        return summary
    finally:
        lock.release()
        shutdown(ctx)


def _problem(settings: AuditSettings, steps: Sequence[AuditStep]) -> str | None:
    """The first problem of the settings, then of each optional step's options."""
    problem = settings_problem(settings)
    for step in steps:
        check = getattr(step, "problem", None)
        if problem is None and check is not None:
            problem = check(settings)
    return problem


def _lock(ctx: DistContext, lock: OutputLock, out: Path) -> None:
    """One audit per ``--out``: rank 0 locks it for the whole job and tells the other ranks."""
    refused = None
    if ctx.is_main:
        try:
            lock.acquire()
            remove_stale_temporaries(out)  # left by a killed run: nobody else writes here
        except AuditError as error:
            refused = error
    refused = broadcast(ctx, refused)
    if refused is not None:
        raise refused


def _device(ctx: DistContext, settings: AuditSettings) -> torch.device:
    """This rank's device; on the CPU, its share of the node's cores."""
    device = device_for(ctx, settings.device)
    if device.type == "cpu" and (settings.threads or ctx.local_world_size > 1):
        # Share the cores between the ranks of a node instead of oversubscribing them.
        torch.set_num_threads(settings.threads
                              or max(1, (os.cpu_count() or 1) // ctx.local_world_size))
    return device


def _open_out_dir(out: Path, plan: AuditPlan, force: bool, ctx: DistContext,
                  device: torch.device, started: datetime.datetime,
                  barrier_timeout_s: float) -> tuple[WorkStore, str]:
    """Check (and with ``force`` clear) a previous audit in ``out``, open the work store and
    write the running manifest; returns the store and the run's start stamp."""
    # Rank 0 judges the folder (one warning per damaged file, not one per rank).
    verdict: bool | AuditError | None = None
    if ctx.is_main:
        try:
            verdict = _check_out_dir(out, plan, force)
        except SettingsChangedError as error:
            verdict = error
    verdict = broadcast(ctx, verdict)
    if isinstance(verdict, AuditError):
        raise verdict
    if verdict and ctx.is_main:
        _clear_previous_audit(out)
    barrier(ctx, barrier_timeout_s)
    store = WorkStore(out)
    # Which process is which rank, for operators (and the crash test) to find.
    atomic_write(store.root / "ranks" / f"rank{ctx.rank}.pid", str(os.getpid()))
    started_iso = broadcast(ctx, started.isoformat(timespec="seconds"))
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        saved = store.load_settings()
        kept = saved.get("first_started") if saved and saved.get("key") == plan.key() else None
        path = write_manifest(out, plan, started=started_iso, status="running",
                              device=str(device), world_size=ctx.world_size,
                              first_started=kept if isinstance(kept, str) else None)
        first = json.loads(path.read_text(encoding="utf-8"))["first_started"]
        store.save_settings(plan.key(), plan.numeric(), first_started=first)
    return store, started_iso


@dataclass(frozen=True)
class _Schedule:
    """This rank's share of the audit: its inputs, their hashes and keys, the batches to compute."""

    mine: list[int]  # indices of this rank's inputs
    shas: dict[int, str]
    keys: dict[int, str]  # record key of each of this rank's inputs (and of repaired ones)
    todo: list[list[int]]  # batches with inputs not yet stored
    batches: list[list[int]]  # every batch of the audit, of all ranks

    @property
    def n_todo(self) -> int:
        return sum(map(len, self.todo))


def _schedule(items: Sequence[AuditInput], plan: AuditPlan, store: WorkStore,
              ctx: DistContext) -> _Schedule:
    """Cut the batches, share them between the ranks and leave out the inputs already stored."""
    # Batches are cut from the whole input list and handed out whole: an image is always
    # computed with the same batch-mates, so its numbers are bit-identical whatever the
    # number of processes and after a resume (a killed batch is recomputed as a whole).
    size = plan.settings.batch_size
    batches = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)]
    share = balanced_shares([sum(items[i].size for i in b) for b in batches],
                            ctx.world_size)[ctx.rank]
    my_batches = [batches[b] for b in share]
    mine = sorted(i for b in my_batches for i in b)
    shas = dict(zip(mine, _hash_items([items[i] for i in mine])))
    keys = {i: record_key(shas[i], plan.key()) for i in mine}
    todo = [p for p in (_pending(b, items, store, keys) for b in my_batches) if p]
    return _Schedule(mine, shas, keys, todo, batches)


def _pending(batch: Sequence[int], items: Sequence[AuditInput], store: WorkStore,
             keys: dict[int, str]) -> list[int]:
    """The inputs of ``batch`` to compute: the whole batch as soon as one of its images is not done.

    An image's numbers depend in their last float32 bits on its batch-mates (the completeness
    gap ``delta`` shows it in the fourth digit), so resumed work is bit-identical only if a batch
    is recomputed as the unit it was computed in. Inputs known to be unreadable (``item.error``)
    never join the model's batch: retrying them alone changes nobody's numbers.
    """
    pending = [i for i in batch if not store.is_done(keys[i])]
    if any(items[i].error is None for i in pending):
        return list(batch)
    return pending


def _compute(auditor: Auditor, items: Sequence[AuditInput], work: _Schedule, ctx: DistContext,
             progress: bool, batches: list[list[int]] | None = None) -> int:
    """Decode and audit this rank's batches still to do (or ``batches``); returns how many
    inputs it computed."""
    settings = auditor.ctx.settings
    bar = Progress(len(work.mine), len(work.mine) - work.n_todo, enabled=progress,
                   prefix=f"rank {ctx.rank}: " if ctx.distributed else "")
    # JPEGs decode on the GPU (nvJPEG, batched) when the audit runs on one.
    jpeg_on_device = (settings.jpeg_on_device if settings.jpeg_on_device is not None
                      else auditor.ctx.device.type == "cuda")
    key = auditor.ctx.plan.key()
    computed = 0
    for batch in decode_batches(items, batches if batches is not None else work.todo,
                                settings.workers, settings.include_phi, jpeg_on_device):
        adopt_hashes(batch, work.shas, work.keys, key)  # the bytes decoded, if changed
        auditor.audit_batch(batch, items, work.shas)
        computed += len(batch)
        bar.update(len(batch))
    bar.close()
    return computed


def _repair(damaged: set[str], auditor: Auditor, items: Sequence[AuditInput], work: _Schedule,
            store: WorkStore, started_iso: str, ctx: DistContext) -> int:
    """On rank 0, after finalising found stored work unusable: compute its inputs again, each in
    its whole batch (as first computed, whichever rank did), and return how many were computed."""
    key = auditor.ctx.plan.key()
    reports = read_rank_reports(store, started_iso, ctx.world_size)
    sha_all = {rel: s for rep in reports for rel, s in rep["sha256"].items()}
    redo = [b for b in work.batches
            if any(record_key(sha_all[items[i].rel], key) in damaged for i in b)]
    for batch in redo:  # the auditor reads the keys of the inputs it stores from work.keys
        for i in batch:
            work.shas[i] = sha_all[items[i].rel]
            work.keys[i] = record_key(work.shas[i], key)
    for damaged_key in damaged:
        store.discard(damaged_key)
    return _compute(auditor, items, work, ctx, progress=False, batches=redo)


def _finalise(out: Path, plan: AuditPlan, items: Sequence[AuditInput], work: _Schedule,
              store: WorkStore, started_iso: str, device: torch.device, ctx: DistContext,
              auditor: Auditor, steps: tuple[Sequence[AuditStep], Sequence[AuditStep]],
              barrier_timeout_s: float) -> tuple[AuditSummary, int]:
    """Overlays at one colour scale, then (rank 0) results, manifest, report and the after steps;
    and how many inputs rank 0 computed again because their stored work was found damaged."""
    cohort = None
    if ctx.distributed:
        # Rank 0 pools the colour scale; every rank then draws its own share of overlays.
        if ctx.is_main:
            reports = read_rank_reports(store, started_iso, ctx.world_size)
            sha_all = {rel: s for rep in reports for rel, s in rep["sha256"].items()}
            key_all = {it.rel: record_key(sha_all[it.rel], plan.key()) for it in items}
            cohort = cohort_scale(store, frames_of(store, items, key_all), plan.settings)
        cohort = broadcast(ctx, cohort)
        draw_own_overlays(out, plan.settings, [items[i] for i in work.mine],
                          {items[i].rel: work.keys[i] for i in work.mine}, cohort, ctx)
        barrier(ctx, barrier_timeout_s)
    if not ctx.is_main:
        return AuditSummary(out), 0
    repaired = repairs = 0
    while True:
        try:
            summary = finalise_audit(out, plan, items, started_iso, str(device), ctx, cohort,
                                     model=auditor.ctx.model, steps=steps, store=store)
            return summary, repaired
        except DamagedWorkError as damaged:
            repairs += 1
            if repairs > _REPAIRS:  # the disk keeps damaging what is written: give up
                raise
            repaired += _repair(damaged.keys, auditor, items, work, store, started_iso, ctx)
            cohort = None  # pooled again, with the repaired work
