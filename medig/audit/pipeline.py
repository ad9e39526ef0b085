# SPDX-License-Identifier: Apache-2.0
"""``run_audit``: read, preprocess, predict, explain and record a folder of fundus photographs.

The flow is one way: :mod:`medig.io` decodes (in DataLoader workers), the batch steps of
:mod:`medig.audit.steps` preprocess, predict, explain and check each batch on the audit's device
(:class:`~medig.audit.auditor.Auditor`), and each finished input is stored atomically in the work
store; :func:`~medig.audit.finalise.finalise_audit` then renders overlays with one cohort-wide
colour scale and writes the results, the manifest and the PDF report. Under ``torchrun`` each
rank audits its share and rank 0 finalises. This module only orchestrates.
"""
from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from medig.attr.compiled import should_compile
from medig.attr.completeness import default_atol
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
from medig.audit.progress import Progress
from medig.audit.settings import NUMERIC_SETTINGS, AuditSettings, settings_problem
from medig.audit.steps import audit_steps
from medig.audit.store import DamagedWorkError, WorkStore, record_key, unreadable_key
from medig.audit.study import SECRET_NAME, StudySecretError, audit_secret
from medig.audit.targets import checked_target
from medig.utils import atomic_write, remove_stale_temporaries, sha256_file

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


def _changed_settings(out_dir: Path, settings: AuditSettings) -> list[str]:
    """The numeric settings in which the audit stored in ``out_dir`` differs from ``settings``.

    The evidence is ``manifest.json`` and the work store's own copy of the settings
    (``.medig/settings.json``); when neither can be read, the settings keys of the stored records:
    a deleted or damaged manifest never lets work of other settings mix with this audit's.
    """
    store = WorkStore(out_dir)
    manifest = read_manifest(out_dir)
    saved = store.load_settings()
    recorded = [m["settings"] for m in (manifest, saved) if m is not None and "settings" in m]
    changed = {name for previous in recorded for name in settings.changed_from(previous)}
    found = [n for n in NUMERIC_SETTINGS if n in changed]
    if not recorded and store.settings_keys() - {settings.key()}:
        found.append("numeric settings, according to the stored work (manifest.json is missing "
                     "or damaged)")
    return found


def _check_out_dir(out_dir: Path, settings: AuditSettings, force: bool) -> bool:
    """Whether ``out_dir`` holds an audit that must be cleared first: one made with other numeric
    settings, or whose study secret is damaged (new study ids). Refused unless forced."""
    changed = _changed_settings(out_dir, settings)
    if changed and not force:
        raise SettingsChangedError(
            f"{out_dir} holds an audit made with other settings (changed: {', '.join(changed)}); "
            "use a new --out folder, or --force to re-audit into this one")
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


