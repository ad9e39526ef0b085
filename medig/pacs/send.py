# SPDX-License-Identifier: Apache-2.0
"""``--send AET@HOST:PORT``: C-STORE the audit's DICOM objects to a PACS with pynetdicom.

Every outcome is appended to ``dicom/sent.jsonl``, one JSON line per object and attempt, as soon
as the PACS answers (one ``write`` of a whole line on a file opened for appending, then ``fsync``).
An object counts as sent to a destination once it has an ``"acknowledged"`` line there (C-STORE
status Success or Warning); a re-run sends only the objects that have none.

A refused, failed or dropped association is retried with exponential backoff; objects never leave
``dicom/``, whatever happens on the network. After a ``kill -9`` the object in flight may have
been stored by the PACS without its line being written: the next run sends it again under the
same SOP Instance UID (the UIDs are deterministic, :mod:`medig.pacs.uids`), which a PACS treats as
the same instance (stored once; by default Orthanc and dcm4chee ignore or overwrite the repeat),
and ``sent.jsonl`` ends with exactly one acknowledgement per object.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import (
    EncapsulatedPDFStorage,
    EnhancedSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)
from pynetdicom import AE

from medig.io._quiet import quiet
from medig.pacs.objects import object_uid
from medig.utils import open_regular

__all__ = [
    "CONTEXTS",
    "SENT_LOG",
    "Destination",
    "SendResult",
    "acknowledged",
    "check_aet",
    "parse_destination",
    "read_log",
    "send_objects",
]

#: The send log, inside the DICOM folder.
SENT_LOG = "sent.jsonl"

_log = logging.getLogger("medig")

_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE: no backslash, no control
_DEST_RE = re.compile(r"^(?P<aet>[^@]+)@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\[\]]+):(?P<port>\d+)$")
#: The storage SOP classes of every object medig writes (medig.pacs.export).
CONTEXTS = (SecondaryCaptureImageStorage, EncapsulatedPDFStorage, EnhancedSRStorage,
            SegmentationStorage)
# C-STORE statuses that mean "stored": Success and the Warning statuses (PS3.4 B.2.3).
_STORED = {0x0000, 0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007}


@dataclass(frozen=True)
class Destination:
    """A C-STORE SCP: its AE title, host and port."""

    aet: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.aet}@{host}:{self.port}"


def check_aet(aet: str, what: str = "AE title") -> str:
    """``aet`` if it is a valid AE title (1-16 characters, no backslash or control characters)."""
    if not _AET_RE.match(aet) or not aet.strip():
        raise ValueError(f"{what} {aet!r} is not a valid AE title (1-16 characters, no "
                         "backslash or control characters)")
    return aet


def parse_destination(text: str) -> Destination:
    """``AET@HOST:PORT`` (IPv6 hosts in brackets: ``PACS@[::1]:104``).

    Raises
    ------
    ValueError
        A malformed destination, with the reason.
    """
    match = _DEST_RE.match(text.strip())
    if not match:
        raise ValueError(f"--send {text!r} is not AET@HOST:PORT (e.g. PACS@pacs.example.org:104)")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"--send {text!r}: port {port} is out of range")
    return Destination(check_aet(match["aet"], "--send AE title"), match["host"].strip("[]"),
                       port)


@dataclass
class SendResult:
    """Counts of one :func:`send_objects` call."""

    acknowledged: int = 0  # stored by the PACS in this call
    already: int = 0  # acknowledged by an earlier run, not sent again
    failed: list[str] = field(default_factory=list)  # reasons of objects still not stored

    @property
    def complete(self) -> bool:
        return not self.failed


#: What each line of the send log holds (see ``record`` in :func:`send_objects`).
_LOG_FIELDS = ("destination", "sop_instance_uid", "status")


def _log_entry(line: bytes) -> dict[str, Any] | str | None:
    """One line of the send log; else None for a line cut short by a crash (the start of a
    JSON line), or why it is damaged (not UTF-8, not a log entry). Either is ignored: at worst its
    object is sent again under the same SOP Instance UID, which the PACS stores once."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    try:
        entry = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in _LOG_FIELDS):
        return "not a log entry"
    return entry


def read_log(log: Path) -> list[dict[str, Any]]:
    """The valid lines of a send log (:func:`_log_entry`); a damaged line is skipped with one
    warning line, a line cut short by a crash silently."""
    try:
        with open_regular(log) as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    except OSError as error:
        _log.warning("ignoring %s (%s): its objects are sent again", log,
                     error.strerror or "not a regular file")
        return []
    parsed = [_log_entry(line) for line in data.splitlines() if line.strip()]
    damaged = [p for p in parsed if isinstance(p, str)]
    if damaged:
        _log.warning("ignoring %d damaged line(s) of %s (%s): their objects are sent again "
                     "unless acknowledged on another line", len(damaged), log, damaged[0])
    return [p for p in parsed if isinstance(p, dict)]


