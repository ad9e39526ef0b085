# SPDX-License-Identifier: Apache-2.0
"""Decoder messages are silenced, and the real stderr is always given back."""
from __future__ import annotations

import logging
import os
import threading
import time

from PIL import ImageFile

from medig.io._quiet import captured_stderr, quiet


def test_captured_stderr_catches_c_level_output_and_restores_fd2():
    before = os.fstat(2)
    with captured_stderr() as messages:
        os.write(2, b"Corrupt JPEG data: premature end of data segment\n")
    assert "premature end" in messages[0]
    after = os.fstat(2)
    assert (before.st_ino, before.st_dev) == (after.st_ino, after.st_dev)


def test_overlapping_captures_in_two_threads_stay_apart_and_restore_fd2():
    # fd 2 is one per process. Unserialised, B's redirect would swallow A's message and leave
    # fd 2 pointing at A's temporary file after both blocks end.
    before = os.fstat(2)
    a_inside, b_trying, a_done = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, list[str]] = {}

    def a() -> None:
        with captured_stderr() as messages:
            a_inside.set()
            b_trying.wait(5)
            time.sleep(0.2)  # B is now trying to capture too
            os.write(2, b"from A\n")
        a_done.set()
        seen["a"] = messages

    def b() -> None:
        a_inside.wait(5)
        b_trying.set()
        with captured_stderr() as messages:
            a_done.wait(5)  # A's block ends while B's is open (unless B had to wait for it)
            os.write(2, b"from B\n")
        seen["b"] = messages

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["a"] == ["from A\n"] and seen["b"] == ["from B\n"]
    after = os.fstat(2)
    assert (before.st_ino, before.st_dev) == (after.st_ino, after.st_dev)


def test_quiet_silences_child_loggers_and_restores_them(caplog):
    caplog.set_level(logging.DEBUG)
    child = logging.getLogger("pydicom.pixels.decoders.base")
    new_child = "pydicom.some.module.created.during.the.read"
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with quiet():
            child.error("a decoder traceback quoting Doe^Jane")
            logging.getLogger(new_child).warning("created inside the block")
            assert ImageFile.LOAD_TRUNCATED_IMAGES is False
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert not caplog.records
    child.error("after the block")
    assert [r.getMessage() for r in caplog.records] == ["after the block"]
