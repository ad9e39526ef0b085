# SPDX-License-Identifier: Apache-2.0
"""``manifest.json``: everything needed to reproduce an audit and compare it with another."""
from __future__ import annotations

import datetime
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

from medig.audit.plan import AuditPlan
from medig.report.data import check_manifest
from medig.utils import atomic_write, read_json_file

__all__ = ["read_manifest", "versions", "write_manifest"]

log = logging.getLogger("medig")

def versions() -> dict[str, str]:
    """Versions of medig and the libraries whose code computes the numbers."""
    import captum
    import torch

    import medig

    found = {"medig": medig.__version__, "torch": torch.__version__,
             "captum": captum.__version__, "python": platform.python_version()}
    try:
        from importlib.metadata import version

        found["monai"] = version("monai")
    except Exception:  # noqa: BLE001 - monai is optional at run time
        found["monai"] = "not installed"
    return found


def read_manifest(out_dir: str | os.PathLike, warn: bool = True) -> dict[str, Any] | None:
    """The manifest of a previous audit in ``out_dir``, checked as the report checks it
    (:func:`medig.report.data.check_manifest`); None when it is missing, unreadable or not a JSON
    object (with one warning line if ``warn``)."""
    path = Path(out_dir) / "manifest.json"
    try:
        data = read_json_file(path)
    except FileNotFoundError:
        return None
    except ValueError as error:
        problems, manifest = [str(error)], None
    else:
        manifest, problems = check_manifest(data)
    if problems and warn:
        what = f"parts of {path}" if manifest is not None else str(path)
        log.warning("ignoring %s: %s", what, "; ".join(problems))
    return manifest


def _is_time(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(datetime.datetime.fromisoformat(value))
    except ValueError:
        return False


def write_manifest(out_dir: str | os.PathLike, plan: AuditPlan, *, started: str,
                   status: str, device: str, world_size: int = 1,
                   first_started: str | None = None, **extra: Any) -> Path:
    """Write ``manifest.json`` atomically.

    ``status`` is ``"running"`` while the audit works (so a resumed run can check its settings)
    and ``"complete"`` at the end, with the counts, the cohort colour scale and per-rank times.
    ``settings`` records the values in effect (:meth:`AuditPlan.settings_dict`). ``started`` is
    this run's start; ``first_started`` the start of the audit's first run with the same settings,
    kept by every re-run (what the study pages and DICOM objects are dated): the value given
    (the work store's copy, which survives a damaged manifest), else the previous manifest's.
    """
    settings = plan.settings
    finished = (datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                if status == "complete" else None)
    previous = read_manifest(out_dir, warn=False)  # damage was said when the audit began
    first = first_started if _is_time(first_started) else None
    if first is None and isinstance(previous, dict) and previous.get("settings_key") == plan.key():
        first = previous.get("first_started") or previous.get("started")
    manifest = {
        "status": status,
        "versions": versions(),
        "model": {"spec": settings.model, "weights": settings.weights and
                  os.path.basename(settings.weights),
                  "weights_sha256": plan.weights_sha256,
                  "class_names": list(plan.class_names), "input_size": plan.size},
        "output": settings.output,
        "settings": plan.settings_dict(),
        "settings_key": plan.key(),
        "device": device,
        "world_size": world_size,
        "started": started,
        "first_started": first if _is_time(first) else started,
        "finished": finished,
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpus": os.cpu_count()},
        **extra,
    }
    path = Path(out_dir) / "manifest.json"
    atomic_write(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return path
