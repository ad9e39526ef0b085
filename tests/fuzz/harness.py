# SPDX-License-Identifier: Apache-2.0
"""The fuzz property, checked on a folder of hostile files, with every output option on.

For every file: the reader, alone in a child process, ends with an image or an
``ImageReadError`` (no other exception, no signal) within 20 s and 2 GB more memory
(:mod:`tests.fuzz.probe`). Then one ``medig audit`` over the whole folder (run through
:mod:`tests.fuzz.trace`, which records the steps that ran), with ``--per-study --dicom-out
--include-phi --save-attributions --masks DIR --send`` to a local storage SCP, and ``medig report``
on its output:

- the audit exits 0, 3 or 4 (the documented "finished" codes) with no traceback on stderr;
- each file gets exactly one row (one per frame for a multi-frame file that was read), there is no
  row for anything else, and no row says a step failed ("could not be audited: ...": an
  exception inside medig, not a property of the file);
- every DICOM object under ``dicom/`` reached the SCP exactly once (no SOP Instance UID twice),
  the SCP received nothing else, and ``dicom/sent.jsonl`` acknowledges each exactly once;
- ``medig report DIR`` exits 0 with no traceback;
- the same command again, its clock a day later and two saved attribution files exchanged, gives
  the same rows, repairs the attribution files and sends nothing (re-runs add nothing to the
  PACS), and ``medig report`` still exits 0.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SECONDS_PER_FILE = 20.0
MEMORY_MB = 2048
TINY = "tests.audit.tiny_models:make_tiny"
AUDIT_ARGS = ["--model", TINY, "--classes", "healthy", "referable", "--size", "64",
              "--batch-size", "4", "--baseline", "black", "--max-steps", "32", "--threads", "1",
              "--quiet"]
#: Every output option but the two that take a value (``--masks DIR``, ``--send AET@HOST:PORT``).
FULL_OPTIONS = ["--per-study", "--dicom-out", "--include-phi", "--save-attributions"]
FINISHED = (0, 3, 4)  # every input audited / some files failed / some objects not sent
RERUN_LATER_S = 90_061.0  # re-runs happen a day, an hour, a minute and a second later
_INTERNAL_ERROR = "could not be audited"  # the reason of a row whose step raised

__all__ = ["FINISHED", "FULL_OPTIONS", "AuditRun", "FuzzReport", "audit_run", "check_folder",
           "dicom_uids", "pacs_violations", "probe_files", "report_run", "sent_acknowledgements"]


@dataclass
class AuditRun:
    """One traced ``medig audit``: exit code, output, rows and what it did."""

    code: int
    stdout: str
    stderr: str
    rows: list[dict[str, Any]]
    seconds: float
    peak_mb: float
    called: set[str]  # steps whose __call__ ran (see tests.fuzz.trace)
    steps: set[str]  # steps that acted (did more than read their options)
    received: list[str]  # SOP Instance UIDs the SCP received during this run, in order


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
    called: set[str] = field(default_factory=set)  # steps called, and steps that acted
    steps: set[str] = field(default_factory=set)
    received: list[str] = field(default_factory=list)
    report_code: int | None = None
    report_stderr: str = ""
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


# Measured: an audit with 2 workers peaks at 4.9 GB of address space (torch's CUDA build).
_BASE_VM_MB = 5120


def _address_space_limit(memory_mb: int) -> None:
    limit = (_BASE_VM_MB + memory_mb) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def audit_run(folder: Path, out: Path, workers: int = 2, options: Sequence[str] = (),
              scp: Any = None, memory_mb: int = MEMORY_MB, clock_shift_s: float = 0.0) -> AuditRun:
    """``medig audit folder --out out [options] [--send scp]`` in a child process, traced.

    ``scp`` is a :class:`tests.pacs.conftest.StorageSCP` (``--send`` goes to it); ``received``
    holds what it got while this audit ran. ``clock_shift_s`` runs the audit's clock ahead (a
    re-run on a later day).
    """
    entries = len(_entries(folder))
    send = ["--send", scp.destination] if scp is not None else []
    with tempfile.TemporaryDirectory(prefix="medig-steps-") as scratch:
        log = Path(scratch) / "steps.log"
        shift = ["--clock-shift", str(clock_shift_s)] if clock_shift_s else []
        cmd = [sys.executable, "-m", "tests.fuzz.trace", str(log), *shift, "audit", str(folder),
               "--out", str(out), "--workers", str(workers), *AUDIT_ARGS, *options, *send]
        before_received = len(scp.received) if scp is not None else 0
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.monotonic()
        done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True,
                              timeout=300 + entries * SECONDS_PER_FILE,
                              preexec_fn=lambda: _address_space_limit(memory_mb))
        seconds = time.monotonic() - start
        from tests.fuzz.trace import read_log

        called, steps = read_log(log)
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    received = list(scp.received[before_received:]) if scp is not None else []
    return AuditRun(done.returncode, done.stdout.decode(errors="replace"),
                    done.stderr.decode(errors="replace"), read_rows(out), seconds, peak, called,
                    steps, received)


def read_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of ``out/results.jsonl`` (none if it is missing or unreadable)."""
    results = out / "results.jsonl"
    if not results.is_file():
        return []
    from medig.audit import read_results

    try:
        return read_results(results)
    except (ValueError, OSError):  # tampered: the checks name it
        return []


