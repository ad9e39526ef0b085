# SPDX-License-Identifier: Apache-2.0
"""What an audit loads back from ``--out``, damaged or tampered with: records, arrays, overlay
stamps, the manifest, the settings and the study secret.

Each case starts from a copy of one finished audit, damages one file, and runs the same command
again: the damaged work is computed again (bit-identical ``results.jsonl`` and overlays), with one
warning line and no traceback, or the folder is refused with one line. Never are wrong numbers
written.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from medig.audit import AuditSettings, read_results, run_audit
from medig.audit.store import WorkStore, record_key
from medig.audit.study import SECRET_NAME, audit_secret, keyed_id
from medig.cli import EXIT_SOME_FILES_FAILED, EXIT_USAGE, main
from tests.audit.conftest import TINY, make_audit_folder

ARGS = ["--model", TINY, "--classes", "healthy", "referable", "--size", "64",
        "--batch-size", "3", "--workers", "0", "--quiet"]


def _audit(folder: Path, out: Path, *extra: str) -> int:
    return main(["audit", str(folder), "--out", str(out), *ARGS, *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """(input folder, a finished audit of it): a.jpg, b.png, c.tif in one batch, and an empty
    and a corrupt file."""
    root = tmp_path_factory.mktemp("state")
    folder = make_audit_folder(root / "in", n=3, seed=7)
    out = root / "ref"
    assert _audit(folder, out) == EXIT_SOME_FILES_FAILED
    return folder, out


@pytest.fixture
def copy(reference, tmp_path) -> tuple[Path, Path, Path]:
    """(input folder, the reference audit, a copy of it to damage)."""
    folder, ref = reference
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    return folder, ref, out


def _key_of(out: Path, folder: Path, name: str) -> str:
    settings_key = json.loads((out / "manifest.json").read_text())["settings_key"]
    return record_key(hashlib.sha256((folder / name).read_bytes()).hexdigest(), settings_key)


def _medig_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "medig" and r.levelno >= logging.WARNING]


def _assert_recomputed_once(caplog, ref: Path, out: Path, code: int, damaged: str) -> None:
    """Same exit code and bit-identical results as the reference, one warning naming the damaged
    file, no traceback anywhere."""
    assert code == EXIT_SOME_FILES_FAILED
    assert (out / "results.jsonl").read_bytes() == (ref / "results.jsonl").read_bytes()
    warnings = _medig_warnings(caplog)
    assert [r for r in warnings if damaged in r.getMessage()], [r.getMessage() for r in warnings]
    assert len([r for r in warnings if damaged in r.getMessage()]) == 1
    assert all(r.exc_info is None for r in caplog.records)


def _flip_digit(text: bytes) -> bytes:
    """The first digit of ``"delta"`` changed by one bit: still valid JSON, another number."""
    start = text.index(b'"delta": ') + len(b'"delta": ')
    start += 1 if text[start:start + 1] == b"-" else 0
    return text[:start] + bytes([text[start] ^ 0x01]) + text[start + 1:]


RECORD_DAMAGE = {
    "digit bit flip": _flip_digit,
    "high bit flip": lambda b: b[:40] + bytes([b[40] ^ 0x80]) + b[41:],
    "non-UTF-8 byte": lambda b: b.replace(b'"status": "ok"', b'"status": "o\xffk"', 1),
    "truncated": lambda b: b[: len(b) // 2],
    "empty list": lambda b: b"[]",
    "empty object": lambda b: b"{}",
    "frames without keys": lambda b: json.dumps({**json.loads(b), "frames": [{}]}).encode(),
    "status not a string": lambda b: json.dumps({**json.loads(b), "status": 1}).encode(),
    "deep nesting": lambda b: b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("damage", RECORD_DAMAGE, ids=list(RECORD_DAMAGE))
def test_a_damaged_record_is_computed_again(copy, caplog, damage):
    folder, ref, out = copy
    path = WorkStore(out).record_path(_key_of(out, folder, "a.jpg"))
    path.write_bytes(RECORD_DAMAGE[damage](path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="medig"):
        code = _audit(folder, out)
    _assert_recomputed_once(caplog, ref, out, code, path.name)
    assert WorkStore(out).load(path.stem) is not None  # stored again, valid


def test_swapped_records_are_not_believed(copy, caplog):
    folder, ref, out = copy
    store = WorkStore(out)
    a = store.record_path(_key_of(out, folder, "a.jpg"))
    b = store.record_path(_key_of(out, folder, "b.png"))
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    with caplog.at_level(logging.WARNING, logger="medig"):
        code = _audit(folder, out)
    _assert_recomputed_once(caplog, ref, out, code, a.name)
    assert len([r for r in _medig_warnings(caplog) if b.name in r.getMessage()]) == 1


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip_middle(data: bytes) -> bytes:
    return data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x10]) + data[len(data) // 2 + 1:]


ARRAY_DAMAGE = {
    "truncated": _half,
    "random bytes": lambda b: bytes(range(256)) * 8,
    "bit flip": _flip_middle,
    "deleted": None,
    "swapped": "swap",
    "a FIFO": "fifo",  # never opened: reading it would block the audit
}


@pytest.mark.parametrize("damage", ARRAY_DAMAGE, ids=list(ARRAY_DAMAGE))
def test_damaged_arrays_are_computed_again(copy, caplog, damage):
    # The overlay of a.jpg is drawn again from its arrays, which are damaged: the audit notices,
    # computes a.jpg's batch again, and draws the same overlay as the reference's.
    folder, ref, out = copy
    store = WorkStore(out)
    path = store.array_path(_key_of(out, folder, "a.jpg"), 0)
    how = ARRAY_DAMAGE[damage]
    if how is None:
        path.unlink()
    elif how == "swap":
        other = store.array_path(_key_of(out, folder, "b.png"), 0)
        shutil.copyfile(other, path)
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path)
    else:
        path.write_bytes(how(path.read_bytes()))
    (out / "overlays" / "a.jpg.png").unlink()
    with caplog.at_level(logging.WARNING, logger="medig"):
        code = _audit(folder, out)
    _assert_recomputed_once(caplog, ref, out, code, path.name)
    png = "overlays/a.jpg.png"
    assert (out / png).read_bytes() == (ref / png).read_bytes()
    assert WorkStore(out).load_arrays(path.name[:32], 0) is not None


@pytest.mark.parametrize("content", [b"\x00\xff garbage", b"[]", b'{"overlays/a.jpg.png": 5}'])
def test_damaged_overlay_stamps_redraw_the_overlays(copy, caplog, content):
    folder, ref, out = copy
    (out / ".medig" / "overlays.json").write_bytes(content)
    (out / "overlays" / "a.jpg.png").unlink()
    with caplog.at_level(logging.WARNING, logger="medig"):
        code = _audit(folder, out)
    assert code == EXIT_SOME_FILES_FAILED
    assert (out / "results.jsonl").read_bytes() == (ref / "results.jsonl").read_bytes()
    for png in ("a.jpg.png", "b.png.png", "c.tif.png"):
        assert (out / "overlays" / png).read_bytes() == (ref / "overlays" / png).read_bytes()
    names = ("a.jpg.png", "b.png.png", "c.tif.png")
    assert json.loads((out / ".medig" / "overlays.json").read_text()).keys() == {
        f"{d}/{png}" for png in names  # each baseline's own overlays are stamped too
        for d in ("overlays", "report_files/baselines/black", "report_files/baselines/blur")}
    assert len(_medig_warnings(caplog)) <= 1
    assert all(r.exc_info is None for r in caplog.records)


@pytest.mark.parametrize("content", [b"[]", b'{"status": "caf\xe9"}', b'{"settings": "x"}',
                                     b""])
def test_a_damaged_manifest_is_rewritten(copy, caplog, content):
    folder, ref, out = copy
    (out / "manifest.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="medig"):
        code = _audit(folder, out)
    assert code == EXIT_SOME_FILES_FAILED
    assert (out / "results.jsonl").read_bytes() == (ref / "results.jsonl").read_bytes()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert len([r for r in _medig_warnings(caplog) if "manifest.json" in r.getMessage()]) == 1
    assert all(r.exc_info is None for r in caplog.records)


@pytest.mark.parametrize("content", [b"[]", b'{"key": [], "result": 5}', b"\xff\xfe"])
def test_a_damaged_sanity_outcome_is_computed_again(copy, content):
    folder, ref, out = copy
    (out / ".medig" / "sanity.json").write_bytes(content)
    assert _audit(folder, out) == EXIT_SOME_FILES_FAILED
    sanity = [json.loads((o / "manifest.json").read_text())["trust_checks"]["sanity_check"]
              for o in (ref, out)]
    for entry in sanity:
        entry.pop("seconds")  # it ran again: the figures are the same, the time is not
    assert sanity[0]["status"] == "passed" and sanity[1] == sanity[0]
    stored = json.loads((out / ".medig" / "sanity.json").read_text())["result"]
    assert {k: v for k, v in stored.items() if k != "seconds"} == sanity[0]


@pytest.mark.parametrize("evidence", ["manifest deleted", "manifest damaged",
                                      "manifest and settings.json deleted"])
def test_changed_settings_are_refused_without_a_manifest(copy, capsys, evidence):
    folder, _ref, out = copy
    (out / "manifest.json").unlink() if evidence != "manifest damaged" else (
        out / "manifest.json").write_bytes(b"[]")
    if evidence == "manifest and settings.json deleted":
        (out / ".medig" / "settings.json").unlink()
    records = sorted((out / ".medig" / "records").iterdir())
    before = [p.read_bytes() for p in records]
    code = _audit(folder, out, "--size", "96")  # the reference was audited at --size 64
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "other settings" in err and "--force" in err and "Traceback" not in err
    if evidence != "manifest and settings.json deleted":
        assert "changed: size" in err
    assert sorted((out / ".medig" / "records").iterdir()) == records  # nothing touched
    assert [p.read_bytes() for p in records] == before


@pytest.mark.parametrize("content", [b"", b"not hex " * 8, bytes(range(64)), b"ab" * 31])
def test_a_damaged_study_secret_is_refused_then_forced(reference, tmp_path, capsys, content):
    # A new secret changes every study id: never made silently. With --force the folder is
    # audited again with new ids everywhere, and no study page of the old ids is left.
    folder, _ = reference
    out = tmp_path / "out"
    assert _audit(folder, out, "--per-study") == EXIT_SOME_FILES_FAILED
    old_pages = {p.name for p in (out / "studies").glob("*.pdf")}
    secret = out / ".medig" / SECRET_NAME
    secret.write_bytes(content)
    capsys.readouterr()
    assert _audit(folder, out, "--per-study") == EXIT_USAGE
    err = capsys.readouterr().err
    assert SECRET_NAME in err and "--force" in err and "Traceback" not in err
    assert secret.read_bytes() == content  # refused: nothing replaced
    assert _audit(folder, out, "--per-study", "--force") == EXIT_SOME_FILES_FAILED
    new_secret = audit_secret(out)
    rows = read_results(out / "results.jsonl")
    assert [r["study"] for r in rows] == [keyed_id(new_secret, "image", r["path"]) for r in rows]
    pages = {p.name for p in (out / "studies").glob("*.pdf")}
    assert pages == {f"{r['study']}.pdf" for r in rows} and not pages & old_pages


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the audit catches it."""


