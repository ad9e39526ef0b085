# SPDX-License-Identifier: Apache-2.0
"""report.html without a browser: its data blob, its policy, its determinism and what it leaves out."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from report_fake_audit import make_row, write_audit

from medig.report.html import build_html
from medig.report.html.payload import json_for_script

HOSTILE = ["<img src=x onerror=alert(1)>.png", 'a&b "q".png', "x</script><script>alert(2)</script>.png",
           "y<!--z.png", "line\u2028sep.png"]


class _Scan(HTMLParser):
    """Elements and the text of the data blob, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.blob: list[str] = []
        self._in_blob = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_blob = tag == "script" and dict(attrs).get("type") == "application/json"

    def handle_endtag(self, tag):
        self._in_blob = False

    def handle_data(self, data):
        if self._in_blob:
            self.blob.append(data)


def _scan(path: Path) -> _Scan:
    scan = _Scan()
    scan.feed(path.read_text(encoding="utf-8"))
    return scan


def _rows(scan: _Scan) -> list[dict]:
    data = json.loads("".join(scan.blob))
    return [dict(zip(data["columns"], r)) for r in data["rows"]]


def test_hostile_names_stay_inside_the_data_blob(tmp_path):
    rows = [make_row(name) for name in HOSTILE] + [
        make_row("bad.dcm", status="error", error="</script><b>broken</b>", overlay=None)]
    out = write_audit(tmp_path / "audit", rows)
    scan = _scan(build_html(out))
    scripts = [a for t, a in scan.tags if t == "script"]
    assert len(scripts) == 2  # the data blob and the page's own script, nothing injected
    assert not [a for t, a in scan.tags if t == "img"]  # images are made by the script only
    assert {r["path"] for r in _rows(scan)} == set(HOSTILE) | {"bad.dcm"}
    errors = [r for r in _rows(scan) if r["status"] == "error"]
    assert errors[0]["error"] == "</script><b>broken</b>"


def test_json_for_script_escapes_what_could_end_the_element():
    text = json_for_script({"a": "</script><!--&\u2028\u2029"})
    assert not set("<>&") & set(text) and "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"a": "</script><!--&\u2028\u2029"}


def test_policy_forbids_remote_loads_and_inline_code_by_name(tmp_path):
    out = write_audit(tmp_path / "audit", [make_row("a.png")])
    text = build_html(out).read_text(encoding="utf-8")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1)
    rules = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert rules["default-src"] == "'none'"
    assert "'unsafe-inline'" not in csp and "http" not in csp and "*" not in csp
    assert rules["script-src"].startswith("'sha256-") and rules["style-src"].startswith("'sha256-")
    # nothing in the page points outside the audit folder
    assert not re.search(r'(src|href)="(https?:|//)', text)


def test_rebuilding_gives_the_same_bytes(tmp_path):
    out = write_audit(tmp_path / "audit", [make_row("a.png"), make_row("b.png", flagged=True)])
    first = build_html(out).read_bytes()
    assert build_html(out).read_bytes() == first


def test_every_row_and_column_reaches_the_page(tmp_path):
    rows = [make_row("a.png", map_error=0.031, trust_flags=["not-faithful"], flagged=True),
            make_row("b.png", map_error=None)]
    out = write_audit(tmp_path / "audit", rows)
    got = {r["path"]: r for r in _rows(_scan(build_html(out)))}
    assert got["a.png"]["map_error"] == 0.031
    assert got["a.png"]["flags"] == ["incomplete", "not-faithful"]
    assert got["a.png"]["probability"] == 0.873
    assert got["a.png"]["overlay"] == "overlays/a.png.png"
    assert got["b.png"]["flags"] == []


def test_no_map_error_column_when_no_row_has_it(tmp_path):
    out = write_audit(tmp_path / "audit", [make_row("a.png")])
    assert "map_error" not in _rows(_scan(build_html(out)))[0]


def test_metadata_only_with_include_phi(tmp_path):
    rows = [make_row("a.png", metadata={"PatientName": "Doe^Jane", "PatientID": "PID-778899"})]
    out = write_audit(tmp_path / "audit", rows,
                      manifest_extra={"inputs": ["/data/Doe^Jane/PID-778899"]})
    plain = build_html(out).read_bytes()
    assert b"Doe^Jane" not in plain and b"PID-778899" not in plain
    with_phi = build_html(out, include_phi=True).read_bytes()
    assert b"Doe^Jane" in with_phi


def test_assets_are_package_data():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["medig.report.html"]
    assets = [p for p in (root / "medig" / "report" / "html").iterdir() if p.suffix != ".py"
              and p.is_file()]
    assert {p.name for p in assets} >= {"browser.js", "browser.css"}
    assert all(any(p.match(g) for g in globs) for p in assets)


def test_script_never_parses_data_as_html():
    script = (Path(__file__).resolve().parents[2] / "medig" / "report" / "html"
              / "browser.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"style\"", "setAttribute('style'"):
        assert sink not in script, sink
    assert "textContent" in script


def test_rows_list_the_baseline_images_that_exist(tmp_path):
    folders = {"black": "report_files/baselines/black", "blur": "report_files/baselines/blur"}
    out = write_audit(tmp_path / "audit", [make_row("a.png"), make_row("b.png"),
                                           make_row("bad.png", status="error", overlay=None)],
                      manifest_extra={"baseline_overlays": folders})
    for folder in folders.values():
        (out / folder).mkdir(parents=True)
        (out / folder / "a.png.png").write_bytes(b"png")  # b.png: stored by an older medig
    (out / "report_files/baselines/blur/bad.png.png").write_bytes(b"png")
    data = json.loads("".join(_scan(build_html(out)).blob))
    assert data["meta"]["baseline_views"] == [{"name": "black", "dir": folders["black"]},
                                              {"name": "blur", "dir": folders["blur"]}]
    views = {r["path"]: r["views"] for r in _rows(_scan(out / "report.html"))}
    assert views == {"a.png": [0, 1], "b.png": None, "bad.png": None}


def test_no_baseline_views_from_folders_outside_the_audit(tmp_path):
    out = write_audit(tmp_path / "audit", [make_row("a.png")], manifest_extra={
        "baseline_overlays": {"black": "../elsewhere", "blur": "/abs"}})
    data = json.loads("".join(_scan(build_html(out)).blob))
    assert data["meta"]["baseline_views"] == [] and "views" not in data["columns"]
