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

**Content and name.** What the DICOM header says (study UID, laterality) is part of the file's
content and may be stored with its work, which is keyed by the file's bytes
(:func:`dicom_identity`). What comes from the name never is: two files with the same bytes under
different names are one piece of work but may be two eyes of two studies, so the name-derived
fields are filled in from each row's own name when the results are assembled
(:func:`row_identity`). Names are hashed as the bytes the file system gave (:func:`os.fsencode`),
so a name that is not UTF-8 gets an id like any other.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from medig.audit.errors import AuditError
from medig.io.dicom_ids import DicomIds
from medig.utils import open_regular

__all__ = [
    "IDENTITY_FIELDS",
    "SECRET_NAME",
    "StudySecretError",
    "audit_secret",
    "dicom_identity",
    "keyed_id",
    "laterality_from_name",
    "row_identity",
    "study_fields",
]

#: The result fields this module fills in.
IDENTITY_FIELDS = ("study", "study_source", "laterality", "laterality_source")

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
    """16 hex digits of ``HMAC-SHA256(secret, kind + NUL + value)``.

    ``value`` is encoded as the file system encodes names (:func:`os.fsencode`): a name that is
    not UTF-8 (surrogate escapes from :func:`os.fsdecode`) is hashed as its original bytes, and
    every other value as its UTF-8.
    """
    message = os.fsencode(kind) + b"\0" + os.fsencode(value)
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


def dicom_identity(secret: bytes, ids: DicomIds | None,
                   laterality: str | None = None) -> dict[str, Any]:
    """The identity fields that the file's content gives: None where its header says nothing.

    Parameters
    ----------
    secret : bytes
        The audit's secret (:func:`audit_secret`).
    ids : DicomIds or None
        The file's DICOM identity (:func:`medig.io.dicom_ids.read_dicom_ids`), None if not DICOM.
    laterality : str, optional
        Laterality already known from the decoded metadata (wins over ``ids``).

    Returns
    -------
    dict
        :data:`IDENTITY_FIELDS`: the keyed hash of ``StudyInstanceUID`` and the DICOM laterality,
        each with source ``"dicom"``; these may be stored with the file's content-keyed work.
    """
    if not laterality and ids is not None and ids.laterality:
        laterality = ids.laterality
    study = keyed_id(secret, "study", ids.study_uid) if ids is not None and ids.study_uid else None
    return {"study": study, "study_source": "dicom" if study else None,
            "laterality": laterality or None, "laterality_source": "dicom" if laterality else None}


def row_identity(secret: bytes, rel: str, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The identity fields of the result row of input ``rel``.

    Only what came from the content is taken from ``stored`` (fields whose source is
    ``"dicom"``, see :func:`dicom_identity`); the rest is derived from ``rel`` itself, never from
    stored work, which other names with the same bytes share.

    Parameters
    ----------
    secret : bytes
        The audit's secret (:func:`audit_secret`).
    rel : str
        The input file's relative path (how results name it, without a ``#frame`` suffix).
    stored : mapping
        A row or a :func:`dicom_identity` dict; any other key is ignored.
    """
    lat_source: str | None
    if stored.get("laterality_source") == "dicom" and stored.get("laterality"):
        laterality, lat_source = stored["laterality"], "dicom"
    else:
        laterality = laterality_from_name(rel)
        lat_source = "file name" if laterality else None
    if stored.get("study_source") == "dicom" and stored.get("study"):
        study, study_source = stored["study"], "dicom"
    elif (group := _name_group(rel)) is not None:
        study, study_source = keyed_id(secret, "name", group), "file name"
    else:
        study, study_source = keyed_id(secret, "image", rel), "image"
    return {"study": study, "study_source": study_source, "laterality": laterality,
            "laterality_source": lat_source}


def study_fields(secret: bytes, rel: str, ids: DicomIds | None,
                 laterality: str | None = None) -> dict[str, Any]:
    """The result fields ``study``, ``study_source``, ``laterality``, ``laterality_source``.

    :func:`dicom_identity`, completed from the name by :func:`row_identity`.

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
    return row_identity(secret, rel, dicom_identity(secret, ids, laterality))
