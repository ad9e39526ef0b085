# SPDX-License-Identifier: Apache-2.0
"""``manifest.json``: everything needed to reproduce an audit and compare it with another."""
from __future__ import annotations

import datetime
import json
import logging
import math
import os
import platform
from pathlib import Path
from typing import Any

from medig.audit.settings import AuditSettings
from medig.audit.store import read_json_file
from medig.utils import atomic_write

__all__ = ["check_manifest", "manifest_counts", "read_manifest", "versions", "write_manifest"]

log = logging.getLogger("medig")

_NONE = type(None)
#: Types of the entries that readers of ``manifest.json`` rely on; an entry of another type is
#: dropped when the manifest is read (other entries pass as they are).
MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,), "versions": (dict,), "model": (dict,), "output": (str, _NONE),
    "settings": (dict,), "settings_key": (str,), "device": (str,), "world_size": (int,),
    "started": (str, _NONE), "finished": (str, _NONE), "machine": (dict,),
    "cohort_clip": (int, float, _NONE), "counts": (dict,), "ranks": (list,),
    "target": (dict,), "model_metadata": (dict,), "quality": (dict,), "trust_checks": (dict,),
    "completeness_rule": (str,),
}
#: The counts of a complete audit's rows (see :func:`manifest_counts`).
COUNT_NAMES = ("total", "ok", "error", "flagged")


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


def _entry_ok(name: str, value: Any) -> bool:
    types = MANIFEST_TYPES.get(name)
    if types is None:
        return True
    if isinstance(value, bool) and bool not in types:  # JSON true is no number here
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if name == "counts":
        return manifest_counts({"counts": value}) is not None
    return isinstance(value, types)


def manifest_counts(manifest: dict[str, Any]) -> dict[str, int] | None:
    """The row counts of a complete audit (``total``, ``ok``, ``error``, ``flagged``, each an
    integer >= 0), or None when the manifest has none or they are not such integers."""
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        return None
    values = {k: counts.get(k) for k in COUNT_NAMES}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
               for v in values.values()):
        return None
    return values  # type: ignore[return-value]


def check_manifest(data: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """``data`` (a parsed ``manifest.json``) with every entry of the wrong type dropped, and one
    problem per entry dropped; ``(None, [why])`` when it is not a JSON object."""
    if not isinstance(data, dict):
        return None, ["it does not hold a JSON object"]
    good = {k: v for k, v in data.items() if _entry_ok(k, v)}
    problems = [f"{k!r} is not {' or '.join(t.__name__ for t in MANIFEST_TYPES[k])}"
                for k in data if k not in good]
    return good, problems


def read_manifest(out_dir: str | os.PathLike, warn: bool = True) -> dict[str, Any] | None:
    """The manifest of a previous audit in ``out_dir``, checked (:func:`check_manifest`); None
    when it is missing, unreadable or not a JSON object (with one warning line if ``warn``)."""
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


def write_manifest(out_dir: str | os.PathLike, settings: AuditSettings, *, started: str,
                   status: str, device: str, world_size: int = 1, **extra: Any) -> Path:
    """Write ``manifest.json`` atomically.

    ``status`` is ``"running"`` while the audit works (so a resumed run can check its settings)
    and ``"complete"`` at the end, with the counts, the cohort colour scale and per-rank times.
    """
    finished = (datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                if status == "complete" else None)
    manifest = {
        "status": status,
        "versions": versions(),
        "model": {"spec": settings.model, "weights": settings.weights and
                  os.path.basename(settings.weights),
                  "weights_sha256": settings.weights_sha256,
                  "class_names": settings.class_names, "input_size": settings.size},
        "output": settings.output,
        "settings": settings.to_dict(),
        "settings_key": settings.key(),
        "device": device,
        "world_size": world_size,
        "started": started,
        "finished": finished,
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpus": os.cpu_count()},
        **extra,
    }
    path = Path(out_dir) / "manifest.json"
    atomic_write(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return path
