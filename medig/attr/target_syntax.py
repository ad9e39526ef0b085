# SPDX-License-Identifier: Apache-2.0
"""The ``--target`` syntax: text that names what IG explains, turned into a class or a group.

``"pred"`` is each image's predicted class, an index or a class name is that class, and
``"NAME=C1,C2,..."`` is a :class:`~medig.attr.class_group.ClassGroup` (classes by name or index).
The audit's ``--target`` and the targets models declare (:mod:`medig.models.loading`) are read
here, so both accept the same text and give the same one-line errors.
"""
from __future__ import annotations

from collections.abc import Sequence

from medig.attr.class_group import ClassGroup, class_index

__all__ = ["parse_target"]


def parse_target(text: str | int | None, class_names: Sequence[str]) -> int | ClassGroup | None:
    """A target as the audit's ``--target`` gives it, resolved against ``class_names``.

    ``"pred"`` (or None) is the predicted class (None); an index or a class name is that class; a
    group is ``"NAME=C1,C2,..."`` with classes by name or index, e.g. ``"referable DR=2,3,4"``.
    An exact class name wins over the group syntax, so a class named ``"a=b"`` stays a class.

    Raises
    ------
    ValueError
        Unknown class, index out of range, or a malformed group; one line listing the classes.
    """
    names = [str(c) for c in class_names]
    if text is None or text == "pred":
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        return class_index(text, names, None)
    text = str(text)
    if text in names:
        return names.index(text)
    if text.strip().lstrip("-").isdigit():
        return class_index(int(text), names, None)
    if "=" in text:
        name, _, members = text.partition("=")
        parts = [m.strip() for m in members.split(",")]
        if not name.strip() or not members.strip() or any(not p for p in parts):
            raise ValueError(f"target {text!r}: a group is NAME=C1,C2,... with classes by name "
                             "or index, e.g. 'referable DR=2,3,4'")
        return ClassGroup(name, parts).resolve(names)
    raise ValueError(f"target {text!r} is not a class name; classes: {', '.join(names)} "
                     "(or 'pred', an index, or a group NAME=C1,C2,...)")
