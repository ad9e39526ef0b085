# SPDX-License-Identifier: Apache-2.0
"""Output names and row paths: within the file system's limits, one per input, reversible."""
from __future__ import annotations

import json
import os
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from medig.audit.store import (
    WorkStore,
    output_name,
    parse_row_path,
    printable,
    record_key,
    row_path,
    unreadable_key,
)

# Name components as a file system hands them to Python: any Unicode (letters of any script,
# combining marks, shell-special characters, '#', '%', '~') plus undecodable bytes, which
# os.fsdecode keeps as lone surrogates U+DC80..U+DCFF. No '/' and no NUL inside a component.
_CHARS = st.one_of(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    st.sampled_from(list("<>:\"|?*\\#%~._ \t\n") + ["\u0301", "\u00e9", "\u773c"]),
    st.integers(0x80, 0xFF).map(lambda b: chr(0xDC00 + b)),
)
_COMPONENT = st.text(_CHARS, min_size=1, max_size=90).filter(lambda c: c not in (".", ".."))
_REL = st.lists(_COMPONENT, min_size=1, max_size=3).map("/".join)
_FRAME = st.one_of(st.none(), st.integers(0, 999))


@settings(max_examples=120, deadline=None)
@given(_REL, _FRAME)
def test_output_names_fit_every_file_system_and_stay_inside_the_folder(rel, frame):
    name = output_name(rel, frame)
    name.encode("utf-8")  # valid UTF-8: no undecodable byte reaches a file name or results
    parts = name.split("/")
    assert len(parts) == len([p for p in rel.split("/") if p])
    for part in parts:
        assert part not in ("", ".", "..") and not part.startswith(".")
        # + ".png" and atomic_write's decoration stay below 143 (eCryptfs) and 255 bytes
        assert len(part.encode("utf-8")) <= 130
        assert not set(part) & set('<>:"|?*\\\x00\n\r\t')
    assert name == output_name(rel, frame)  # deterministic: every rank names it alike


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_REL, _FRAME), min_size=2, max_size=12, unique=True))
def test_output_names_are_unique_per_input(inputs):
    names = [output_name(rel, frame) for rel, frame in inputs]
    assert len(set(names)) == len(names)


def test_names_that_sanitising_merges_stay_apart():
    merged = ["a<b.jpg", "a>b.jpg", "a_b.jpg", "a:b.jpg", " a_b.jpg", ".a_b.jpg"]
    names = [output_name(n) for n in merged]
    assert len(set(names)) == len(names)
    assert output_name("a_b.jpg") == "a_b.jpg"  # safe names are kept as they are
    nfc, nfd = (unicodedata.normalize(f, "\u00e9t\u00e9.jpg") for f in ("NFC", "NFD"))
    assert output_name(nfc) == nfc and output_name(nfd) != output_name(nfc)
    assert output_name(nfd).startswith(nfc)  # still readable: the NFC spelling plus a hash


def test_frames_and_files_named_like_frames_stay_apart():
    assert output_name("eye.dcm", 1) == "eye.dcm_frame1"
    assert output_name("eye.dcm#1") != output_name("eye.dcm", 1)
    assert output_name("eye.dcm_frame1") != output_name("eye.dcm", 1)
    # a folder named like an overlay cannot clash with an extension-less file's overlay
    assert output_name("x.png/a.jpg").split("/")[0] != "x.png"


def test_long_names_are_shortened_with_a_hash():
    long_ascii, cjk = "l" * 240 + ".jpg", "\u773c" * 79 + ".jpg"  # 244 and 241 bytes
    for name in (long_ascii, cjk):
        short = output_name(name)
        assert len(short.encode()) <= 130 and short[:20] == name[:20]
    assert output_name(long_ascii) != output_name("l" * 241 + ".jpg")


@settings(max_examples=120, deadline=None)
@given(_REL, _FRAME)
def test_row_paths_round_trip_and_are_one_line_of_utf8(rel, frame):
    text = row_path(rel, frame)
    text.encode("utf-8")
    assert "\n" not in text and "\r" not in text
    assert parse_row_path(text) == (rel, frame)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_REL, _FRAME), min_size=2, max_size=12, unique=True))
def test_row_paths_are_unique(inputs):
    paths = [row_path(rel, frame) for rel, frame in inputs]
    assert len(set(paths)) == len(paths)


def test_row_path_escapes():
    assert row_path("a.jpg") == "a.jpg" and row_path("\u773c.jpg") == "\u773c.jpg"
    assert row_path("eye.dcm", 1) == "eye.dcm#1"
    assert row_path("eye.dcm#1") == "eye.dcm%231"
    assert row_path("100%.jpg") == "100%25.jpg"
    assert row_path(os.fsdecode(b"caf\xff.jpg")) == "caf%FF.jpg"
    assert parse_row_path("caf%FF.jpg") == (os.fsdecode(b"caf\xff.jpg"), None)


def test_printable_and_records_with_undecodable_text(tmp_path):
    text = "cannot read " + os.fsdecode(b"caf\xff.jpg")
    assert printable(text) == "cannot read caf\\xff.jpg"
    store = WorkStore(tmp_path)
    key = record_key("f" * 64, "settings")
    record = {"sha256": "f" * 64, "status": "error", "error": text, "frames": []}
    # used to raise UnicodeEncodeError
    store.save(key, record, key_sha256="f" * 64, settings_key="settings")
    assert store.load(key)["error"] == text
    json.loads((tmp_path / ".medig" / "records" / f"{key}.json").read_bytes())


def test_unreadable_inputs_never_share_a_key():
    assert unreadable_key("a.jpg") != unreadable_key("b.jpg")
    assert unreadable_key("a.jpg") == unreadable_key("a.jpg")
