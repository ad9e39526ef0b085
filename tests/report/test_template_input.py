# SPDX-License-Identifier: Apache-2.0
"""Hostile ``--template`` files give one clear line naming the file, never a traceback or a hang;
the template parser on Python 3.10 (tomli)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medig.cli import EXIT_USAGE, main
from medig.report import TemplateError, build_report, load_template
from medig.report.per_study import build_study_pages
from medig.report.template import (
    MAX_TEMPLATE_BYTES,
    MIN_TEXT_LIMIT,
    resolve_template,
    text_limit,
)
from tests.audit.conftest import TINY

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _load_within(path: Path, seconds: float = 20.0) -> BaseException | None:
    """The error ``load_template(path)`` raises, run in a thread so a blocking read fails the
    test instead of hanging it."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            load_template(path)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"load_template({path}) still running after {seconds} s"
    return outcome[0]


def _hostile(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (template path, words its error must contain)."""
    cases = {}
    latin1 = tmp_path / "latin1.toml"
    data = '[report]\ntitle = "Hôpital"\n'.encode("latin-1")
    latin1.write_bytes(data)
    cases["not UTF-8"] = (latin1, f"not UTF-8 text (byte 0xf4 at offset {data.index(0xf4)})")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    cases["FIFO"] = (fifo, "not a regular file")
    cases["device"] = (Path("/dev/zero"), "not a regular file")
    big = tmp_path / "big.toml"
    big.write_bytes(b"# padding\n" * (MAX_TEMPLATE_BYTES // 10 + 1))  # valid TOML, only comments
    cases["too large"] = (big, "larger than 1 MiB")
    title = tmp_path / "title.toml"
    title.write_text(f'[report]\ntitle = "{"T" * 300_000}"\n', encoding="utf-8")
    cases["long title"] = (title, "[report].title is 300000 characters long; at most 224")
    deep = tmp_path / "deep.toml"
    deep.write_text("[report]\nsections = " + "[" * 100_000 + "\n", encoding="utf-8")
    cases["nested"] = (deep, "nested too deeply")
    return cases


def test_hostile_templates_are_one_clear_error(tmp_path):
    for name, (path, words) in _hostile(tmp_path).items():
        start = time.monotonic()
        error = _load_within(path)
        assert isinstance(error, TemplateError), (name, error)
        message = str(error)
        assert words in message and str(path) in message, (name, message)
        assert "\n" not in message and len(message) < 300, (name, message)
        assert time.monotonic() - start < 10, name


def test_text_limits_follow_the_shipped_lengths():
    default = load_template()
    assert text_limit(default["report"]["title"]) == 4 * len(default["report"]["title"])
    assert text_limit(default["report"]["institution"]) == MIN_TEXT_LIMIT  # empty by default
    method = default["text"]["method"]
    ok = resolve_template({"text": {"method": "m" * text_limit(method)}})
    assert len(ok["text"]["method"]) == text_limit(method)
    with pytest.raises(TemplateError, match=r"\[text\]\.method is \d+ characters long"):
        resolve_template({"text": {"method": "m" * (text_limit(method) + 1)}})
    with pytest.raises(TemplateError, match=r"\[study\]\.left_eye is"):
        resolve_template({"study": {"left_eye": "L" * (MIN_TEXT_LIMIT + 1)}})
    # a wrong value of megabytes is quoted in a few characters, not in full
    with pytest.raises(TemplateError) as caught:
        resolve_template({"report": {"sections": ["x" * 10_000_000]}})
    assert len(str(caught.value)) < 400


def test_longest_allowed_texts_still_make_both_kinds_of_pages(tmp_path, monkeypatch):
    # Every text at its limit at once: the pages are still laid out, in seconds.
    from report_fake_audit import make_row, write_audit

    from tests.report.test_per_study import _rows

    out = write_audit(tmp_path / "audit", [*_rows(), make_row("clinic/eye_003.png")], size=128)
    default = load_template()
    words = "Lorem ipsum dolor sit amet, consectetur adipiscing elit "
    longest = {table: {key: (words * (text_limit(value) // len(words) + 1))[:text_limit(value)]
                       for key, value in keys.items()
                       if isinstance(value, str) and key != "page_size"}
               for table, keys in default.items()}
    start = time.monotonic()
    assert build_report(out, template=longest).is_file()
    assert build_study_pages(out, template=longest)
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("command", ["report", "audit"])
def test_cli_bad_template_is_a_usage_error(command, tmp_path, capsys, audit_dir):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[report]\ntitle = "caf\xff"\n')
    if command == "report":
        argv = ["report", str(audit_dir), "--template", str(bad)]
    else:
        (tmp_path / "in").mkdir()
        argv = ["audit", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", TINY,
                "--workers", "0", "--quiet", "--template", str(bad)]
    pdf = audit_dir / "report.pdf"
    before = pdf.read_bytes() if pdf.exists() else None
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("medig: error: --template: report template") and str(bad) in err[0]
    assert "not UTF-8" in err[0]
    assert (pdf.read_bytes() if pdf.exists() else None) == before  # nothing written
    assert not (tmp_path / "out").exists()  # the audit did no work


_AS_ON_3_10 = """
import sys, tomllib, types
tomli = types.ModuleType("tomli")  # tomli's API is tomllib's
tomli.loads, tomli.TOMLDecodeError = tomllib.loads, tomllib.TOMLDecodeError
sys.modules["tomli"], sys.modules["tomllib"] = tomli, None  # importing tomllib now fails
sys.version_info = (3, 10, 13, "final", 0)
from medig.report.template import load_template, tomllib as parser
assert parser is tomli, parser
assert load_template()["report"]["page_size"] == "A4"
"""


@pytest.mark.slow
def test_python_3_10_reads_templates_with_tomli():
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["requires-python"] == ">=3.10"
    assert "tomli>=2; python_version < '3.11'" in project["dependencies"]
    done = subprocess.run([sys.executable, "-c", _AS_ON_3_10], cwd=root, capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
