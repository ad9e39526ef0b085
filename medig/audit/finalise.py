# SPDX-License-Identifier: Apache-2.0
"""From stored work to the audit's outputs: overlays at one colour scale, ``results.*``,
``manifest.json``, ``report.pdf``, ``report.html``, and the audit steps that run once per audit.

Under ``torchrun`` every rank stores its work and a rank report; rank 0 pools the cohort colour
scale, each rank draws its own overlays (:func:`draw_own_overlays`), and rank 0 merges the rest
(:func:`finalise_audit`).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn

from medig.audit.distributed import DistContext
from medig.audit.errors import AuditError
from medig.audit.inputs import AuditInput
from medig.audit.manifest import write_manifest
from medig.audit.plan import AuditPlan
from medig.audit.records import error_row, write_results
from medig.audit.settings import AuditSettings
from medig.audit.store import (
    DamagedWorkError,
    WorkStore,
    output_name,
    printable,
    record_key,
    row_path,
)
from medig.report import build_report
from medig.report.html import build_html
from medig.report.rows import ResultRow
from medig.utils import atomic_write, read_json_file
from medig.visualize import cohort_clip_value, overlay, save_png, side_by_side

__all__ = [
    "AuditStep",
    "AuditSummary",
    "BASELINE_OVERLAYS",
    "FinishedAudit",
    "baseline_folders",
    "draw_own_overlays",
    "finalise_audit",
    "read_rank_reports",
    "write_rank_report",
]

_log = logging.getLogger("medig")


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
    html: Path | None = None  # the cohort browser, report.html
    rows: list[ResultRow] = field(default_factory=list)


@dataclass
class FinishedAudit:
    """What an :class:`AuditStep` sees: the merged rows and where everything is stored."""

    out_dir: Path
    plan: AuditPlan
    items: Sequence[AuditInput]
    rows: list[ResultRow]  # final result rows, in output order
    store: WorkStore
    key_of: dict[str, str]  # record key of each input, by relative path
    model: nn.Module | None  # the classifier on ``device`` (None when only reports are rebuilt)
    device: torch.device
    manifest: dict[str, Any] = field(default_factory=dict)  # entries added to manifest.json

    @property
    def settings(self) -> AuditSettings:
        """What the user asked for (``plan.settings``)."""
        return self.plan.settings


class AuditStep(Protocol):
    """A step that runs once per audit, on rank 0, after every input's work is stored.

    An optional step (one an option asks for, e.g. DICOM output) may also define
    ``problem(settings) -> str | None``, the first reason its options cannot run (checked by
    :func:`~medig.audit.run_audit` before anything is loaded), and
    ``console_lines(summary, settings) -> list[str]``, what ``medig audit`` prints about its
    output; a step that its options leave off does nothing and prints nothing.
    """

    def __call__(self, audit: FinishedAudit) -> None: ...


def write_rank_report(store: WorkStore, ctx: DistContext, run: str, sha_of: dict[str, str],
                      computed: int, seconds: float) -> None:
    """Record what this rank audited (file hashes, counts, time) for rank 0 to merge."""
    report = {"run": run, "rank": ctx.rank, "computed": computed, "inputs": len(sha_of),
              "seconds": round(seconds, 3), "sha256": sha_of}
    atomic_write(store.root / "ranks" / f"rank{ctx.rank}.json", json.dumps(report))


def _rank_report_problem(data: Any, run: str) -> str | None:
    """Why ``data`` is not a rank report of run ``run`` (see :func:`write_rank_report`)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("run") != run:
        return "not written by this run"
    hashes = data.get("sha256")
    if not isinstance(hashes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()):
        return "no file hashes"
    for name in ("rank", "inputs", "computed"):
        if not isinstance(data.get(name), int) or isinstance(data.get(name), bool):
            return f"no {name}"
    if not isinstance(data.get("seconds"), (int, float)):
        return "no seconds"
    return None


