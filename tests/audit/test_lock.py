# SPDX-License-Identifier: Apache-2.0
"""One audit per output folder, and a one-line error for an output folder that cannot be used."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medig.audit.errors import AuditError
from medig.audit.lock import OutputLock, OutputLockedError, lock_path
from medig.cli import EXIT_FAILED, main
from tests.audit.conftest import TINY, make_audit_folder

BASE = ["--model", TINY, "--classes", "healthy", "referable", "--size", "64",
        "--batch-size", "4", "--workers", "0", "--quiet", "--baseline", "black"]


def test_second_lock_on_the_same_folder_is_refused_and_names_the_holder(tmp_path):
    with OutputLock(tmp_path / "out"):
        holder = f"in use by another medig audit .pid {os.getpid()}"
        with pytest.raises(OutputLockedError, match=holder):
            OutputLock(tmp_path / "out").acquire()
        assert lock_path(tmp_path / "out").is_file()
    with OutputLock(tmp_path / "out") as again:  # released: free again
        assert again.held


def test_lock_of_a_killed_holder_is_released(tmp_path):
    # Another process holds the flock (plain fcntl, so the child starts in milliseconds).
    path = lock_path(tmp_path)
    path.parent.mkdir(parents=True)
    code = ("import fcntl, sys, time\nf = open(sys.argv[1], 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError):
            OutputLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    OutputLock(tmp_path).acquire().release()


def test_concurrent_audit_on_the_same_out_refuses_before_any_work(tmp_path, capsys):
    folder = make_audit_folder(tmp_path / "in", n=2, seed=4)
    out = tmp_path / "out"
    with OutputLock(out):  # another audit is running on this folder
        assert main(["audit", str(folder), "--out", str(out), *BASE]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("medig: error: --out") and "in use by another medig audit" in err
    assert not (out / "results.jsonl").exists() and not (out / ".medig" / "records").exists()


def test_forced_reaudit_keeps_the_lock_file(tmp_path):
    from medig.audit.pipeline import _clear_previous_audit

    with OutputLock(tmp_path) as lock:
        for name in ("records/k.json", "arrays/k-0.npz", "overlays.json"):
            (tmp_path / ".medig" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / ".medig" / name).write_text("x")
        _clear_previous_audit(tmp_path)
        assert [p.name for p in (tmp_path / ".medig").iterdir()] == ["lock"]
        assert lock.held  # a second audit could otherwise lock a new file meanwhile
        with pytest.raises(OutputLockedError):
            OutputLock(tmp_path).acquire()


def _immutable(folder: Path) -> bool:
    """Make ``folder`` unwritable even for root (chattr +i), or by permissions for other users."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        return True
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    return done.returncode == 0


def test_unusable_out_is_one_line_not_a_traceback(tmp_path, capsys):
    # An exception escaping main() is what printed the traceback; here it would fail the test.
    image = make_audit_folder(tmp_path / "in", n=1, seed=2) / "a.jpg"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    cases = [(a_file, "is a file"), (a_file / "sub", "is under a file")]
    if _immutable(readonly):
        cases.append((readonly / "out", "not writable"))
    try:
        for out, message in cases:
            assert main(["audit", str(image), "--out", str(out), *BASE]) == EXIT_FAILED
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("medig: error: --out"), lines
            assert message in lines[0]
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(readonly)], capture_output=True)
        readonly.chmod(0o755)


def test_other_file_system_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import medig.audit.pipeline as pipeline

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "x"))

    monkeypatch.setattr(pipeline, "collect_inputs", disk_full)
    assert main(["audit", str(tmp_path), "--out", str(tmp_path / "out"), *BASE]) == EXIT_FAILED
    err = capsys.readouterr().err.strip()
    assert err == f"medig: error: {tmp_path / 'out' / 'x'}: No space left on device"


def test_folder_errors_from_the_lock(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(AuditError, match="is a file"):
        OutputLock(tmp_path / "f").acquire()
    with pytest.raises(AuditError, match=r"is under a file"):
        OutputLock(tmp_path / "f" / "deeper" / "out").acquire()
