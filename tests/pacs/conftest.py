# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the DICOM output and PACS tests: source studies with two eyes, a real storage
SCP (pynetdicom's own, in a thread) and an Orthanc archive when the machine has one."""
from __future__ import annotations

import builtins
import datetime
import errno
import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from medig.pacs.send import CONTEXTS
from medig.synthetic import generate
from tests.io.conftest import PHI, build_dicom

TINY_ARGS = ["--model", "tests.audit.tiny_models:make_tiny", "--classes", "healthy", "referable",
             "--size", "64", "--batch-size", "4", "--workers", "0", "--quiet"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_studies(root: Path, n_studies: int = 2, seed: int = 7) -> dict[str, Any]:
    """``n_studies`` DICOM studies of two eyes each (R and L, one patient per study), a JPEG pair
    named by eye and a lone PNG. Returns the identifying values written into the DICOMs."""
    images, _, _ = generate(2 * n_studies + 3, size=96, seed=seed)
    rgb = [t.permute(1, 2, 0).numpy() for t in images]
    root.mkdir(parents=True, exist_ok=True)
    uids: list[str] = []
    for s in range(n_studies):
        study = generate_uid()
        for k, eye in enumerate(("R", "L")):
            ds = build_dicom(rgb[2 * s + k], laterality=eye)
            ds.StudyInstanceUID = study
            ds.PatientID = f"{PHI['PatientID']}-{s}"
            ds.save_as(root / f"patient{s}_{k}.dcm", enforce_file_format=True)
            uids += [str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)]
    Image.fromarray(rgb[-3]).save(root / "77_left.jpg", quality=95)
    Image.fromarray(rgb[-2]).save(root / "77_right.jpg", quality=95)
    Image.fromarray(rgb[-1]).save(root / "lone.png")
    return {"uids": uids, "patient_ids": [f"{PHI['PatientID']}-{s}" for s in range(n_studies)]}


class StorageSCP:
    """pynetdicom's storage SCP on a free local port, filing instances by SOP Instance UID."""

    def __init__(self, folder: Path, aet: str = "TESTPACS", delay_s: float = 0.0,
                 status: int = 0x0000, abort_after: int | None = None) -> None:
        self.folder, self.aet, self.delay_s, self.status = folder, aet, delay_s, status
        self.abort_after = abort_after
        self.received: list[str] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.server = None
        folder.mkdir(parents=True, exist_ok=True)

    def _store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self.lock:
            self.received.append(str(ds.SOPInstanceUID))
            n = len(self.received)
        if self.abort_after is not None and n > self.abort_after:
            self.abort_after = None  # drop this association once, mid-way
            event.assoc.abort()
            return 0xC000
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.status == 0x0000:
            ds.save_as(self.folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        return self.status

    def start(self) -> StorageSCP:
        ae = AE(ae_title=self.aet)
        for context in CONTEXTS:
            ae.add_supported_context(context)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    @property
    def destination(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.port}"

    def stored(self) -> dict[str, pydicom.Dataset]:
        return {p.stem: pydicom.dcmread(p) for p in sorted(self.folder.glob("*.dcm"))}


@pytest.fixture
def scp(tmp_path: Path):
    server = StorageSCP(tmp_path / "archive").start()
    yield server
    server.stop()


class Orthanc:
    """An Orthanc archive on free ports with a temporary configuration (REST on localhost)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.dicom_port, self.http_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> Orthanc:
        config = {
            "Name": "medig-test", "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"), "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "Plugins": [],
            "OverwriteInstances": False, "HttpThreadsCount": 4, "ConcurrentJobs": 1,
        }
        path = self.folder / "orthanc.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
        log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([shutil.which("Orthanc"), str(path)], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("Orthanc exited: see " + str(self.folder / "orthanc.log"))
                time.sleep(0.25)
        raise RuntimeError("Orthanc did not start within 60 s")

    def get(self, route: str) -> Any:
        url = f"http://127.0.0.1:{self.http_port}{route}"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - localhost only
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def destination(self) -> str:
        return f"ORTHANC@127.0.0.1:{self.dicom_port}"


def with_raw_name(ds: pydicom.Dataset, charset: str | list[str] | None, raw: bytes) -> bytes:
    """``ds`` as a DICOM file whose SpecificCharacterSet is ``charset`` and whose PatientName
    holds the bytes ``raw`` exactly (pydicom would re-encode a text value)."""
    if charset is None:
        if "SpecificCharacterSet" in ds:
            del ds.SpecificCharacterSet
    else:
        ds.SpecificCharacterSet = charset
    ds.PatientName = "PLACEHOLDER^NAME"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    marker = b"PLACEHOLDER^NAME"
    at = data.index(marker)
    padded = raw + b" " * (len(raw) % 2)
    # explicit VR little endian: the 2-byte length sits just before the value
    return data[: at - 2] + len(padded).to_bytes(2, "little") + padded + data[at + len(marker):]


def shift_clock(monkeypatch: pytest.MonkeyPatch, delta: datetime.timedelta) -> None:
    """Every clock an audit and its DICOM objects read (the run's start and end, highdicom's
    dates) runs ``delta`` ahead from now on."""
    import highdicom.base
    import highdicom.base_content
    import highdicom.sc.sop
    import highdicom.sr.sop

    import medig.audit.manifest
    import medig.audit.pipeline
    import medig.pacs.send

    real = datetime.datetime

    class Later(real):
        @classmethod
        def now(cls, tz=None):  # the signature of datetime.now
            return real.now(tz) + delta

    shim = types.SimpleNamespace(**{**vars(datetime), "datetime": Later})
    for module in (medig.audit.pipeline, medig.audit.manifest, medig.pacs.send, highdicom.base,
                   highdicom.sc.sop, highdicom.sr.sop, highdicom.base_content):
        monkeypatch.setattr(module, "datetime", shim)


class _FullFile:
    """A file open for writing on a disk with ``room`` bytes left: the write that would pass
    them fails with ENOSPC, as on a disk that fills while the file is written."""

    def __init__(self, fh: Any, room: int) -> None:
        self._fh, self._room = fh, room

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if size > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= size
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def fill_disk(monkeypatch: pytest.MonkeyPatch, folder: Path, room: int = 512) -> None:
    """The file system under ``folder`` is nearly full: a file opened there for writing (by any
    code, through ``open`` or ``io.open``) fails with ENOSPC once ``room`` bytes are written."""
    real_open = builtins.open
    root = os.path.realpath(folder)

    def open_on_full_disk(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, mode, *args, **kwargs)
        if (isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+")
                and os.path.realpath(os.fsdecode(file)).startswith(root + os.sep)):
            return _FullFile(fh, room)
        return fh

    monkeypatch.setattr(builtins, "open", open_on_full_disk)
    monkeypatch.setattr(io, "open", open_on_full_disk)


def encapsulated_pdf(ds: pydicom.Dataset) -> bytes:
    """The document inside an Encapsulated PDF, at its declared length."""
    return bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]


def pixel_rgb(ds: pydicom.Dataset) -> np.ndarray:
    return np.asarray(ds.pixel_array)
