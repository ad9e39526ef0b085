# SPDX-License-Identifier: Apache-2.0
"""File names as a file system holds them (bytes) against everything medig derives from a name:
study ids, laterality hints, output names and row paths.

The strategies build names from the pieces that matter: laterality hints in any case, the
separators that split them (``_ - .`` and space), ``%`` and ``#`` (row-path escapes), a leading
``-`` (an option to a shell), UTF-8 letters in NFC and NFD, control characters, and bytes that
are not UTF-8 at all. Every name is decoded the way :func:`os.fsdecode` hands it to medig.
CI runs a few dozen examples per property; a long run: ``MEDIG_NAME_EXAMPLES=20000 pytest
tests/audit/test_name_strategies.py``.
"""
from __future__ import annotations

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from medig.audit.store import output_name, parse_row_path, row_path
from medig.audit.study import (
    IDENTITY_FIELDS,
    dicom_identity,
    keyed_id,
    laterality_from_name,
    row_identity,
    study_fields,
)

SECRET = bytes(range(32))
FAST = settings(max_examples=int(os.environ.get("MEDIG_NAME_EXAMPLES", "60")), deadline=None)

_HINTS = [h.encode() for h in ("r", "od", "re", "right", "l", "os", "le", "left")]
_HINT = st.sampled_from(_HINTS).flatmap(
    lambda h: st.sampled_from([h, h.upper(), h.capitalize()]))
_SEPARATOR = st.sampled_from([b"_", b"-", b".", b" ", b"__", b"-_"])
_WORD = st.sampled_from([b"10", b"P7", b"scan", b"eye", b"rod", b"slide", b"img", b"a", b"L1"])
_ESCAPES = st.sampled_from([b"%", b"%25", b"%FF", b"%u0041", b"#", b"#1", b"~", b"~0123abcd"])
_LETTERS = st.sampled_from(["é", "e\u0301", "Å", "A\u030a", "眼", "ß", "\u2028", "\x85"]).map(
    lambda s: s.encode("utf-8"))  # NFC and NFD spellings, and Unicode line separators
_CONTROL = st.sampled_from([b"\n", b"\r", b"\t", b"\x1b", b"\x7f"])
_NOT_UTF8 = st.binary(min_size=1, max_size=3).map(
    lambda b: bytes(0x80 | (c & 0x7F) for c in b))  # high bytes, mostly invalid as UTF-8
_PIECE = st.one_of(_HINT, _SEPARATOR, _WORD, _ESCAPES, _LETTERS, _CONTROL, _NOT_UTF8)
_EXTENSION = st.sampled_from([b".jpg", b".JPEG", b".png", b".dcm", b".tif", b"", b".frame1"])


@st.composite
def file_names(draw) -> bytes:
    """One file name component, as bytes: no ``/``, no NUL, never ``.`` or ``..``."""
    lead = draw(st.sampled_from([b"", b"", b"-", b"--", b".", b" ", b". ", b" ."]))
    name = lead + b"".join(draw(st.lists(_PIECE, min_size=1, max_size=6))) + draw(_EXTENSION)
    return name if name not in (b".", b"..") else b"x" + name


@st.composite
def relative_paths(draw) -> str:
    """A relative input path (up to two folders) as :func:`os.fsdecode` gives it."""
    parts = draw(st.lists(file_names(), min_size=1, max_size=3))
    return os.fsdecode(b"/".join(parts))


_FRAME = st.one_of(st.none(), st.integers(0, 300))


@FAST
@given(relative_paths())
def test_study_fields_of_any_name(rel):
    fields = study_fields(SECRET, rel, None)
    assert set(fields) == set(IDENTITY_FIELDS)
    assert fields["laterality"] == laterality_from_name(rel)
    assert fields["study_source"] in ("file name", "image")
    assert len(fields["study"]) == 16 and int(fields["study"], 16) >= 0
    json.dumps(fields, ensure_ascii=False).encode("utf-8")  # writable as it is
    assert study_fields(SECRET, rel, None) == fields  # stable: every run and rank agree


@FAST
@given(relative_paths(), relative_paths())
def test_laterality_is_a_function_of_the_file_name_only(rel, other):
    name = rel.rsplit("/", 1)[-1]
    folder = other.rsplit("/", 1)[0] if "/" in other else "x"
    assert laterality_from_name(rel) == laterality_from_name(f"{folder}/{name}")
    assert laterality_from_name(rel) in ("R", "L", None)


