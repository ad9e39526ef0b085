# SPDX-License-Identifier: Apache-2.0
"""Character sets of the sources: every set the reader audits gives objects whose patient name
decodes as the source's, or (a set nobody knows, with non-ASCII text) one line and no object;
either way every other source gets its objects and is sent."""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from medig.audit import read_results
from medig.cli import EXIT_NOT_SENT, EXIT_OK, main
from medig.pacs.export import dicom_objects
from medig.pacs.objects import overlay_capture, read_source, study_document
from tests.io.conftest import PHI, build_dicom, rgb_fundus
from tests.pacs.conftest import TINY_ARGS, StorageSCP, make_studies, with_raw_name
from tests.pacs.test_objects import DCIODVFY, dciodvfy_errors
from tests.pacs.test_sr import ROW, report, segmentation

KOREAN = (b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7="  # PS3.5 I.2
          b"\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf")
JIS = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"

#: (file stem, SpecificCharacterSet, PatientName bytes, the name pydicom reads from them)
SOURCES = [
    ("japanese", ["", "ISO 2022 IR 87"], JIS, "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ("latin1_extended", "ISO 2022 IR 100", "Müller^Jürgen".encode("latin-1"), "Müller^Jürgen"),
    ("default_extended", "ISO 2022 IR 6", b"Doe^Jane", "Doe^Jane"),
    ("unknown_ascii", "ISO_IR 999", b"Doe^Jane", "Doe^Jane"),
    ("misspelt", "ISO-IR 100", "Gómez^Ana".encode("latin-1"), "Gómez^Ana"),
    ("latin1", "ISO_IR 100", "Müller^Jürgen".encode("latin-1"), "Müller^Jürgen"),
    ("utf8", "ISO_IR 192", "Łukasz^Żółć".encode(), "Łukasz^Żółć"),
    ("greek", "ISO_IR 126", "Δημήτρης".encode("iso8859_7"), "Δημήτρης"),
    ("korean", ["", "ISO 2022 IR 149"], KOREAN, "Hong^Gildong=洪^吉洞=홍^길동"),
]
#: Not copied with certainty: a set pydicom does not know with non-ASCII text, and bytes that do
#: not decode in their declared set.
REFUSED = [
    ("unknown_latin", "ISO_IR 999", "Müller^Jürgen".encode("latin-1"), "'ISO_IR 999'"),
    ("bad_utf8", "ISO_IR 192", b"M\xfcller^J\xfcrgen", "does not decode"),
]


def write_source(path: Path, charset, raw: bytes, laterality: str = "R", seed: int = 0) -> Path:
    ds = build_dicom(rgb_fundus(48, 64, seed=seed), laterality=laterality)
    path.write_bytes(with_raw_name(ds, charset, raw))
    return path


@pytest.mark.parametrize(("value", "expected"), [
    (["", "ISO 2022 IR 87"], ["", "ISO 2022 IR 87"]),  # the standard Japanese form, kept
    ("ISO 2022 IR 87", ["", "ISO 2022 IR 87"]),  # a multi-byte set is never value 1
    ("ISO 2022 IR 100", "ISO_IR 100"),  # one set with code extensions is that set
    ("ISO 2022 IR 13", "ISO_IR 13"),
    ("ISO 2022 IR 6", None), ("", None), (None, None), ("ISO_IR 6", None),
    ("ISO-IR 100", "ISO_IR 100"),  # pydicom's spelling correction
    (["ISO_IR 100", "ISO 2022 IR 87"], ["ISO 2022 IR 100", "ISO 2022 IR 87"]),
    (["ISO_IR 192", "ISO 2022 IR 87"], "ISO_IR 192"),  # pydicom ignores what follows UTF-8
    (["ISO 2022 IR 6", "ISO 2022 IR 87", "ISO 2022 IR 87"], ["", "ISO 2022 IR 87"]),
    ("ISO_IR 192", "ISO_IR 192"), ("GB18030", "GB18030"),
])
def test_the_derived_character_set(value, expected):
    from medig.pacs.charset import derived_charset

    ds = pydicom.Dataset()
    if value is not None:
        ds.SpecificCharacterSet = value
    ds.PatientName = "Doe^Jane"
    assert derived_charset(ds, ["PatientName"]) == expected


@pytest.mark.parametrize(("stem", "charset", "raw", "name"), SOURCES, ids=[s[0] for s in SOURCES])
def test_every_readable_character_set_gives_objects_with_the_source_name(tmp_path, stem, charset,
                                                                         raw, name):
    path = write_source(tmp_path / f"{stem}.dcm", charset, raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about a set it does not know
        source_name = str(pydicom.dcmread(path).PatientName)  # what the archive has for it
    assert source_name == name
    source = read_source(path)
    objects = {
        "sc.dcm": overlay_capture(source, rgb_fundus(20, 30), frame=None, laterality="R",
                                  output_key="k", instance_number=1, derivation="IG test"),
        "pdf.dcm": study_document([source], b"%PDF-1.4\n%%EOF\n", output_key="k"),
        "sr.dcm": report(source),
        "seg.dcm": segmentation(source),
    }
    for file, ds in objects.items():
        ds.save_as(tmp_path / file, enforce_file_format=True)
        back = pydicom.dcmread(tmp_path / file)
        assert str(back.PatientName) == name, file
        assert back.PatientID == PHI["PatientID"] and back.StudyInstanceUID == source.study_uid
        if DCIODVFY is not None:
            assert dciodvfy_errors(tmp_path / file) == [], (stem, file)


@pytest.mark.parametrize(("stem", "charset", "raw", "why"), REFUSED, ids=[s[0] for s in REFUSED])
def test_text_that_cannot_be_copied_with_certainty_is_refused_without_quoting_it(tmp_path, stem,
                                                                                 charset, raw,
                                                                                 why):
    from medig.pacs.charset import UncopyableText

    source = read_source(write_source(tmp_path / f"{stem}.dcm", charset, raw))
    for build in (lambda: overlay_capture(source, rgb_fundus(20, 30), frame=None, laterality="R",
                                          output_key="k", instance_number=1, derivation="x"),
                  lambda: study_document([source], b"%PDF-1.4\n", output_key="k"),
                  lambda: report(source), lambda: segmentation(source)):
        with pytest.raises(UncopyableText) as caught:
            build()
        assert why in str(caught.value)
        assert "ller" not in str(caught.value)  # the name is never quoted


def test_medig_text_the_source_set_cannot_hold_switches_the_object_to_utf8(tmp_path):
    """A model path in Greek cannot be written in Latin-1: the object becomes UTF-8 rather than
    carrying '?' (pydicom's silent replacement)."""
    source = read_source(write_source(tmp_path / "l.dcm", "ISO_IR 100", "Müller^Jürgen".encode(
        "latin-1")))
    derivation = "IG of the model /models/μοντέλο.pt"
    sc = overlay_capture(source, rgb_fundus(20, 30), frame=None, laterality="R", output_key="k",
                         instance_number=1, derivation=derivation)
    sc.save_as(tmp_path / "sc.dcm", enforce_file_format=True)
    back = pydicom.dcmread(tmp_path / "sc.dcm")
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.DerivationDescription == derivation
    assert str(back.PatientName) == "Müller^Jürgen"


def test_class_names_the_source_set_cannot_hold_switch_the_report_to_utf8(tmp_path):
    """A class named in Greek, a Latin-1 source: the report is written in UTF-8 and gives the
    name back, and the patient's name stays as the source has it."""
    from medig.pacs import read_sr

    source = read_source(write_source(tmp_path / "l.dcm", "ISO_IR 100", "Müller^Jürgen".encode(
        "latin-1")))
    row = {**ROW, "predicted": "αμφιβληστροειδοπάθεια", "target": "αμφιβληστροειδοπάθεια",
           "probabilities": {"αμφιβληστροειδοπάθεια": 0.9}}
    report(source, row).save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    back = pydicom.dcmread(tmp_path / "sr.dcm")
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName) == "Müller^Jürgen"
    assert read_sr(tmp_path / "sr.dcm")["predicted"] == row["predicted"]
    if DCIODVFY is not None:
        assert dciodvfy_errors(tmp_path / "sr.dcm") == []


@pytest.mark.slow
def test_one_character_set_never_stops_the_dicom_output_of_the_others(tmp_path, caplog, capsys):
    """Sources in every set the reader audits, two studies of plain sources and one source that
    cannot be copied: each source gets its objects and is sent, but that one (one line)."""
    root = tmp_path / "in"
    make_studies(root, n_studies=1)
    for k, (stem, charset, raw, _) in enumerate(SOURCES[:4] + REFUSED[:1]):
        write_source(root / f"{stem}.dcm", charset, raw, seed=k + 3)
    server = StorageSCP(tmp_path / "archive").start()
    out = tmp_path / "out"
    try:
        with caplog.at_level("WARNING", logger="medig"):
            code = main(["audit", str(root), "--out", str(out), *TINY_ARGS, "--dicom-out",
                         "--include-phi", "--send", server.destination])
        stored = server.stored()
    finally:
        server.stop()
    assert code == EXIT_NOT_SENT  # finished; one source's objects could not be made
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no DICOM")]
    assert lines == [("no DICOM objects for unknown_latin.dcm: its character set 'ISO_IR 999' is "
                      "not a DICOM character set and its patient or study text is not plain ASCII")]
    printed = capsys.readouterr()
    console = printed.out + printed.err + "\n".join(r.getMessage() for r in caplog.records)
    assert "1 source(s) or study page(s) got no DICOM objects" in printed.err
    for value in [*PHI.values(), "Müller", "ller^J", *(s[3] for s in SOURCES)]:
        assert value not in console
    rows = {r["path"]: r for r in read_results(out / "results.jsonl")}
    made = {p.relative_to(out / "dicom").as_posix() for p in dicom_objects(out)}
    expected_sources = ["patient0_0.dcm", "patient0_1.dcm", *(f"{s[0]}.dcm" for s in SOURCES[:4])]
    assert made == ({f"{kind}/{n}.dcm" for n in expected_sources
                     for kind in ("overlays", "sr", "maps")}
                    | {f"studies/{rows[n]['study']}.dcm" for n in expected_sources})
    objects = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p)
               for p in dicom_objects(out)}
    assert set(stored) == set(objects)  # everything that was made was sent
    names = Counter(str(ds.PatientName) for ds in stored.values())
    for _, _, _, name in SOURCES[:4]:
        assert names[name] >= 4  # its overlay, report, map and its study's PDF, in the archive
    for kind in ("overlays", "sr", "maps"):
        japanese = pydicom.dcmread(out / "dicom" / kind / "japanese.dcm.dcm")
        assert str(japanese.PatientName) == SOURCES[0][3]
        assert japanese.SpecificCharacterSet == ["", "ISO 2022 IR 87"]


@pytest.mark.slow
def test_dicom_out_alone_still_exits_0_when_every_set_is_copied(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for k, (stem, charset, raw, _) in enumerate(SOURCES[:3]):
        write_source(root / f"{stem}.dcm", charset, raw, seed=k)
    out = tmp_path / "out"
    code = main(["audit", str(root), "--out", str(out), *TINY_ARGS, "--dicom-out",
                 "--include-phi"])
    assert code == EXIT_OK
    assert len([p for p in dicom_objects(out) if p.parent.name == "overlays"]) == 3
