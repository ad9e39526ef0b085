# SPDX-License-Identifier: Apache-2.0
"""The fuzz property, checked on a folder of hostile files.

For every file: the reader, alone in a child process, ends with an image or an
``ImageReadError`` (no other exception, no signal) within 20 s and 2 GB more memory
(:mod:`tests.fuzz.probe`); and one ``medig audit`` over the whole folder exits 0 or 3 with no
traceback on stderr and gives each file exactly one row (one per frame for a multi-frame file
that was read), with no row for anything else.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SECONDS_PER_FILE = 20.0
MEMORY_MB = 2048
TINY = "tests.audit.tiny_models:make_tiny"
AUDIT_ARGS = ["--model", TINY, "--classes", "healthy", "referable", "--size", "64",
              "--batch-size", "4", "--baseline", "black", "--max-steps", "32", "--threads", "1",
              "--quiet"]

__all__ = ["FuzzReport", "audit_folder", "check_folder", "probe_files"]


@dataclass
class FuzzReport:
    """What a run found; ``violations`` is empty when the property holds."""

    files: int = 0
    probes: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    audit_seconds: float = 0.0
    audit_peak_mb: float = 0.0
    stderr: str = ""
    violations: list[str] = field(default_factory=list)

    @property
    def max_seconds(self) -> float:
        return max((p["seconds"] for p in self.probes), default=0.0)

    @property
    def max_extra_mb(self) -> float:
        return max((p["extra_mb"] for p in self.probes), default=0.0)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir(), key=lambda p: os.fsencode(p.name))


def probe_files(files: list[Path], seconds: float = SECONDS_PER_FILE,
                memory_mb: int = MEMORY_MB) -> list[dict[str, Any]]:
    """Run :mod:`tests.fuzz.probe` over ``files`` (regular files only)."""
    listing = Path(os.fsdecode(os.fsencode(files[0].parent))) / ".probe-list" if files else None
    if listing is None:
        return []
    listing.write_text("".join(os.fsencode(p).hex() + "\n" for p in files))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.fuzz.probe", "--seconds", str(seconds),
             "--memory-mb", str(memory_mb), "--list", str(listing)],
            cwd=ROOT, env=_env(), capture_output=True, timeout=120 + len(files) * (seconds + 2))
    finally:
        listing.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"probe failed: {done.stderr.decode(errors='replace')[-3000:]}")
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


def audit_folder(folder: Path, out: Path, workers: int = 2,
                 memory_mb: int = MEMORY_MB) -> tuple[int, str, list[dict[str, Any]], float, float]:
    """``medig audit folder --out out`` in a child process; returns (exit code, stderr, rows,
    seconds, peak resident MB of the audit and its workers)."""
    entries = len(_entries(folder))
    cmd = [sys.executable, "-m", "medig", "audit", str(folder), "--out", str(out),
           "--workers", str(workers), *AUDIT_ARGS]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True,
                          timeout=300 + entries * SECONDS_PER_FILE,
                          preexec_fn=lambda: _address_space_limit(memory_mb))
    seconds = time.monotonic() - start
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    results = out / "results.jsonl"
    rows = []
    if results.is_file():
        from medig.audit import read_results

        rows = read_results(results)
    return done.returncode, done.stderr.decode(errors="replace"), rows, seconds, peak


# Measured: an audit with 2 workers peaks at 4.9 GB of address space (torch's CUDA build).
_BASE_VM_MB = 5120


def _address_space_limit(memory_mb: int) -> None:
    limit = (_BASE_VM_MB + memory_mb) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def check_folder(folder: Path, out: Path, workers: int = 2,
                 expected: dict[str, Any] | None = None) -> FuzzReport:
    """Check the fuzz property on every entry of ``folder`` (see the module docstring)."""
    from medig.audit.store import parse_row_path

    entries = _entries(folder)
    report = FuzzReport(files=len(entries))
    regular = [p for p in entries if p.is_file() and not p.is_symlink()]
    report.probes = probe_files(regular)
    for probe in report.probes:
        name = Path(probe["path"]).name
        if probe["status"] not in ("ok", "error"):
            report.violations.append(f"{name}: reader {probe['status']}: {probe['reason']}")
        elif probe["seconds"] > SECONDS_PER_FILE:
            report.violations.append(f"{name}: read took {probe['seconds']} s")
    code, stderr, rows, seconds, peak = audit_folder(folder, out, workers)
    report.exit_code, report.stderr, report.rows = code, stderr, rows
    report.audit_seconds, report.audit_peak_mb = seconds, peak
    if code not in (0, 3):
        report.violations.append(f"audit exit code {code}: {stderr[-2000:]}")
    if "Traceback" in stderr:
        report.violations.append(f"traceback on stderr: {stderr[-2000:]}")
    by_file: dict[str, list[dict[str, Any]]] = {}
    names = {p.name for p in entries}
    for row in rows:
        rel, frame = parse_row_path(row["path"].rstrip("/"))
        by_file.setdefault(rel, []).append({**row, "_frame": frame})
        if rel not in names:
            report.violations.append(f"row for an unknown path {row['path']!r}")
    for name in names:
        got = by_file.get(name, [])
        label = repr(name)
        if not got:
            report.violations.append(f"{label}: no row")
        elif len(got) > 1 and any(r["_frame"] is None for r in got):
            report.violations.append(f"{label}: {len(got)} rows")  # only frames come in many
        elif len({r["_frame"] for r in got}) != len(got):
            report.violations.append(f"{label}: duplicate frame rows")
    return report