def acknowledged(log: Path, destination: Destination | str) -> set[str]:
    """SOP Instance UIDs acknowledged by ``destination`` according to the log."""
    dest = str(destination)
    return {e["sop_instance_uid"] for e in read_log(log)
            if e["destination"] == dest and e["status"] == "acknowledged"}


def _append(log: Path, entry: dict[str, Any]) -> None:
    """Append one line durably: a single write on an O_APPEND file, then fsync."""
    log.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size:  # a line cut by a crash must not swallow this one
            with open(log, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _quiet_network() -> Iterator[None]:
    """pynetdicom logs every association and connection error (and at debug level, datasets):
    medig reports the outcome itself. Its child loggers inherit this level."""
    logger = logging.getLogger("pynetdicom")
    was = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(was)


_sleep = time.sleep  # module attribute, so tests can replace the backoff waits


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def send_objects(
    files: Sequence[Path],
    folder: Path,
    destination: Destination,
    calling_aet: str = "MEDIG",
    attempts: int = 5,
    backoff_s: float = 2.0,
    max_backoff_s: float = 60.0,
    timeout_s: float = 30.0,
    sleep: Callable[[float], None] | None = None,
) -> SendResult:
    """C-STORE ``files`` (DICOM objects under ``folder``) that ``destination`` has not yet
    acknowledged, logging each outcome to ``folder/sent.jsonl``.

    Parameters
    ----------
    files : sequence of Path
        The objects, in sending order.
    folder : Path
        The DICOM folder (the log's place; files are logged relative to it).
    destination : Destination
        The storage SCP.
    calling_aet : str
        medig's AE title.
    attempts : int
        Associations tried before giving up on the objects still unsent; each failed one (refused,
        unreachable, dropped mid-way) waits ``backoff_s * 2**k`` seconds, at most
        ``max_backoff_s``, before the next.
    timeout_s : float
        Network, ACSE and DIMSE timeouts.
    sleep : callable, optional
        How to wait between attempts (default :func:`time.sleep`).

    Returns
    -------
    SendResult
        ``failed`` is empty when every object is acknowledged.
    """
    sleep = sleep or _sleep
    log = folder / SENT_LOG
    dest = str(destination)
    done = acknowledged(log, destination)
    pending: list[tuple[Path, str]] = []
    result = SendResult()
    for path in files:
        uid = object_uid(path)
        if uid is None:
            result.failed.append(f"{path.name}: unreadable DICOM object")
            continue
        if uid in done:
            result.already += 1
        else:
            pending.append((path, uid))
    if not pending:
        return result

    ae = AE(ae_title=check_aet(calling_aet, "--calling-aet"))
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = timeout_s
    for context in CONTEXTS:
        ae.add_requested_context(context, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])

    def record(path: Path, uid: str, status: str, code: int | None, reason: str | None) -> None:
        _append(log, {"time": _now(), "destination": dest,
                      "file": path.relative_to(folder).as_posix(), "sop_instance_uid": uid,
                      "status": status,
                      "dimse_status": None if code is None else f"0x{code:04X}",
                      "reason": reason})

    problem = "no association attempted"
    failures = 0
    with _quiet_network():
        while pending and failures < attempts:
            assoc = ae.associate(destination.host, destination.port, ae_title=destination.aet)
            if not assoc.is_established:
                problem = ("association rejected" if assoc.is_rejected else
                           "association aborted" if assoc.is_aborted else
                           "no association (host unreachable or not answering)")
                failures += 1
                if failures < attempts:
                    sleep(min(max_backoff_s, backoff_s * 2 ** (failures - 1)))
                continue
            dropped = False
            while pending:
                path, uid = pending[0]
                try:
                    with quiet():
                        ds = pydicom.dcmread(path)
                    status = assoc.send_c_store(ds)
                except Exception as error:  # noqa: BLE001 - e.g. no accepted context
                    record(path, uid, "failed", None, f"{type(error).__name__}: {error}"[:200])
                    result.failed.append(f"{path.name}: {type(error).__name__}")
                    pending.pop(0)
                    continue
                code = status.get("Status") if status else None
                if code is None:  # no response: the association was aborted or dropped
                    dropped = True
                    problem = "association dropped during sending"
                    break
                pending.pop(0)
                if int(code) in _STORED:
                    record(path, uid, "acknowledged", int(code), None)
                    result.acknowledged += 1
                else:  # the PACS refused this object: logged, retried by the next run
                    record(path, uid, "failed", int(code), "refused by the PACS")
                    result.failed.append(f"{path.name}: C-STORE status 0x{int(code):04X}")
            if assoc.is_established:
                assoc.release()
            if dropped:
                failures += 1
                if failures < attempts:
                    sleep(min(max_backoff_s, backoff_s * 2 ** (failures - 1)))
    for path, uid in pending:
        record(path, uid, "failed", None, problem)
        result.failed.append(f"{path.name}: {problem}")
    return result
