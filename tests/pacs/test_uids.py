# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import re
import uuid

from medig.pacs.uids import derived_uid


def test_derived_uid_is_a_valid_uuid_derived_uid():
    uid = derived_uid("a", "b")
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", uid) and len(uid) <= 64
    u = uuid.UUID(int=int(uid[5:]))
    assert u.version == 8 and u.variant == uuid.RFC_4122


def test_derived_uid_is_deterministic_and_separates_parts():
    assert derived_uid("x", "y") == derived_uid("x", "y")
    assert derived_uid("ab", "c") != derived_uid("a", "bc")
    assert derived_uid("x") != derived_uid("y")
