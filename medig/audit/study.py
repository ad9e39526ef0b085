# SPDX-License-Identifier: Apache-2.0
"""Which study and which eye an image belongs to, without writing any patient identifier.

**Study id.** Images group into studies by their DICOM ``StudyInstanceUID``. The UID identifies
the patient's examination, so results, pages and file names carry a *keyed hash* of it instead:
``HMAC-SHA256(secret, uid)``, 16 hex digits, where ``secret`` is 32 random bytes created once per
audit folder in ``<out>/.medig/study-secret`` (mode 0600, atomically, race-free under torchrun).
Without the secret the id cannot be linked back to the UID, even by someone who knows the UID;
with it, re-runs and ``medig report`` keep the same ids. ``--force`` re-audits into a clean work
store and therefore gets a new secret and new ids (a new audit; stale pages are removed).

Images without a study UID are grouped by file name when their names differ only by a laterality
hint in the same folder (``10_left.jpeg`` + ``10_right.jpeg``, ``P7_OD.png`` + ``P7_OS.png``);
any other image is a study of its own. The id is then the keyed hash of that name or file path.

**Laterality.** DICOM ``ImageLaterality``, else ``Laterality``; else a hint in the file name,
matched as a whole word (separated by ``_``, ``-``, ``.``, space or the name's ends, any case):
``R``, ``OD``, ``RE``, ``right`` (right eye) and ``L``, ``OS``, ``LE``, ``left`` (left eye). So
``ROD.jpg`` and ``slide.png`` carry no hint, and a name with hints for both eyes is ambiguous (no
laterality).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path, PurePosixPath
from typing import Any

from medig.audit.errors import AuditError
from medig.io.dicom_ids import DicomIds
from medig.utils import open_regular

__all__ = [
    "SECRET_NAME",
    "StudySecretError",
    "audit_secret",
    "keyed_id",
    "laterality_from_name",
    "study_fields",
]

#: Name of the per-audit secret, inside ``<out>/.medig/``.
SECRET_NAME = "study-secret"
_ID_HEX = 16

_RIGHT = {"r", "od", "re", "right"}
_LEFT = {"l", "os", "le", "left"}
_TOKEN_SPLIT = re.compile(r"[_\-. ]+")


class StudySecretError(AuditError):
    """The folder's study secret exists but is not one (damaged or replaced): the study ids of
    its audit can no longer be reproduced."""


_SECRET_HEX = re.compile(rb"[0-9a-fA-F]{64}")


def audit_secret(out_dir: str | os.PathLike) -> bytes:
    """The audit folder's study-id secret, created on first use.

    Created atomically and exclusively (a temporary file linked into place, so concurrent ranks
    agree on one secret), readable by the owner only.

    Raises
    ------
    StudySecretError
        The file exists but is not 64 hex digits (empty, cut, binary, edited) or cannot be read.
        It is never replaced silently: a new secret changes every study id of the folder, so
        ``run_audit`` refuses such a folder like one holding other settings (restore the file,
        or ``--force`` a re-audit with new ids).
    """
    folder = Path(out_dir) / ".medig"
    path = folder / SECRET_NAME
    if not os.path.lexists(path):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{SECRET_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        with open_regular(path) as fh:  # a FIFO is never opened, /dev/zero never read to its end
            text = fh.read(256).strip()
    except OSError as error:
        raise StudySecretError(f"{path} cannot be read ({error.strerror or error}); the study "
                               "ids of this folder cannot be reproduced") from None
    if not _SECRET_HEX.fullmatch(text):
        raise StudySecretError(f"{path} is damaged (not a medig study secret of 64 hex digits); "
                               "the study ids of this folder cannot be reproduced")
    return bytes.fromhex(text.decode("ascii"))


def keyed_id(secret: bytes, kind: str, value: str) -> str:
    """16 hex digits of ``HMAC-SHA256(secret, kind + NUL + value)``."""
    message = f"{kind}\0{value}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:_ID_HEX]


def _name_tokens(rel: str) -> tuple[list[str], str]:
    name = PurePosixPath(rel).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return _TOKEN_SPLIT.split(stem), stem


def laterality_from_name(rel: str) -> str | None:
    """``"R"`` or ``"L"`` from a whole-word hint in the file name, else None (see module doc)."""
    tokens = {t.lower() for t in _name_tokens(rel)[0] if t}
    right, left = bool(tokens & _RIGHT), bool(tokens & _LEFT)
    if right == left:
        return None
    return "R" if right else "L"


def _name_group(rel: str) -> str | None:
    """The folder and file name without its laterality hint, when the name has one."""
    if laterality_from_name(rel) is None:
        return None
    tokens, _ = _name_tokens(rel)
    rest = [t.lower() for t in tokens if t and t.lower() not in _RIGHT | _LEFT]
    parent = PurePosixPath(rel).parent.as_posix()
    return f"{parent}/{'_'.join(rest)}"


def study_fields(secret: bytes, rel: str, ids: DicomIds | None,
                 laterality: str | None = None) -> dict[str, Any]:
    """The result fields ``study``, ``study_source``, ``laterality``, ``laterality_source``.

    Parameters
    ----------
    secret : bytes
        The audit's secret (:func:`audit_secret`).
    rel : str
        The input file's relative path (how results name it, without a ``#frame`` suffix).
    ids : DicomIds or None
        The file's DICOM identity (:func:`medig.io.dicom_ids.read_dicom_ids`), None if not DICOM.
    laterality : str, optional
        Laterality already known from the decoded metadata.
    """
    source = "dicom" if laterality else None
    if not laterality and ids is not None and ids.laterality:
        laterality, source = ids.laterality, "dicom"
    if not laterality:
        laterality = laterality_from_name(rel)
        source = "file name" if laterality else None
    if ids is not None and ids.study_uid:
        study, study_source = keyed_id(secret, "study", ids.study_uid), "dicom"
    elif (group := _name_group(rel)) is not None:
        study, study_source = keyed_id(secret, "name", group), "file name"
    else:
        study, study_source = keyed_id(secret, "image", rel), "image"
    return {"study": study, "study_source": study_source, "laterality": laterality,
            "laterality_source": source}