def test_resume_after_a_kill_between_two_saves_is_bit_identical(tmp_path, monkeypatch):
    # A batch's records are written one by one. Killed after the first, the resumed audit
    # must compute the rest of the batch with the same batch-mates as an uninterrupted run:
    # an image's float32 numbers depend on them (here b.png's delta, computed alone, is
    # 7.55023e-05 instead of 7.55619e-05).
    folder = make_audit_folder(tmp_path / "in", n=3, seed=5)
    pairs = ("--batch-size", "2")  # batches: a.jpg + b.png, c.tif + empty.png, ...
    ref = tmp_path / "ref"
    assert _audit(folder, ref, *pairs) == EXIT_SOME_FILES_FAILED
    out = tmp_path / "out"
    (out / ".medig").mkdir(parents=True)
    shutil.copyfile(ref / ".medig" / SECRET_NAME, out / ".medig" / SECRET_NAME)  # same ids
    save = WorkStore.save
    saved = []

    def killed_after_one(self, key, record, **kw):
        if saved:
            raise _Killed
        save(self, key, record, **kw)
        saved.append(key)

    monkeypatch.setattr(WorkStore, "save", killed_after_one)
    with pytest.raises(_Killed):
        _audit(folder, out, *pairs)
    monkeypatch.setattr(WorkStore, "save", save)
    assert saved == [_key_of(out, folder, "a.jpg")]  # killed inside the batch a.jpg, b.png
    assert len(list((out / ".medig" / "records").iterdir())) == 1
    assert not (out / "results.jsonl").exists()
    assert _audit(folder, out, *pairs) == EXIT_SOME_FILES_FAILED
    assert (out / "results.jsonl").read_bytes() == (ref / "results.jsonl").read_bytes()


