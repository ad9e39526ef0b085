# SPDX-License-Identifier: Apache-2.0
"""The editable report template: wording, title, institution, section order (``templates/report.toml``).

The template shipped with medig is the single source of defaults; a user template is merged over it key
by key, so it may hold only the keys it changes. Unknown sections in the order, unknown keys and values of
the wrong type raise :class:`TemplateError` naming the key (a misspelt key silently ignored would leave a
hospital's wording out of its reports).

A template is read only if it is a regular file of at most :data:`MAX_TEMPLATE_BYTES` in UTF-8, and each
text may be at most :data:`TEXT_LIMIT_FACTOR` times as long as the shipped one (at least
:data:`MIN_TEXT_LIMIT` characters): a FIFO would block, ``/dev/zero`` never end, a title of megabytes
would be laid out on every page, and the pages are laid out for texts of about the shipped lengths (a
table cell cannot grow past a page).
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import os
import sys
from pathlib import Path
from typing import Any

from medig.utils import NotRegularFileError, open_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the same parser, published as tomli
    import tomli as tomllib

__all__ = ["MAX_TEMPLATE_BYTES", "MIN_TEXT_LIMIT", "SECTIONS", "TEXT_LIMIT_FACTOR", "TemplateError",
           "default_template_path", "load_template", "merge_template", "resolve_template",
           "text_limit"]

#: Largest template file read (the shipped one is about 15 kB).
MAX_TEMPLATE_BYTES = 1 << 20
#: A template's text may be this many times as long as the base template's text for its key ...
TEXT_LIMIT_FACTOR = 4
#: ... or this many characters, if that is more (a title, an institution that is empty by default).
MIN_TEXT_LIMIT = 120

SECTIONS = (
    "summary",
    "completeness",
    "flagged",
    "errors",
    "localisation",
    "method",
    "images",
    "provenance",
    "target",  # what the colours mean (the explained class or group)
    "trust",
    "quality",
    "reliance",  # what the model relies on: findings and the region chart
)
"""Section names a template's ``[report].sections`` may list."""

Template = dict[str, dict[str, Any]]


class TemplateError(ValueError):
    """A report template is unreadable or holds an unknown or mistyped key."""


def default_template_path() -> Path:
    """Path of the template shipped with medig.

    Looked up as package data ``medig.templates/report.toml`` first, then in the source checkout's
    ``templates/`` folder (editable installs before the package data is wired up).
    """
    try:
        candidate = importlib.resources.files("medig.templates") / "report.toml"
        if candidate.is_file():
            return Path(str(candidate))
    except (ModuleNotFoundError, TypeError):
        pass
    path = Path(__file__).resolve().parents[2] / "templates" / "report.toml"
    if not path.is_file():
        raise TemplateError(f"the default report template was not found (looked for {path})")
    return path


