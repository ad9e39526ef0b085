# SPDX-License-Identifier: Apache-2.0
"""The editable report template: wording, title, institution, section order (``templates/report.toml``).

The template shipped with medig is the single source of defaults; a user template is merged over it key
by key, so it may hold only the keys it changes. Unknown sections in the order, unknown keys and values of
the wrong type raise :class:`TemplateError` naming the key (a misspelt key silently ignored would leave a
hospital's wording out of its reports).
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import os
from pathlib import Path
from typing import Any

import tomllib

__all__ = ["SECTIONS", "TemplateError", "default_template_path", "load_template", "merge_template",
           "resolve_template"]

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
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise TemplateError(f"cannot read report template {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"report template {path} is not valid TOML: {exc}") from exc
    return data


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
        Unknown table or key, wrong value type, or an unknown section name in ``[report].sections``.
    """
    merged = copy.deepcopy(base)
    for table, values in override.items():
        if table not in merged:
            raise TemplateError(f"{source}: unknown table [{table}]{_suggest(table, merged)}")
        if not isinstance(values, dict):
            raise TemplateError(f"{source}: [{table}] must be a table of keys")
        for key, value in values.items():
            if key not in merged[table]:
                raise TemplateError(
                    f"{source}: unknown key [{table}].{key}{_suggest(key, merged[table])}"
                )
            expected = type(merged[table][key])
            if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise TemplateError(f"{source}: [{table}].{key} must be an integer, got {value!r}")
            if expected is not int and not isinstance(value, expected):
                raise TemplateError(
                    f"{source}: [{table}].{key} must be a {expected.__name__}, got {value!r}"
                )
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
                f"{source}: unknown section {name!r} in [report].sections{_suggest(name, SECTIONS)}; "
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
        Unreadable file, invalid TOML, unknown table/key/section, or a value of the wrong type.
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
