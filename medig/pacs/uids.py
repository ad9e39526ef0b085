# SPDX-License-Identifier: Apache-2.0
"""Deterministic DICOM UIDs: the same inputs give the same UID, so a re-run or a re-send files
nothing twice in a PACS.

A UID is ``2.25.<n>`` where ``n`` is a 128-bit UUID (RFC 9562 version 8, "custom") whose bits come
from the SHA-256 of the parts that define the object; the ``2.25`` arc is the one PS3.5 (B.2)
reserves for UUID-derived UIDs, so no organisational root is needed. SHA-256 is one-way: the UID
of a derived object does not reveal the source UID it was computed from.
"""
from __future__ import annotations

import hashlib

__all__ = ["derived_uid"]


def derived_uid(*parts: str) -> str:
    """A ``2.25.`` UID (at most 44 characters) determined by ``parts``.

    Parts are joined with a NUL separator before hashing, so ``("ab", "c")`` and ``("a", "bc")``
    give different UIDs.
    """
    # surrogatepass: a name read from a non-UTF-8 file system (surrogate escapes) still hashes
    digest = bytearray(hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass"))
                       .digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8 (custom)
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122/9562 variant
    return f"2.25.{int.from_bytes(digest, 'big')}"
