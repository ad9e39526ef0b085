# SPDX-License-Identifier: Apache-2.0
"""The state-tampering family: damage a finished audit's saved state, re-run, compare.

A complete audit with every option on (:func:`make_state_corpus` gives it DICOM studies of two
eyes, a two-frame DICOM, JPEGs named by eye, a PNG, an unreadable file and lesion masks) leaves
state behind: everything under ``.medig/`` (``records/*.json``, ``arrays/*.npz``,
``overlays.json``, ``sanity.json``, ``settings.json``, ``study-secret``, the rank reports, the
lock), ``manifest.json``, ``results.jsonl`` and ``dicom/sent.jsonl``. A *round* copies that folder
and tampers with part of it (:func:`tamper_round`), seeded, so a seed names the damage exactly:

* ``bitflip`` — 1 to 8 bits flipped anywhere (a digit of a number, a key, a zip header);
* ``truncate`` — cut at a random point (possibly to nothing);
* ``wrong_type`` — JSON that parses but has the wrong shape: the document or one value replaced by
  ``[]``, ``{}``, ``"x"``, a number, ``null`` or ``true``, or an object emptied or missing a key (a
  ``status`` that is not a string, frames without keys, ``"settings": "x"``); one line of a JSON
  Lines file so changed; an ``.npz`` with the right names and the wrong shapes and types; a
  secret that is not hex;
* ``non_utf8`` — a byte that cannot be UTF-8 written into the file;
* ``swap`` — two files exchanged: two records, two array files, a record and ``overlays.json``.

Rounds: ``control`` (nothing), ``part k/n`` (every n-th file of the work state, from the k-th, each
with a kind, plus swaps), ``arrays`` (every array file holds another image's valid arrays and
``overlays.json`` is cut, so every overlay is drawn again from them), ``manifest`` (the settings
records, ``manifest.json`` and ``.medig/settings.json``) and ``secret``, each file with a kind
chosen by the seed: these two may be refused in one line rather than recomputed.
:func:`round_violations` states the property of the re-run (same options, ``--send`` to the same
SCP, its clock a day later) and of ``medig report`` before and after it.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.fuzz.cases import dicom_bytes, fixed_uid, jpeg_bytes, mask_png
from tests.fuzz.harness import (
    FINISHED,
    FULL_OPTIONS,
    RERUN_LATER_S,
    AuditRun,
    attribution_arrays,
    audit_run,
    dicom_uids,
    has_traceback,
    overlay_files,
    report_run,
    row_differences,
    same_attributions,
    sent_acknowledgements,
)
from tests.io.conftest import build_dicom, rgb_fundus

__all__ = ["KINDS", "Baseline", "FirstAudit", "Round", "Tampering", "ci_rounds", "copy_audit",
           "first_audit", "make_state_corpus", "round_violations", "rounds", "run_round",
           "state_files", "tamper_round"]

KINDS = ("bitflip", "truncate", "wrong_type", "non_utf8", "swap")
SECRET = ".medig/study-secret"
MANIFEST = "manifest.json"
#: The audit's record of its settings: refused rather than recomputed when damaged is allowed.
SETTINGS_RECORDS = (MANIFEST, ".medig/settings.json")
_WRONG = ([], {}, "x", 7, None, True, -1.5)
_BAD_UTF8 = (b"\xff", b"\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80")


@dataclass(frozen=True)
class Tampering:
    """What was done to which file(s)."""

    files: tuple[str, ...]
    kind: str
    how: str = ""

    def __str__(self) -> str:
        return f"{' <-> '.join(self.files)}: {self.kind}{': ' + self.how if self.how else ''}"


@dataclass(frozen=True)
class Round:
    """What one round tampers with: ``kind`` is ``control``, ``part``, ``arrays``, ``manifest``
    or ``secret``; a part round takes every ``parts``-th work file from index ``part``."""

    kind: str
    seed: int = 0
    part: int = 0
    parts: int = 2

    @property
    def name(self) -> str:
        if self.kind == "part":
            return f"part{self.part}of{self.parts}-seed{self.seed}"
        return f"{self.kind}-seed{self.seed}"

    @property
    def may_refuse(self) -> bool:
        """Damaged settings records or a damaged secret may be refused with one clear line
        instead of recomputed (the audit cannot tell what it was made with, or its study ids)."""
        return self.kind in ("manifest", "secret")


# --------------------------------------------------------------------------- the corpus


def make_state_corpus(folder: Path) -> tuple[Path, Path]:
    """A small fixed corpus for the tamper family (same bytes on every run): ``(inputs, masks)``.

    Two studies of two eyes (DICOM, fixed UIDs), a two-frame DICOM, a pair of JPEGs named by eye,
    a PNG and a truncated JPEG; masks for a JPEG and a DICOM.
    """
    inputs, masks = folder / "inputs", folder / "masks"
    inputs.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for s, (h, w) in enumerate(((64, 80), (72, 72))):
        for k, eye in enumerate(("R", "L")):
            ds = build_dicom(rgb_fundus(h, w, seed=40 + 2 * s + k), laterality=eye)
            ds.SOPInstanceUID = fixed_uid(f"t-sop{s}{k}")
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.StudyInstanceUID = fixed_uid(f"t-study{s}")
            ds.SeriesInstanceUID = fixed_uid(f"t-ser{s}")
            ds.PatientID = f"TAMPER-{s}"
            (inputs / f"study{s}_{eye}.dcm").write_bytes(dicom_bytes(ds))
    two = build_dicom(np.stack([rgb_fundus(48, 64, seed=s) for s in (50, 51)]))
    two.SOPInstanceUID = two.file_meta.MediaStorageSOPInstanceUID = fixed_uid("t-multi")
    two.StudyInstanceUID = fixed_uid("t-multi-study")
    two.SeriesInstanceUID = fixed_uid("t-multi-ser")
    (inputs / "multi.dcm").write_bytes(dicom_bytes(two))
    (inputs / "pair_left.jpg").write_bytes(jpeg_bytes(seed=52))
    (inputs / "pair_right.jpg").write_bytes(jpeg_bytes(seed=53))
    buffer = io.BytesIO()
    Image.fromarray(rgb_fundus(80, 96, seed=54)).save(buffer, "PNG")
    (inputs / "lone.png").write_bytes(buffer.getvalue())
    (inputs / "broken.jpg").write_bytes(jpeg_bytes(seed=55)[:400])
    (masks / "pair_left.png").write_bytes(mask_png(96, 128))
    (masks / "study0_R.png").write_bytes(mask_png(64, 80))
    return inputs, masks


# --------------------------------------------------------------------------- what is state


def state_files(out: Path) -> list[str]:
    """Every file of the saved state, relative to ``out``, sorted: everything under
    ``.medig/``, ``manifest.json``, ``results.jsonl`` and ``dicom/sent.jsonl``."""
    found = [p for p in (out / ".medig").rglob("*") if p.is_file() and not p.is_symlink()]
    found += [out / name for name in (MANIFEST, "results.jsonl", "dicom/sent.jsonl")
              if (out / name).is_file()]
    return sorted(p.relative_to(out).as_posix() for p in found)


def _work_files(out: Path) -> list[str]:
    return [f for f in state_files(out) if f != SECRET and f not in SETTINGS_RECORDS]


# --------------------------------------------------------------------------- the damage


def bitflip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\x01"
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))] if data else b"\0"


def non_utf8(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    bad = rng.choice(_BAD_UTF8)
    replaced = data[:at] + bad + data[at + rng.choice((0, len(bad))):]
    return replaced if replaced != data else data[:at] + bad + data[at:]


def _json_nodes(doc: Any, path: tuple = ()) -> list[tuple]:
    nodes = [path]
    children = (doc.items() if isinstance(doc, dict) else enumerate(doc)
                if isinstance(doc, list) else ())
    for key, value in children:
        nodes += _json_nodes(value, (*path, key))
    return nodes


def _replace(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def wrong_json(doc: Any, rng: random.Random) -> tuple[Any, str]:
    """``doc`` with one node (a ``status`` in a third of the cases, where there is one) replaced
    by a JSON value of another type, or an object node emptied or missing one key; returns
    (document, where)."""
    nodes = _json_nodes(doc)
    statuses = [p for p in nodes if p and p[-1] == "status"]
    # Shallow nodes are the likelier (the document itself, a top-level value, a frame).
    path = (rng.choice(statuses) if statuses and rng.random() < 1 / 3
            else min(rng.sample(nodes, min(3, len(nodes))), key=len))
    current = _get(doc, path)
    where = "".join(f"[{k!r}]" for k in path) or "document"
    if isinstance(current, dict) and current and rng.random() < 0.5:
        key = rng.choice(sorted(current))
        del current[key]
        return doc, f"{where}: key {key!r} removed"
    value = rng.choice([w for w in _WRONG if type(w) is not type(current)]
                       + ([{}] if isinstance(current, dict) and current else []))
    return _replace(doc, path, json.loads(json.dumps(value))), f"{where} -> {json.dumps(value)}"


def wrong_type(name: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Well-formed content of the wrong shape for ``name`` (see the module docstring)."""
    if name.endswith(".npz"):
        try:
            with np.load(io.BytesIO(data)) as z:
                names = list(z.files)
        except Exception:  # noqa: BLE001 - not a readable npz: make one from scratch
            names = ["image"]
        buffer = io.BytesIO()
        junk = [np.array("x"), np.zeros((0,)), np.ones((3, 2, 1), np.int8), np.array(7.5)]
        np.savez(buffer, **{n: rng.choice(junk) for n in names})
        return buffer.getvalue(), f"npz arrays {names} of the wrong shapes"
    if name == SECRET:
        text = rng.choice(["z" * 64, "0" * 63, "[]", "{}", "\"x\""])
        return text.encode(), f"secret {text[:8]!r}..."
    text = data.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    else:
        changed, where = wrong_json(doc, rng)
        return json.dumps(changed).encode(), where
    lines = text.splitlines()
    parsed = []
    for k, line in enumerate(lines):
        try:
            parsed.append((k, json.loads(line)))
        except ValueError:
            pass
    if parsed:  # JSON Lines: one line changed
        k, doc = rng.choice(parsed)
        changed, where = wrong_json(doc, rng)
        lines[k] = json.dumps(changed)
        return ("\n".join(lines) + "\n").encode(), f"line {k + 1}: {where}"
    value = rng.choice(_WRONG)
    return json.dumps(value).encode(), f"text -> {json.dumps(value)}"


