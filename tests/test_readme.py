# SPDX-License-Identifier: Apache-2.0
"""The README and docs/ are part of the contract.

The README's Quick start is two lines, and CI runs the second. The README stays a short front
door that links every page under docs/; every link resolves; every ``medig`` option, Python name
and file path the pages mention exists; the Python examples run.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest

from medig.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: One page per concern; the README links each of them.
CONCERN_PAGES = ("outputs", "trust-checks", "completeness", "quality", "models", "pacs", "cluster",
                 "limits")
README_MAX_BYTES = 8192
IMAGE_MAX_BYTES = 200_000

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"``?([^`\n]+?)``?")
LINK = re.compile(r"!?\[(?:[^\]\n]|\n(?!\n))*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)"
                  r"|(?:src|href)=\"([^\"]+)\"")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
COMMAND = re.compile(r"\bmedig\s+(audit|report)\b(.*)")
REPO_PATH = re.compile(r"^(?:medig|bench|templates|examples|tests|docs|\.ci)/[\w./-]*$")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text)]


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def inline_code(text: str) -> list[str]:
    return [m.group(1).strip() for m in INLINE_CODE.finditer(prose(text))]


def links(text: str) -> list[str]:
    # Code (fenced or inline) shows link syntax without linking.
    text = INLINE_CODE.sub("", prose(text))
    return [m.group(1) or m.group(2) for m in LINK.finditer(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, markup and punctuation dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for match in HEADING.finditer(prose(read(path))):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def resolve(page: Path, link: str) -> tuple[Path, str] | None:
    """The file and anchor a relative link points at; None for links to other sites."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE):
        return None
    target, _, anchor = link.partition("#")
    return (page.parent / target).resolve() if target else page, anchor


def linked_files(page: Path) -> set[Path]:
    """The files of this repository that a page links to."""
    return {target[0] for target in (resolve(page, link) for link in links(read(page))) if target}