def read_rank_reports(store: WorkStore, run: str, world_size: int) -> list[dict[str, Any]]:
    """Every rank's report for run ``run``; names the first rank that did not report."""
    reports = []
    for r in range(world_size):
        path = store.root / "ranks" / f"rank{r}.json"
        try:
            data = read_json_file(path)
        except (FileNotFoundError, ValueError):
            data = None
        if _rank_report_problem(data, run):
            raise AuditError(f"rank {r} did not report for this run ({path})")
        reports.append(data)
    return reports


_Frame = tuple[AuditInput, dict[str, Any], str]  # (input, stored frame row, record key)


def frames_of(store: WorkStore, items: Sequence[AuditInput], key_of: dict[str, str],
              records: dict[str, dict[str, Any] | None] | None = None) -> list[_Frame]:
    """The explained frames of ``items``, in order, from their stored (or given) records
    (checked: see :func:`medig.audit.store.record_problem`)."""
    frames: list[_Frame] = []
    for it in items:
        record = records[it.rel] if records is not None else store.load(key_of[it.rel])
        if record is not None and record["status"] == "ok":
            frames.extend((it, row, key_of[it.rel]) for row in record["frames"]
                          if row.get("status", "ok") == "ok")
    return frames


def cohort_scale(store: WorkStore, frames: Sequence[_Frame],
                 settings: AuditSettings) -> float | None:
    """One colour scale for the whole audit, pooled from every image's quantile sketch (a frame
    whose arrays are damaged is left out and marked in ``store.damaged``)."""
    if settings.overlay_scale == "image":
        return None
    loaded = (store.load_arrays(k, fr.get("frame") or 0, "sketch") for _, fr, k in frames)
    return cohort_clip_value([a["sketch"] for a in loaded if a is not None], settings.percentile)


def _frame_name(it: AuditInput, frame_row: dict[str, Any]) -> tuple[str, str]:
    frame = frame_row.get("frame")
    return row_path(it.rel, frame), f"overlays/{output_name(it.rel, frame)}.png"


#: Where each baseline's own overlay goes when the audit averaged several (beside report.html).
BASELINE_OVERLAYS = "report_files/baselines"
_OWN_ARRAYS = ("baseline_maps", "baseline_scales", "baseline_names")


def baseline_folders(settings: AuditSettings) -> dict[str, str]:
    """Each baseline's overlay folder (relative to the output folder), by baseline name; empty
    when the audit used one baseline (its map is the averaged one)."""
    if len(settings.baselines) < 2:
        return {}
    return {str(b): f"{BASELINE_OVERLAYS}/{output_name(str(b).replace('/', '_'))}"
            for b in settings.baselines}


def _draw_overlays(out_dir: Path, store: WorkStore, frames: Sequence[_Frame],
                   settings: AuditSettings, cohort: float | None,
                   drawn: dict[str, Any]) -> dict[str, Any]:
    """Render the overlays not yet drawn from the same work at the same scale; returns the stamps.

    The stamps (record key, frame, scale) let a resumed audit, or rank 0 after the ranks drew
    their own shares, skip overlays that are already up to date. A frame whose arrays are damaged
    is not drawn (nor stamped) and is marked in ``store.damaged``. With several baselines, each
    one's own map is drawn too (the overlay only, at the same colour scale as the averaged one,
    under :func:`baseline_folders`); work stored without those maps gets none (stamped absent).
    """
    stamps: dict[str, Any] = {}
    folders = list(baseline_folders(settings).values())
    for it, frame_row, key in frames:
        frame = frame_row.get("frame")
        _name, rel_png = _frame_name(it, frame_row)
        stamp = [key, frame, settings.overlay_scale, cohort, settings.percentile]
        own = [f"{folder}/{output_name(it.rel, frame)}.png" for folder in folders]
        # "absent": the stored work has no per-baseline maps (an older medig stored it); checked
        # again only when that work is stored anew (its file's time changes)
        absent = [*stamp, "absent", _stored_at(store, key, frame)] if own else None

        def current(p: str, stamp: list[Any] = stamp, absent: Any = absent) -> bool:
            return (drawn.get(p) == stamp and (out_dir / p).is_file()
                    or absent is not None and drawn.get(p) == absent)

        stale = [p for p in [rel_png, *own] if not current(p)]
        lacking = False
        if stale:
            wanted = [p for p in own if p in stale]
            arrays = store.load_arrays(key, frame or 0, "image", "fov", "attr_map",
                                       "attr_scale", "clip",
                                       optional=_OWN_ARRAYS if wanted else ())
            if arrays is None:
                continue
            clip = float(arrays["clip"]) if cohort is None else cohort
            if rel_png in stale:
                _render_overlay(out_dir / rel_png, arrays, clip)
            if wanted:
                stored = [str(n) for n in arrays.get("baseline_names", ())]
                lacking = stored != [str(b) for b in settings.baselines]
                for k, p in enumerate(own):
                    if lacking:
                        (out_dir / p).unlink(missing_ok=True)
                    elif p in stale:
                        _render_own(out_dir / p, arrays, k, clip)
        stamps[rel_png] = stamp
        stamps.update({p: absent if lacking or drawn.get(p) == absent else stamp for p in own})
    return stamps