def _read_toml(path: str | os.PathLike) -> Template:
    name = os.fsdecode(os.fspath(path))
    try:
        with open_regular(path) as fh:
            data = fh.read(MAX_TEMPLATE_BYTES + 1)
    except NotRegularFileError as exc:
        raise TemplateError(f"cannot read report template {name}: not a regular file (a FIFO, "
                            "device or folder): not read") from exc
    except OSError as exc:
        raise TemplateError(f"cannot read report template {name}: {exc.strerror or exc}") from exc
    if len(data) > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"report template {name} is larger than "
                            f"{MAX_TEMPLATE_BYTES // (1 << 20)} MiB: not read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"report template {name} is not UTF-8 text (byte "
                            f"0x{data[exc.start]:02x} at offset {exc.start})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"report template {name} is not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise TemplateError(f"report template {name} is not valid TOML: nested too "
                            "deeply") from exc


def text_limit(default: str) -> int:
    """The most characters a template may give a key whose base (shipped) text is ``default``.

    Parameters
    ----------
    default : str
        The key's text in the base template.

    Returns
    -------
    int
        ``max(MIN_TEXT_LIMIT, TEXT_LIMIT_FACTOR * len(default))``.
    """
    return max(MIN_TEXT_LIMIT, TEXT_LIMIT_FACTOR * len(default))


def _clip(text: str, limit: int = 60) -> str:
    """``text`` cut to a readable length for a message (a wrong value may be megabytes)."""
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _short(value: Any) -> str:
    return _clip(repr(value))


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def merge_template(base: Template, override: dict[str, Any], source: str = "template") -> Template:
    """Merge ``override`` over ``base`` key by key, validating names, types and the section order.

    Parameters
    ----------
    base : dict
        A complete template (e.g. the shipped default).
    override : dict
        Tables of keys to replace.
    source : str
        Name used in error messages (the file path).

    Returns
    -------
    dict
        A new template; ``base`` is not modified.

    Raises
    ------
    TemplateError
        Unknown table or key, wrong value type, a text longer than :func:`text_limit` of the base's
        text, or an unknown section name in ``[report].sections``.
    """
    merged = copy.deepcopy(base)
    for table, values in override.items():
        if table not in merged:
            raise TemplateError(
                f"{source}: unknown table [{_clip(table)}]{_suggest(table, merged)}"
            )
        if not isinstance(values, dict):
            raise TemplateError(f"{source}: [{table}] must be a table of keys")
        for key, value in values.items():
            if key not in merged[table]:
                raise TemplateError(
                    f"{source}: unknown key [{table}].{_clip(key)}{_suggest(key, merged[table])}"
                )
            expected = type(merged[table][key])
            if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise TemplateError(
                    f"{source}: [{table}].{key} must be an integer, got {_short(value)}"
                )
            if expected is not int and not isinstance(value, expected):
                raise TemplateError(
                    f"{source}: [{table}].{key} must be a {expected.__name__}, got {_short(value)}"
                )
            limit = text_limit(base[table][key]) if isinstance(value, str) else 0
            if isinstance(value, str) and len(value) > limit:
                raise TemplateError(f"{source}: [{table}].{key} is {len(value)} characters long; "
                                    f"at most {limit} fit the report's layout")
            merged[table][key] = value
    _validate(merged, source)
    return merged


def _validate(template: Template, source: str) -> None:
    report = template["report"]
    sections = report["sections"]
    if not all(isinstance(s, str) for s in sections):
        raise TemplateError(f"{source}: [report].sections must be a list of section names")
    for name in sections:
        if name not in SECTIONS:
            raise TemplateError(
                f"{source}: unknown section {_short(name)} in [report].sections"
                f"{_suggest(name, SECTIONS)}; "
                f"known sections: {', '.join(SECTIONS)}"
            )
    if len(set(sections)) != len(sections):
        raise TemplateError(f"{source}: [report].sections lists a section twice")
    if report["images_per_page"] not in (1, 2):
        raise TemplateError(f"{source}: [report].images_per_page must be 1 or 2")
    if report["max_images_full"] < 0 or report["sample_size"] < 0:
        raise TemplateError(f"{source}: [report].max_images_full and sample_size must be >= 0")
    if str(report["page_size"]).upper() not in ("A4", "LETTER"):
        raise TemplateError(f"{source}: [report].page_size must be 'A4' or 'letter'")


def load_template(path: str | os.PathLike | None = None) -> Template:
    """Load a report template, filling keys it does not set from the shipped default.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A TOML file in the format of ``templates/report.toml`` (documented there, key by key). ``None``
        returns the shipped default.

    Returns
    -------
    dict
        ``{"report": {...}, "headings": {...}, "text": {...}}``, complete.

    Raises
    ------
    TemplateError
        A file that cannot be read, is not a regular file, is larger than :data:`MAX_TEMPLATE_BYTES`
        or is not UTF-8; invalid TOML; an unknown table, key or section; a value of the wrong type;
        or a text longer than :func:`text_limit` allows.
    """
    default_path = default_template_path()
    base = _read_toml(default_path)
    _validate(base, str(default_path))
    if path is None:
        return base
    return merge_template(base, _read_toml(path), source=str(path))


def resolve_template(template: str | os.PathLike | dict[str, Any] | None) -> Template:
    """A template given as a path (None: the default) or as a dict of overrides of the default."""
    if template is None or isinstance(template, (str, os.PathLike)):
        return load_template(template)
    return merge_template(load_template(None), template, source="template")