_NOT_A_HINT = st.one_of(_WORD, _ESCAPES, _LETTERS, _NOT_UTF8)  # words without separators
_RIGHT_HINTS = (b"r", b"od", b"re", b"right")


def _eye(hint: bytes) -> str:
    return "R" if hint.lower() in _RIGHT_HINTS else "L"


@FAST
@given(st.lists(_NOT_A_HINT, max_size=3), _HINT, st.lists(_NOT_A_HINT, max_size=3), _SEPARATOR,
       _HINT, st.sampled_from([b".jpg", b".JPEG", b".png", b".dcm"]))
def test_laterality_hints_are_whole_words(before, hint, after, sep, second, extension):
    def name(*words: bytes) -> str:
        return os.fsdecode(sep.join(w for w in words if w) + extension)

    assert laterality_from_name(name(*before, hint, *after)) == _eye(hint)
    assert laterality_from_name(name(*before, hint + b"q", *after)) is None  # glued: no word
    both = laterality_from_name(name(*before, hint, second, *after))
    assert both == (_eye(hint) if _eye(second) == _eye(hint) else None)  # ambiguous: none


@FAST
@given(st.lists(_NOT_A_HINT, min_size=1, max_size=3), _SEPARATOR, _HINT, _HINT, file_names(),
       file_names())
def test_the_two_eyes_of_one_name_are_one_study(stem, sep, right, left, folder, other):
    if _eye(right) == _eye(left) or folder == other:
        return  # need one hint for each eye, two folders

    def path(where: bytes, hint: bytes, extension: bytes) -> str:
        return os.fsdecode(where + b"/" + sep.join([*stem, hint]) + extension)

    one = study_fields(SECRET, path(folder, right, b".jpg"), None)
    two = study_fields(SECRET, path(folder, left, b".png"), None)
    elsewhere = study_fields(SECRET, path(other, left, b".png"), None)
    assert one["study"] == two["study"] != elsewhere["study"]
    assert {one["laterality"], two["laterality"]} == {"R", "L"}
    assert one["study_source"] == two["study_source"] == "file name"


@FAST
@given(st.lists(relative_paths(), min_size=2, max_size=8, unique=True))
def test_keyed_ids_differ_for_different_names(rels):
    ids = [keyed_id(SECRET, "image", rel) for rel in rels]
    assert len(set(ids)) == len(ids)
    assert ids == [keyed_id(SECRET, "image", rel) for rel in rels]
    assert all(keyed_id(bytes(32), "image", r) != i for r, i in zip(rels, ids))


@FAST
@given(relative_paths(), st.sampled_from(["R", "L", None]), st.booleans())
def test_only_dicom_identity_survives_from_stored_work(rel, eye, has_uid):
    from medig.io.dicom_ids import DicomIds

    ids = DicomIds("1.2.3.4" if has_uid else None, None, None, None, eye)
    stored = dicom_identity(SECRET, ids)
    fields = row_identity(SECRET, rel, stored)
    assert fields == study_fields(SECRET, rel, ids)
    assert fields["laterality"] == (eye or laterality_from_name(rel))
    assert (fields["study_source"] == "dicom") == has_uid
    # a row stored under another name says nothing about this one: only "dicom" is kept
    foreign = study_fields(SECRET, "other_left.jpg", None)
    assert row_identity(SECRET, rel, foreign) == study_fields(SECRET, rel, None)


@FAST
@given(relative_paths(), _FRAME)
def test_row_path_is_one_line_of_utf8_and_parses_back(rel, frame):
    text = row_path(rel, frame)
    text.encode("utf-8")
    assert len(text.splitlines()) == 1  # under any reader's idea of a line break
    assert parse_row_path(text) == (rel, frame)
    line = json.dumps({"path": text}, ensure_ascii=False)
    assert len(line.splitlines()) == 1 and json.loads(line)["path"] == text


@FAST
@given(st.lists(st.tuples(relative_paths(), _FRAME), min_size=1, max_size=10, unique=True))
def test_output_names_are_unique_and_stay_in_their_folder(inputs):
    names = [output_name(rel, frame) for rel, frame in inputs]
    assert len(set(names)) == len(names)
    root = "/audit/overlays"
    for name, (rel, frame) in zip(names, inputs):
        name.encode("utf-8")
        assert len(name.splitlines()) == 1
        assert all(p not in ("", ".", "..") and not p.startswith(".") for p in name.split("/"))
        assert os.path.normpath(os.path.join(root, f"{name}.png")).startswith(root + "/")
        assert name == output_name(rel, frame)