def _stored_at(store: WorkStore, key: str, frame: int | None) -> int | None:
    try:
        return store.array_path(key, frame or 0).stat().st_mtime_ns
    except OSError:
        return None


def _render_overlay(path: Path, arrays: dict[str, np.ndarray], clip: float) -> None:
    image = arrays["image"].astype(np.float32) / 255.0
    amap = arrays["attr_map"].astype(np.float32) * float(arrays["attr_scale"])
    picture = overlay(image, amap, arrays["fov"], clip)
    save_png(path, side_by_side(arrays["image"], picture))


def _render_own(path: Path, arrays: dict[str, np.ndarray], k: int, clip: float) -> None:
    """Baseline ``k``'s own map over the photograph: the overlay half only (the photograph is in
    ``overlays/``)."""
    amap = arrays["baseline_maps"][k:k + 1].astype(np.float32) * float(arrays["baseline_scales"][k])
    save_png(path, overlay(arrays["image"].astype(np.float32) / 255.0, amap, arrays["fov"], clip))


def _read_stamps(path: Path) -> dict[str, Any]:
    """Overlay stamps (``overlays.json`` or a rank's share): PNG path -> stamp list. Anything
    else is ignored with one warning: the overlays concerned are drawn again."""
    try:
        data = read_json_file(path)
    except FileNotFoundError:
        return {}
    except ValueError as error:
        _log.warning("ignoring %s: %s; overlays are drawn again", path, error)
        return {}
    if not isinstance(data, dict):
        _log.warning("ignoring %s: not a JSON object; overlays are drawn again", path)
        return {}
    return {k: v for k, v in data.items() if isinstance(v, list)}


def draw_own_overlays(out_dir: Path, settings: AuditSettings, items: Sequence[AuditInput],
                      key_of: dict[str, str], cohort: float | None, ctx: DistContext) -> None:
    """Under torchrun: each rank draws the overlays of its own inputs once the scale is known,
    so rank 0 does not render the whole cohort alone after the barrier."""
    store = WorkStore(out_dir)
    drawn = _read_stamps(store.root / "overlays.json")
    stamps = _draw_overlays(out_dir, store, frames_of(store, items, key_of), settings, cohort,
                            drawn)
    atomic_write(store.root / "ranks" / f"overlays-rank{ctx.rank}.json", json.dumps(stamps))


def _final_rows(items: Sequence[AuditInput], records: dict[str, dict[str, Any] | None],
                sha_of: dict[str, str]) -> list[ResultRow]:
    rows: list[ResultRow] = []
    for it in items:
        record = records[it.rel]
        if record is None:
            sha = None if sha_of[it.rel].startswith("unreadable-") else sha_of[it.rel]
            rows.append(error_row(row_path(it.rel), sha, "not audited (interrupted run?)"))
            continue
        if record["status"] != "ok":
            rows.append(error_row(row_path(it.rel), record["sha256"], printable(record["error"])))
            continue
        for frame_row in record["frames"]:
            name, rel_png = _frame_name(it, frame_row)
            # A stored frame row is a result row (JSON in the work store) and its frame index.
            row = cast(ResultRow, {k: v for k, v in frame_row.items() if k != "frame"})
            row.update({"path": name, "sha256": sha_of[it.rel],
                        "overlay": rel_png if row.get("status", "ok") == "ok" else None})
            rows.append(row)
    return rows