def _secret_damage(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    kind = rng.choice(("empty", "non-hex", "binary", "bitflip", "truncate"))
    if kind == "empty":
        return b"", "empty"
    if kind == "non-hex":
        return b"g" * 64, "64 non-hex letters"
    if kind == "binary":
        return bytes(rng.randrange(256) for _ in range(32)), "32 raw bytes"
    if kind == "bitflip":
        return bitflip(data, rng), "bit flips"
    return truncate(data, rng), "truncated"


def _apply(out: Path, name: str, kind: str, rng: random.Random) -> Tampering:
    path = out / name
    data = path.read_bytes()
    if kind == "bitflip":
        new, how = bitflip(data, rng), "bit flips"
    elif kind == "truncate":
        new = truncate(data, rng)
        how = f"cut to {len(new)} of {len(data)} bytes"
    elif kind == "non_utf8":
        new, how = non_utf8(data, rng), "a non-UTF-8 byte"
    elif kind == "wrong_type":
        new, how = wrong_type(name, data, rng)
    elif kind == "secret":
        new, how = _secret_damage(data, rng)
    else:
        raise ValueError(kind)
    path.write_bytes(new)
    return Tampering((name,), kind, how)


def _swap(out: Path, a: str, b: str) -> Tampering:
    pa, pb = out / a, out / b
    tmp = pa.with_name(pa.name + ".swap")
    os.replace(pa, tmp)
    os.replace(pb, pa)
    os.replace(tmp, pb)
    return Tampering((a, b), "swap")


def _swaps(files: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """A pair of records, a pair of array files, and a record with ``overlays.json`` (as many
    of them as ``files`` allows, each file in one swap at most)."""
    records = [f for f in files if f.startswith(".medig/records/")]
    arrays = [f for f in files if f.startswith(".medig/arrays/")]
    pairs, used = [], set()
    for group in (records, arrays):
        if len(group) >= 2:
            pair = rng.sample(group, 2)
            pairs.append(tuple(pair))
            used.update(pair)
    left = [f for f in records if f not in used]
    if left and ".medig/overlays.json" in files:
        pairs.append((rng.choice(left), ".medig/overlays.json"))
    return pairs


def _derange_arrays(out: Path, rng: random.Random) -> list[Tampering]:
    """Every array file given another's content (valid arrays of another image), and
    ``overlays.json`` cut, so that every overlay is drawn again from what the arrays say."""
    names = [f for f in state_files(out) if f.startswith(".medig/arrays/")]
    names = rng.sample(names, len(names))
    if len(names) < 2:
        return []
    contents = [(out / n).read_bytes() for n in names]
    for k, name in enumerate(names):
        (out / name).write_bytes(contents[(k + 1) % len(names)])
    done = [Tampering(tuple(names), "swap", "each array file holds the next one's arrays")]
    if (out / ".medig/overlays.json").is_file():
        done.append(_apply(out, ".medig/overlays.json", "truncate", rng))
    return done


def tamper_round(out: Path, spec: Round) -> list[Tampering]:
    """Apply ``spec`` to the audit folder ``out`` in place; returns what was done (the same, and
    the same bytes, for the same folder and spec)."""
    rng = random.Random(f"{spec.name}")
    if spec.kind == "control":
        return []
    if spec.kind == "manifest":
        kinds = ("bitflip", "truncate", "wrong_type", "non_utf8")
        return [_apply(out, name, rng.choice(kinds), rng) for name in SETTINGS_RECORDS
                if (out / name).is_file()]
    if spec.kind == "secret":
        return [_apply(out, SECRET, "secret", rng)] if (out / SECRET).is_file() else []
    if spec.kind == "arrays":
        return _derange_arrays(out, rng)
    if spec.kind != "part":
        raise ValueError(f"unknown round {spec.kind!r}")
    files = _work_files(out)[spec.part :: spec.parts]
    done: list[Tampering] = []
    swapped: set[str] = set()
    for a, b in _swaps(files, rng):
        done.append(_swap(out, a, b))
        swapped.update((a, b))
    kinds = [k for k in KINDS if k != "swap"]
    order = rng.sample(kinds, len(kinds))
    for k, name in enumerate(f for f in files if f not in swapped):
        done.append(_apply(out, name, order[k % len(order)], rng))
    return done


def copy_audit(base: Path, out: Path) -> None:
    """A copy of a finished audit folder to tamper with."""
    shutil.copytree(base, out, symlinks=True)


# --------------------------------------------------------------------------- the property


def _refused(code: int, stderr: str) -> bool:
    """A refusal in one clear line: exit 1 or 2, one ``medig: error:`` line, no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("medig: error:")]
    return code in (1, 2) and len(errors) == 1 and not has_traceback(stderr)


def _manifest_numbers(out: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: manifest.get(k) for k in ("counts", "cohort_clip", "settings_key")} \
        if isinstance(manifest, dict) else {}


@dataclass
class Baseline:
    """What the untampered audit gave."""

    out: Path
    rows: list[dict[str, Any]]
    uids: dict[str, str]  # DICOM objects by path
    overlays: dict[str, bytes]
    attributions: dict[str, dict[str, np.ndarray]]
    manifest: dict[str, Any]

    @classmethod
    def of(cls, out: Path, rows: list[dict[str, Any]]) -> Baseline:
        return cls(out, rows, dicom_uids(out), overlay_files(out), attribution_arrays(out),
                   _manifest_numbers(out))


def round_violations(spec: Round, done: list[Tampering], base: Baseline, out: Path,
                     report_before: tuple[int, str] | None, run: AuditRun,
                     report_after: tuple[int, str] | None, destination: str) -> list[str]:
    """The property of one round (see the module docstring); empty when it holds.

    - ``medig report`` on the tampered folder (``report_before``, when ``results.jsonl`` or
      ``manifest.json`` was damaged): exit 0, or a refusal in one line; no traceback.
    - The re-run: exit 0, 3 or 4 and no traceback (a manifest or secret round may instead be
      refused in one line). Its rows equal the untampered run's, field for field (tampered state
      recomputed, never believed), and so do its overlays, saved attributions, DICOM objects and
      the manifest's counts and colour scale.
    - The SCP: the re-run sends nothing the first run did not send, nothing twice, and nothing at
      all unless ``sent.jsonl`` was tampered with; afterwards ``sent.jsonl`` acknowledges each
      object exactly once.
    - ``medig report`` after the re-run exits 0.
    """
    problems = []
    if report_before is not None:
        code, stderr = report_before
        if has_traceback(stderr) or not (code == 0 or _refused(code, stderr)):
            problems.append(f"medig report on the tampered folder: exit {code}: "
                            f"{stderr[-1500:]}")
    sent_tampered = any("dicom/sent.jsonl" in t.files for t in done)
    refused = spec.may_refuse and _refused(run.code, run.stderr)
    if has_traceback(run.stderr) or (run.code not in FINISHED and not refused):
        problems.append(f"re-run exit {run.code}: {run.stderr[-2500:]}")
    elif not refused:
        problems += [f"re-run row {p}" for p in row_differences(base.rows, run.rows)]
        uids = dicom_uids(out)
        if uids != base.uids:
            changed = sorted(k for k in set(uids) | set(base.uids)
                             if uids.get(k) != base.uids.get(k))
            problems.append(f"DICOM objects differ from the first run's: {changed[:4]}")
        overlays = overlay_files(out)
        if overlays != base.overlays:
            changed = sorted(k for k in set(overlays) | set(base.overlays)
                             if overlays.get(k) != base.overlays.get(k))
            problems.append(f"overlays differ from the first run's: {changed[:4]}")
        if not same_attributions(attribution_arrays(out), base.attributions):
            problems.append("saved attributions differ from the first run's")
        if _manifest_numbers(out) != base.manifest:
            problems.append(f"manifest counts / colour scale / settings key differ: "
                            f"{_manifest_numbers(out)} vs {base.manifest}")
    first = set(base.uids.values())
    new = sorted(set(run.received) - first)
    if new:
        problems.append(f"the re-run sent {len(new)} instance(s) the PACS did not have: {new[:3]}")
    twice = sorted({u for u in run.received if run.received.count(u) > 1})
    if twice:
        problems.append(f"the re-run sent {len(twice)} instance(s) twice: {twice[:3]}")
    again = [u for u in run.received if u in first]
    if again and not sent_tampered:
        problems.append(f"the re-run sent {len(again)} acknowledged instance(s) again although "
                        "sent.jsonl was intact")
    if not refused and run.code in FINISHED:
        acks = sent_acknowledgements(out, destination)
        wrong = {u: acks.get(u, 0) for u in first if acks.get(u, 0) != 1}
        if wrong:
            problems.append(f"sent.jsonl does not acknowledge each object exactly once: "
                            f"{dict(list(wrong.items())[:3])}")
        if report_after is not None:
            code, stderr = report_after
            if code != 0 or has_traceback(stderr):
                problems.append(f"medig report after the re-run: exit {code}: {stderr[-1500:]}")
    return problems


# --------------------------------------------------------------------------- running rounds


@dataclass
class FirstAudit:
    """The complete, untampered audit every round starts from."""

    inputs: Path
    options: list[str]
    run: AuditRun
    out: Path
    scp: Any  # the storage SCP every run sends to (the same destination: sent.jsonl names it)
    workers: int = 0

    @property
    def baseline(self) -> Baseline:
        return Baseline.of(self.out, self.run.rows)


def first_audit(folder: Path, scp: Any, workers: int = 0) -> FirstAudit:
    """Write the corpus into ``folder`` and audit it with every option on, sending to ``scp``."""
    inputs, masks = make_state_corpus(folder)
    options = [*FULL_OPTIONS, "--masks", str(masks)]
    run = audit_run(inputs, folder / "first", workers, options, scp)
    return FirstAudit(inputs, options, run, folder / "first", scp, workers)


def run_round(first: FirstAudit, spec: Round, out: Path) -> tuple[list[Tampering], list[str]]:
    """Copy the first audit to ``out``, tamper with it, ``medig report`` (when what it reads was
    damaged), re-run the audit (same command, its clock a day later: nothing it sends may depend
    on when it runs) and ``medig report`` again; returns (what was tampered, violations)."""
    if first.run.code not in FINISHED:
        return [], [f"the untampered audit did not finish: exit {first.run.code}: "
                    f"{first.run.stderr[-2000:]}"]
    copy_audit(first.out, out)
    done = tamper_round(out, spec)
    # medig report reads results.jsonl and manifest.json: run it on them when they were damaged
    touched = {f for t in done for f in t.files}
    before = report_run(out) if touched & {"results.jsonl", MANIFEST} else None
    run = audit_run(first.inputs, out, first.workers, first.options, first.scp,
                    clock_shift_s=RERUN_LATER_S)
    after = report_run(out) if run.code in FINISHED else None
    return done, round_violations(spec, done, first.baseline, out, before, run, after,
                                  first.scp.destination)


def rounds(seeds: list[int], parts: int = 2) -> list[Round]:
    """The control, then per seed ``parts`` part rounds, an arrays, a manifest and a secret
    round."""
    found = [Round("control")]
    for seed in seeds:
        found += [Round("part", seed, k, parts) for k in range(parts)]
        found += [Round("arrays", seed), Round("manifest", seed), Round("secret", seed)]
    return found


def ci_rounds(seed: int) -> list[Round]:
    """The rounds CI runs: every state file tampered with once, every kind used."""
    return rounds([seed], parts=2)