def quick_start_lines() -> list[str]:
    match = re.search(r"^##\s+Quick start\s*$(.*?)^```[^\n]*\n(.*?)^```", read(README),
                      re.MULTILINE | re.DOTALL)
    assert match, "README.md has no code block under '## Quick start'"
    return [ln.strip() for ln in match.group(2).splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def test_quick_start_has_two_lines_and_ci_runs_the_test_line():
    lines = quick_start_lines()
    assert len(lines) == 2
    assert "medig audit examples/fundus" in lines[0]
    assert lines[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_is_a_short_front_door():
    size = len(README.read_bytes())
    assert size < README_MAX_BYTES, f"README.md is {size} bytes; move detail to docs/"


def test_every_docs_page_is_linked_from_the_readme():
    pages = sorted(DOCS.glob("*.md"))
    assert {p.stem for p in pages} >= set(CONCERN_PAGES)
    linked = linked_files(README)
    missing = [p.name for p in pages if p.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


def test_every_relative_link_resolves_to_a_file_and_anchor():
    broken = []
    for page in markdown_files():
        for link in links(read(page)):
            target = resolve(page, link)
            if target is None:
                continue
            path, anchor = target
            if not path.exists():
                broken.append(f"{page.name}: {link} (no such file)")
            elif anchor and (path.suffix != ".md" or anchor not in anchors(path)):
                broken.append(f"{page.name}: {link} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_docs_image_is_shown_and_small():
    shown = set().union(*map(linked_files, markdown_files()))
    images = sorted((DOCS / "images").glob("*"))
    assert images
    for image in images:
        assert image.resolve() in shown, f"{image.name} is shown on no page"
        assert image.stat().st_size < IMAGE_MAX_BYTES, f"{image.name} is too large"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _option_uses() -> list[tuple[str, str, str, str | None]]:
    """``(page, command, option, following token)`` for every ``--option`` shown for medig."""
    uses = []
    for page in markdown_files():
        text = read(page)
        commands = []
        for _, body in code_blocks(text):
            for line in body.replace("\\\n", " ").splitlines():
                match = COMMAND.search(line)
                if match:
                    commands.append((match.group(1), match.group(2)))
        # An inline span that starts with an option is an audit option (or report's).
        for span in inline_code(text):
            match = COMMAND.search(span)
            if match:
                commands.append((match.group(1), match.group(2)))
            elif span.startswith("--"):
                commands.append(("any", span))
        for command, rest in commands:
            try:
                tokens = shlex.split(rest, comments=True)
            except ValueError:
                tokens = rest.split()
            for i, token in enumerate(tokens):
                if token.startswith("--"):
                    following = tokens[i + 1] if i + 1 < len(tokens) else None
                    uses.append((page.name, command, token.split("=")[0], following))
    return uses


def test_medig_options_in_the_docs_exist():
    parsers = _subcommands()
    uses = _option_uses()
    assert any(use[1] == "audit" for use in uses) and any(use[1] == "report" for use in uses)
    wrong = []
    for page, command, option, following in uses:
        candidates = [parsers[command]] if command in parsers else list(parsers.values())
        actions = [p._option_string_actions.get(option) for p in candidates]
        actions = [a for a in actions if a is not None]
        if not actions:
            shown = f"medig {command}" if command in parsers else "medig audit or medig report"
            wrong.append(f"{page}: {option} is not an option of {shown}")
            continue
        choices = actions[0].choices
        if choices and following and not following.startswith("-"):
            wrong += [f"{page}: {option} {value} is not one of {sorted(choices)}"
                      for value in following.split("|") if value not in choices]
    assert not wrong, "\n".join(wrong)


def _resolve_name(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_medig_names_and_paths_in_the_docs_exist():
    names, paths = set(), set()
    for page in markdown_files():
        for span in inline_code(read(page)):
            match = re.match(r"medig(?:\.[A-Za-z_]\w*)+", span)
            if match:
                names.add(match.group(0))
            if REPO_PATH.match(span):
                paths.add(span)
    assert "medig.FundusIntegratedGradients" in names and "templates/report.toml" in paths
    missing = []
    for name in sorted(names):
        try:
            _resolve_name(name)
        except (ImportError, AttributeError):
            missing.append(name)
    missing += [p for p in sorted(paths) if not (ROOT / p).exists()]
    assert not missing, f"named in the docs but not in the package or repository: {missing}"


def test_python_blocks_parse_and_their_imports_exist():
    blocks = [(page.name, body) for page in markdown_files()
              for lang, body in code_blocks(read(page)) if lang == "python"]
    assert len(blocks) >= 3
    missing = []
    for page, body in blocks:
        for node in ast.walk(ast.parse(body)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
            elif isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                missing += [f"{page}: {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name)]
    assert not missing, missing


def _python_block(page: Path, index: int = 0) -> str:
    return [body for lang, body in code_blocks(read(page)) if lang == "python"][index]


@pytest.mark.slow
@pytest.mark.parametrize("page", [README, DOCS / "python-api.md"], ids=lambda p: p.name)
def test_the_python_api_example_runs_and_its_attributions_are_complete(page, monkeypatch):
    monkeypatch.chdir(ROOT)
    scope: dict[str, object] = {}
    exec(compile(_python_block(page), str(page), "exec"), scope)  # noqa: S102 - our own docs
    x, expl = scope["x"], scope["expl"]
    assert tuple(x.shape) == (1, 3, 256, 256)
    assert expl.attributions.shape == x.shape
    # Completeness, as the example promises: the attributions add up to F(x) - F(x').
    total = expl.attributions.sum().item()
    change = (expl.score - expl.baseline_score).item()
    assert abs(total - change) <= expl.abs_tol.item() + 1e-6
    assert not bool(expl.flagged.any())
    if page.name == "python-api.md":
        # The trust-check example continues from this one.
        trust = _python_block(DOCS / "trust-checks.md")
        exec(compile(trust, "trust-checks.md", "exec"), scope)  # noqa: S102 - our own docs
        assert scope["agreement"].shape == (1,)
        assert scope["curve"].faithfulness.shape == (1,)
        assert isinstance(scope["sanity"].passed, bool)