def test_unreadable_inputs_alone_do_not_recompute_their_batch(tmp_path):
    # A FIFO found in the folder is retried by every run; it never joins the model's batch, so
    # retrying it leaves the finished images of its batch alone.
    folder = make_audit_folder(tmp_path / "in", n=2, seed=3)
    os.mkfifo(folder / "b_pipe.jpg")  # sorts between a.jpg and b.png: in their batch

    def settings() -> AuditSettings:
        return AuditSettings(model=TINY, size=64, batch_size=3, workers=0,
                             class_names=["healthy", "referable"])

    first = run_audit([folder], tmp_path / "out", settings(), progress=False)
    again = run_audit([folder], tmp_path / "out", settings(), progress=False)
    assert first.computed == 5 and again.computed == 1  # only the FIFO
    assert next(r for r in again.rows if r["path"] == "b_pipe.jpg")["status"] == "error"


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_study_pages_keep_the_first_runs_date_when_the_manifest_is_lost(tmp_path, damage) -> None:
    """The pages (and so the Encapsulated PDFs sent to a PACS) are dated by the audit's first run;
    the work store keeps that date too, so a lost manifest does not re-date them."""
    import time

    folder = make_audit_folder(tmp_path / "in", n=2, seed=11)
    out = tmp_path / "out"
    _audit(folder, out, "--per-study")
    first = json.loads((out / "manifest.json").read_text())["first_started"]
    pages = {p.name: p.read_bytes() for p in (out / "studies").glob("*.pdf")}
    assert pages
    manifest = out / "manifest.json"
    if damage == "deleted":
        manifest.unlink()
    else:
        manifest.write_bytes(b"\xff garbage")
    time.sleep(1.1)  # a later second: a page dated by this run would differ
    _audit(folder, out, "--per-study")
    assert json.loads(manifest.read_text())["first_started"] == first
    assert {p.name: p.read_bytes() for p in (out / "studies").glob("*.pdf")} == pages
