# SPDX-License-Identifier: Apache-2.0
"""What an audit explains: ``--target`` resolved against the model's classes, and described.

A target is ``pred`` (each image's predicted class), one class (by name or index), or a group of
classes ``"NAME=C1,C2,..."`` whose summed probability is explained (e.g. referable DR = moderate +
severe + proliferative). :func:`checked_target` resolves it once, when the audit's plan is built
(:func:`medig.audit.plan.resolve`, right after the model is loaded and before anything is
written), so a bad one is a usage error; :func:`describe_target` is what the manifest and report
say about it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medig.attr.class_group import ClassGroup
from medig.attr.target_syntax import parse_target
from medig.audit.errors import AuditUsageError
from medig.report.targets import declared_where

__all__ = ["checked_target", "describe_target", "resolve_target", "target_spec"]


def resolve_target(target: str | None, class_names: Sequence[str],
                   output: str = "probability") -> int | ClassGroup | None:
    """``--target``: None for ``pred``; the index of a class given by index or name; or a
    :class:`~medig.ClassGroup` for ``"NAME=C1,C2,..."`` (classes by name or index).

    Raises
    ------
    AuditUsageError
        An unknown class or index, a malformed group, or a group with ``output="logit"``.
    """
    try:
        resolved = parse_target(target, class_names)
    except ValueError as error:
        raise AuditUsageError(f"--target: {error}") from None
    if isinstance(resolved, ClassGroup) and output != "probability":
        raise AuditUsageError(
            f"--target {target!r} is a group of classes, explained as their summed probability; "
            f"--output {output} has no group equivalent (use --output probability, or one class)")
    return resolved


def target_spec(target: int | ClassGroup | None, class_names: Sequence[str]) -> str:
    """A resolved target in ``--target`` syntax: ``"pred"``, a class name, or ``"NAME=i,j,k"``."""
    if target is None:
        return "pred"
    if isinstance(target, ClassGroup):
        return target.resolve(class_names).spec()
    return str(class_names[target])


def checked_target(spec: str, class_names: Sequence[str], output: str = "probability",
                   source: str | None = None) -> int | ClassGroup | None:
    """``spec`` resolved against the class names (see :func:`resolve_target`), so an unknown
    class or a group explained as a logit stops the audit before it writes anything; a target the
    model declared (``source``, as in the manifest's ``target_source``) says where it came from.

    Raises
    ------
    AuditUsageError
    """
    where = declared_where(source)
    try:
        return resolve_target(spec, class_names, output)
    except AuditUsageError as error:
        if where is None:
            raise
        raise AuditUsageError(f"the model declares the target {spec!r} ({where}), which does "
                              f"not work here ({str(error).removeprefix('--target: ')}); pass "
                              "--target pred or a class") from None


def describe_target(target: int | ClassGroup | None, spec: str, class_names: Sequence[str],
                    output: str, source: str | None) -> dict[str, Any]:
    """What the audit explains, for ``manifest.json`` and the report: kind (``predicted``,
    ``class`` or ``group``), name, member names and indices, the formula, and the source.

    Parameters
    ----------
    target : int, ClassGroup or None
        The resolved target (:func:`checked_target`); None for the predicted class.
    spec : str
        The target as given or declared (``--target`` syntax).
    class_names : sequence of str
    output : str
        The explained output, ``"probability"`` or ``"logit"``.
    source : str or None
        Where the target came from (the manifest's ``target_source``).
    """
    names = list(class_names)
    out: dict[str, Any] = {"spec": spec, "source": source}
    if target is None:
        out.update(kind="predicted", name=None, members=None, indices=None)
    elif isinstance(target, ClassGroup):
        out.update(kind="group", name=target.name, members=target.member_names(names),
                   indices=list(target.indices), formula=target.formula(names))
    else:
        out.update(kind="class", name=names[target], members=[names[target]], indices=[target])
    out["output"] = output
    return out