def _clear_previous_audit(out_dir: Path) -> None:
    """Remove a forced-over audit's work and images, so nothing stale mixes with the new one."""
    import shutil

    for name in ("overlays", "attributions"):
        shutil.rmtree(out_dir / name, ignore_errors=True)
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
    problem = settings_problem(settings)
    if problem:
        raise AuditUsageError(problem)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    out = Path(out_dir)
    requested = settings.device
    device_type = "cpu" if requested == "cpu" or not torch.cuda.is_available() else "cuda"
    ctx = init_distributed(device_type)
    lock = OutputLock(out)
    try:
        # One audit per --out: rank 0 locks it for the whole job and tells the other ranks.
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
        settings.target = checked_target(settings)  # usage errors before any output
        if not settings.size:
            settings.size = int(input_size or 512)
        if settings.completeness_atol is None:  # the rule's default for the output
            settings.completeness_atol = default_atol(settings.output)
        items = collect_inputs(inputs, settings.masks, exclude=[out])
        if not items:
            raise AuditError(f"no image files found in {', '.join(map(str, inputs))}")
        # Rank 0 judges the folder (one warning per damaged file, not one per rank).
        verdict: bool | AuditError | None = None
        if ctx.is_main:
            try:
                verdict = _check_out_dir(out, settings, force)
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
            write_manifest(out, settings, started=started_iso, status="running",
                           device=str(device), world_size=ctx.world_size)
            store.save_settings(settings.key(), settings.numeric())
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
        todo = [p for p in (_pending(b, items, store, keys) for b in my_batches) if p]
        settings.compile = should_compile(settings.compile, device, sum(map(len, todo)))
        auditor = Auditor(model, settings.class_names, settings, device, store, out, keys)
        n_todo = sum(len(b) for b in todo)
        bar = Progress(len(mine), len(mine) - n_todo, enabled=progress,
                       prefix=f"rank {ctx.rank}: " if ctx.distributed else "")
        # JPEGs decode on the GPU (nvJPEG, batched) when the audit runs on one.
        jpeg_on_device = (settings.jpeg_on_device if settings.jpeg_on_device is not None
                          else device.type == "cuda")

        def compute(batches: Sequence[Sequence[int]], bar: Progress | None = None) -> int:
            done = 0
            for batch in decode_batches(items, batches, settings.workers, settings.include_phi,
                                        jpeg_on_device):
                adopt_hashes(batch, shas, keys, settings.key())  # the bytes decoded, if changed
                auditor.audit_batch(batch, items, shas)
                done += len(batch)
                if bar is not None:
                    bar.update(len(batch))
            return done

        computed = compute(todo, bar)
        bar.close()
        rank_seconds = time.monotonic() - t0
        write_rank_report(store, ctx, started_iso, {items[i].rel: shas[i] for i in mine},
                           computed, rank_seconds)
        barrier(ctx, barrier_timeout_s)
        cohort = None
        if ctx.distributed:
            # Rank 0 pools the colour scale; every rank then draws its own share of overlays.
            if ctx.is_main:
                reports = read_rank_reports(store, started_iso, ctx.world_size)
                sha_all = {rel: s for rep in reports for rel, s in rep["sha256"].items()}
                key_all = {it.rel: record_key(sha_all[it.rel], settings.key()) for it in items}
                cohort = cohort_scale(store, frames_of(store, items, key_all), settings)
            cohort = broadcast(ctx, cohort)
            draw_own_overlays(out, settings, [items[i] for i in mine],
                              {items[i].rel: keys[i] for i in mine}, cohort, ctx)
            barrier(ctx, barrier_timeout_s)
        summary = AuditSummary(out, computed=computed)
        if ctx.is_main:
            for repairs in range(_REPAIRS + 1):
                try:
                    summary = finalise_audit(out, settings, items, started_iso, str(device), ctx,
                                             cohort, model=auditor.ctx.model,
                                             steps=audit_steps(settings), store=store)
                    break
                except DamagedWorkError as damaged:
                    if repairs == _REPAIRS:
                        raise
                    computed += _repair(damaged.keys, store, ctx, started_iso, items, batches,
                                        shas, keys, settings, compute)
                    cohort = None  # pooled again, with the repaired work
            summary.computed = computed
        summary.seconds = time.monotonic() - t0
        return summary
    finally:
        lock.release()
        shutdown(ctx)


def _repair(damaged: set[str], store: WorkStore, ctx: DistContext, run: str, items: Sequence[AuditInput],
            batches: Sequence[Sequence[int]], shas: dict[int, str], keys: dict[int, str],
            settings: AuditSettings, compute: Callable[[Sequence[Sequence[int]]], int]) -> int:
    """On rank 0, after finalising found stored work unusable: compute its inputs again, each in
    its whole batch (as first computed), and return how many inputs were computed."""
    reports = read_rank_reports(store, run, ctx.world_size)
    sha_all = {rel: s for rep in reports for rel, s in rep["sha256"].items()}
    redo = [b for b in batches
            if any(record_key(sha_all[items[i].rel], settings.key()) in damaged for i in b)]
    for batch in redo:
        for i in batch:
            shas[i] = sha_all[items[i].rel]
            keys[i] = record_key(shas[i], settings.key())
    for key in damaged:
        store.discard(key)
    return compute(redo)


def _load_model(settings: AuditSettings) -> tuple[nn.Module, list[str], int | None, str | None]:
    return load_for_audit(settings)  # fills the settings with what the model declares