def report_run(out: Path) -> tuple[int, str]:
    """``medig report out``: (exit code, stderr)."""
    done = subprocess.run([sys.executable, "-m", "medig", "report", str(out)], cwd=ROOT,
                          env=_env(), capture_output=True, timeout=300)
    return done.returncode, done.stderr.decode(errors="replace")


def dicom_uids(out: Path) -> dict[str, str]:
    """SOP Instance UID of every DICOM object under ``out/dicom/``, by path relative to it."""
    import pydicom

    folder = out / "dicom"
    uids = {}
    for path in sorted(folder.rglob("*.dcm")) if folder.is_dir() else ():
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        uids[path.relative_to(folder).as_posix()] = str(ds.SOPInstanceUID)
    return uids


def sent_acknowledgements(out: Path, destination: str) -> Counter:
    """How often ``dicom/sent.jsonl`` acknowledges each UID for ``destination`` (lines that are
    not JSON objects are skipped, as a reader of a log cut by a crash must)."""
    log = out / "dicom" / "sent.jsonl"
    acks: Counter = Counter()
    if not log.is_file():
        return acks
    for line in log.read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if (isinstance(entry, dict) and entry.get("destination") == destination
                and entry.get("status") == "acknowledged"):
            acks[str(entry.get("sop_instance_uid"))] += 1
    return acks


def pacs_violations(out: Path, scp: Any, expected_uids: set[str] | None = None) -> list[str]:
    """Every object under ``out/dicom/`` reached ``scp`` exactly once, the SCP got nothing else
    (``expected_uids``: what it must hold, default the objects now in ``out``), and
    ``sent.jsonl`` acknowledges each object exactly once."""
    problems = []
    objects = dicom_uids(out)
    uids = set(objects.values())
    if len(uids) != len(objects):
        problems.append(f"two DICOM objects share a SOP Instance UID: {sorted(objects)}")
    counts = Counter(scp.received)
    twice = sorted(u for u, n in counts.items() if n > 1)
    if twice:
        problems.append(f"the SCP received {len(twice)} SOP Instance UID(s) more than once: "
                        f"{twice[:3]}")
    want = uids if expected_uids is None else expected_uids
    if set(counts) != want:
        problems.append(f"the SCP holds {len(counts)} instance(s), expected {len(want)}: "
                        f"{len(set(counts) - want)} unexpected, {len(want - set(counts))} missing")
    acks = sent_acknowledgements(out, scp.destination)
    wrong = {rel: acks.get(uid, 0) for rel, uid in objects.items() if acks.get(uid, 0) != 1}
    if wrong:
        problems.append(f"sent.jsonl does not acknowledge each object exactly once: "
                        f"{dict(list(wrong.items())[:3])}")
    return problems


def row_differences(base: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """How ``rows`` differ from ``base``, field by field (empty when equal)."""
    want = {r["path"]: r for r in base}
    got = {r["path"]: r for r in rows}
    problems = []
    if set(want) != set(got):
        problems.append(f"rows for other paths: missing {sorted(set(want) - set(got))[:3]}, "
                        f"extra {sorted(set(got) - set(want))[:3]}")
    for path in sorted(set(want) & set(got)):
        fields = sorted(k for k in set(want[path]) | set(got[path])
                        if want[path].get(k) != got[path].get(k))
        if fields:
            changes = [f"{k}: {want[path].get(k)!r} -> {got[path].get(k)!r}" for k in fields[:4]]
            problems.append(f"{path}: {', '.join(changes)}")
    return problems


def overlay_files(out: Path) -> dict[str, bytes]:
    """The bytes of every overlay PNG, by name."""
    folder = out / "overlays"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))} if folder.is_dir() \
        else {}


def attribution_arrays(out: Path) -> dict[str, dict[str, Any]]:
    """The arrays of every ``attributions/*.npz``, by name."""
    folder = out / "attributions"
    found = {}
    for p in sorted(folder.glob("*.npz")) if folder.is_dir() else ():
        with np.load(p) as z:
            found[p.name] = {k: z[k] for k in z.files}
    return found


