# SPDX-License-Identifier: Apache-2.0
"""Read each file in a child process under a time and memory limit; print one JSON line per file.

``python -m tests.fuzz.probe --seconds 20 --memory-mb 2048 FILE...``

The reader is imported once; each file is then read (:func:`medig.io.read_frames`, every frame) in
a forked child whose address space may grow by at most ``--memory-mb`` (``RLIMIT_AS``) and which
is killed after ``--seconds``. Each line holds ``path``, ``status`` (``ok``, ``error`` — an
``ImageReadError`` —, ``crash`` — any other exception or a signal —, ``memory``, ``timeout``),
``seconds``, ``extra_mb`` (the peak resident memory the read added, from the kernel's
high-water mark) and ``reason``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
import traceback


def _vm_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset this process's peak resident size to its current one (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _child(path: str, limit: int, out_fd: int) -> None:
    from medig.io import ImageReadError, read_frames

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    start_kb = _vm_kb("VmRSS") if _reset_peak() else None
    try:
        frames = read_frames(path)
        result = {"status": "ok", "reason": f"{len(frames)} frame(s)"}
    except ImageReadError as error:
        result = {"status": "error", "reason": error.reason}
    except MemoryError:
        result = {"status": "memory", "reason": "MemoryError"}
    except BaseException as error:  # noqa: BLE001 - what the property forbids
        lines = traceback.format_exception(type(error), error, error.__traceback__)
        result = {"status": "crash", "reason": "".join(lines)[-1500:]}
    if start_kb is not None:  # the peak this read added, measured by the kernel
        result["extra_mb"] = round(max(0, _vm_kb("VmHWM") - start_kb) / 1024, 1)
    os.write(out_fd, json.dumps(result).encode())
    os.close(out_fd)


def probe(path: str, seconds: float, memory_mb: int) -> dict:
    limit = _vm_kb("VmSize") * 1024 + memory_mb * (1 << 20)
    rss_before = _vm_kb("VmRSS") / 1024
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            _child(path, limit, write_fd)
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    os.close(write_fd)
    status = None
    while True:
        done, wait_status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            status = wait_status
            break
        if time.monotonic() - start > seconds:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            status = None
            break
        time.sleep(0.005)
    elapsed = time.monotonic() - start
    with os.fdopen(read_fd, "rb") as fh:
        payload = fh.read()
    if status is None:
        result = {"status": "timeout", "reason": f"killed after {seconds:g} s"}
    elif payload:
        result = json.loads(payload)
    elif os.WIFSIGNALED(status):
        result = {"status": "crash", "reason": f"killed by signal {os.WTERMSIG(status)}"}
    else:
        result = {"status": "crash", "reason": f"exit status {os.waitstatus_to_exitcode(status)}"}
    result.setdefault("extra_mb", round(max(0.0, usage.ru_maxrss / 1024 - rss_before), 1))
    result.update(path=path, seconds=round(elapsed, 3))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="*")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--list", help="read the file names from this file (one per line, "
                                       "as os.fsencode bytes in hex)")
    args = parser.parse_args(argv)
    files = list(args.files)
    if args.list:
        with open(args.list) as fh:
            files += [os.fsdecode(bytes.fromhex(line.strip())) for line in fh if line.strip()]
    # Imported once, before the children fork (torchvision checks JPEG streams for truncation).
    import torchvision.io  # noqa: F401

    import medig.io  # noqa: F401

    for path in files:
        print(json.dumps(probe(path, args.seconds, args.memory_mb)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