def finalise_audit(out_dir: Path, plan: AuditPlan, items: Sequence[AuditInput],
                   started: str, device: str, ctx: DistContext | None = None,
                   cohort: float | None = None, model: nn.Module | None = None,
                   steps: tuple[Sequence[AuditStep], Sequence[AuditStep]] = ((), ()),
                   store: WorkStore | None = None) -> AuditSummary:
    """Merge the stored work into overlays, ``results.*``, ``manifest.json``, ``report.pdf`` and
    ``report.html``.

    Parameters
    ----------
    plan : AuditPlan
        The audit's plan (as scheduled: its ``compile`` decided).
    cohort : float, optional
        The colour scale when the caller already pooled it (the distributed path).
    model : nn.Module, optional
        The audited classifier, for audit steps that need it.
    steps : (sequence, sequence) of AuditStep
        Audit steps run before the results and report are written, and after.
    store : WorkStore, optional
        The audit's work store (its ``damaged`` keys count too); default: the one in ``out_dir``.

    Raises
    ------
    DamagedWorkError
        Before any result is written, when stored arrays of some inputs are unusable (the
        records and overlays of the others are kept): compute those inputs again, then call
        this again.
    """
    ctx = ctx or DistContext()
    settings = plan.settings
    store = store or WorkStore(out_dir)
    reports = read_rank_reports(store, started, ctx.world_size)
    sha_of = {rel: s for rep in reports for rel, s in rep["sha256"].items()}
    key_of = {it.rel: record_key(sha_of[it.rel], plan.key()) for it in items}
    records = {it.rel: store.load(key_of[it.rel]) for it in items}  # each record read once
    frames = frames_of(store, items, key_of, records)
    if cohort is None:
        cohort = cohort_scale(store, frames, settings)

    # Overlays already drawn (by a previous run, or by the ranks) are not drawn again.
    drawn_path = store.root / "overlays.json"
    drawn = _read_stamps(drawn_path)
    if ctx.distributed:
        for r in range(ctx.world_size):
            drawn.update(_read_stamps(store.root / "ranks" / f"overlays-rank{r}.json"))
    drawn.update(_draw_overlays(out_dir, store, frames, settings, cohort, drawn))
    atomic_write(drawn_path, json.dumps(drawn))
    if store.damaged:  # nothing is written from damaged work: the caller recomputes it
        raise DamagedWorkError(store.damaged)

    rows = _final_rows(items, records, sha_of)
    audit = FinishedAudit(out_dir, plan, items, rows, store, key_of, model,
                          torch.device(device))
    folders = baseline_folders(settings)
    if folders:  # where the browser finds each baseline's own overlays
        audit.manifest["baseline_overlays"] = folders
    before, after = steps
    for step in before:
        step(audit)
    if store.damaged:  # a step found damaged arrays (load_arrays gave None)
        raise DamagedWorkError(store.damaged)
    write_results(out_dir, rows, plan.class_names)
    ok = [r for r in rows if r["status"] == "ok"]
    summary = AuditSummary(
        out_dir, total=len(rows), ok=len(ok),
        errors=sum(r["status"] == "error" for r in rows),
        flagged=sum(bool(r["flagged"]) for r in ok),
        mean_steps=float(np.mean([r["n_steps"] for r in ok])) if ok else None, rows=rows)
    write_manifest(
        out_dir, plan, started=started, status="complete", device=device,
        world_size=ctx.world_size, cohort_clip=cohort,
        counts={"total": summary.total, "ok": summary.ok, "error": summary.errors,
                "flagged": summary.flagged},
        ranks=[{k: rep[k] for k in ("rank", "inputs", "computed", "seconds")}
               for rep in reports],
        **audit.manifest)
    summary.report = build_report(out_dir, template=settings.template,
                                  include_phi=settings.include_phi)
    summary.html = build_html(out_dir, template=settings.template,
                              include_phi=settings.include_phi)
    for step in after:
        step(audit)
    return summary