def same_attributions(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> bool:
    """Whether two :func:`attribution_arrays` hold the same files with equal arrays."""
    return set(a) == set(b) and all(
        set(a[n]) == set(b[n]) and all(np.array_equal(a[n][k], b[n][k]) for k in a[n]) for n in a)


def has_traceback(stderr: str) -> bool:
    return "Traceback (most recent call last)" in stderr


def check_folder(folder: Path, out: Path, workers: int = 2, masks: Path | None = None,
                 scp: Any = None, full: bool = True, rerun: bool = True) -> FuzzReport:
    """Check the fuzz property on every entry of ``folder`` (see the module docstring).

    ``full`` turns on every output option (and ``--masks masks``, ``--send`` to ``scp`` when
    given); ``full=False`` is the plain audit. ``rerun`` (with ``full``) runs the command again
    and checks the re-run property.
    """
    from medig.audit.store import parse_row_path

    entries = _entries(folder)
    report = FuzzReport(files=len(entries))
    regular = [p for p in entries if p.is_file() and not p.is_symlink()]
    report.probes = probe_files(regular)
    read_ok = set()
    for probe in report.probes:
        name = Path(probe["path"]).name
        if probe["status"] not in ("ok", "error"):
            report.violations.append(f"{name}: reader {probe['status']}: {probe['reason']}")
        elif probe["seconds"] > SECONDS_PER_FILE:
            report.violations.append(f"{name}: read took {probe['seconds']} s")
        if probe["status"] == "ok":
            read_ok.add(name)
    options = [*FULL_OPTIONS, *(["--masks", str(masks)] if masks else [])] if full else []
    run = audit_run(folder, out, workers, options, scp if full else None)
    report.exit_code, report.stderr, report.rows = run.code, run.stderr, run.rows
    report.audit_seconds, report.audit_peak_mb = run.seconds, run.peak_mb
    report.called, report.steps, report.received = run.called, run.steps, run.received
    if run.code not in FINISHED:
        report.violations.append(f"audit exit code {run.code}: {run.stderr[-2000:]}")
    if has_traceback(run.stderr):
        report.violations.append(f"traceback on stderr: {run.stderr[-2000:]}")
    by_file: dict[str, list[dict[str, Any]]] = {}
    names = {p.name for p in entries} if run.rows else set()
    if not run.rows:
        report.violations.append(f"no rows: {out / 'results.jsonl'} is missing or empty")
    for row in run.rows:
        rel, frame = parse_row_path(row["path"].rstrip("/"))
        by_file.setdefault(rel, []).append({**row, "_frame": frame})
        if rel not in names:
            report.violations.append(f"row for an unknown path {row['path']!r}")
        if row["status"] == "error" and str(row.get("error")).startswith(_INTERNAL_ERROR):
            report.violations.append(f"{row['path']!r}: a step failed: {row['error']}")
    for name in names:
        got = by_file.get(name, [])
        label = repr(name)
        if not got:
            report.violations.append(f"{label}: no row")
        elif len(got) > 1 and any(r["_frame"] is None for r in got):
            report.violations.append(f"{label}: {len(got)} rows")  # only frames come in many
        elif len({r["_frame"] for r in got}) != len(got):
            report.violations.append(f"{label}: duplicate frame rows")
        elif name in read_ok and any(r["status"] == "error" for r in got):
            report.violations.append(f"{label}: read alone, but the audit gives an error row: "
                                     f"{got[0].get('error')}")
    if full:
        if scp is not None:
            report.violations += pacs_violations(out, scp)
        report.report_code, report.report_stderr = report_run(out)
        if report.report_code != 0 or has_traceback(report.report_stderr):
            report.violations.append(f"medig report exit code {report.report_code}: "
                                     f"{report.report_stderr[-2000:]}")
        if rerun and run.rows:
            report.violations += _rerun(folder, out, workers, options, scp, run, report)
    return report


def _swap_attributions(out: Path) -> list[str]:
    """Exchange the first two ``attributions/*.npz`` that differ; returns their names."""
    files = sorted((out / "attributions").glob("*.npz")) if (out / "attributions").is_dir() \
        else []
    for a, b in zip(files, files[1:]):
        data_a, data_b = a.read_bytes(), b.read_bytes()
        if data_a != data_b:
            a.write_bytes(data_b)
            b.write_bytes(data_a)
            return [a.name, b.name]
    return []


def _rerun(folder: Path, out: Path, workers: int, options: list[str], scp: Any, first: AuditRun,
           report: FuzzReport) -> list[str]:
    """The same command again, a day later, after two saved attribution files were exchanged
    (as a user's copy or a sync tool might): the same rows and attributions, nothing sent."""
    before = attribution_arrays(out)
    swapped = _swap_attributions(out)
    run = audit_run(folder, out, workers, options, scp, clock_shift_s=RERUN_LATER_S)
    report.called |= run.called
    report.steps |= run.steps
    problems = []
    if run.code not in FINISHED or has_traceback(run.stderr):
        return [f"re-run exit code {run.code}: {run.stderr[-2000:]}"]
    problems += [f"re-run row {p}" for p in row_differences(first.rows, run.rows)]
    if not same_attributions(attribution_arrays(out), before):
        problems.append(f"re-run: attributions differ from the first run's (swapped: {swapped})")
    if run.received:
        problems.append(f"re-run sent {len(run.received)} object(s) again or anew: "
                        f"{run.received[:3]}")
    if scp is not None:
        problems += [f"re-run: {p}" for p in pacs_violations(out, scp)]
    code, stderr = report_run(out)
    if code != 0 or has_traceback(stderr):
        problems.append(f"medig report after the re-run: exit code {code}: {stderr[-2000:]}")
    return problems
