# SPDX-License-Identifier: Apache-2.0
"""Groups of classes as explanation targets: e.g. referable DR = moderate + severe + proliferative.

Diabetic-retinopathy models predict the five ICDR grades, while the clinical decision is a group
of them. IG explains the group's probability, ``P(group) = sum of P(c) over its classes``, through
a wrapped forward (:class:`~medig.attr.outputs.GroupProbability`); the integral is linear in the
output, so this equals the sum of the classes' attributions computed on a common path, but one
integration of the summed output needs only one adaptive schedule.

This module holds the values only: :class:`ClassGroup` and :class:`GroupExplanation`. The
``--target`` text is parsed in :mod:`medig.attr.target_syntax`, and
:class:`~medig.FundusIntegratedGradients` explains a group in ``attribute`` and ``explain``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from medig.attr.explanation import Explanation

__all__ = ["ClassGroup", "GroupExplanation", "class_index"]


@dataclass(frozen=True)
class ClassGroup:
    """A named group of classes whose summed probability is explained.

    Parameters
    ----------
    name : str
        What the group means, e.g. ``"referable DR"``.
    members : sequence of int or str
        The classes, by output index or by name; names are turned into indices by
        :meth:`resolve` (the audit does this with the model's class names).

    Examples
    --------
    >>> ClassGroup("referable DR", [2, 3, 4])
    ClassGroup(name='referable DR', members=(2, 3, 4))
    >>> ClassGroup("referable DR", ["moderate", "severe"]).resolve(
    ...     ["none", "mild", "moderate", "severe"])
    ClassGroup(name='referable DR', members=(2, 3))
    """

    name: str
    members: tuple[int | str, ...]

    def __init__(self, name: str, members: Sequence[int | str]) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a class group needs a name, e.g. "
                             "ClassGroup('referable DR', [2, 3, 4])")
        if isinstance(members, (str, bytes)) or not isinstance(members, Sequence) or not members:
            raise ValueError(f"class group {name!r} needs a non-empty list of classes")
        items: list[int | str] = []
        for m in members:
            if isinstance(m, bool) or not isinstance(m, (int, str)):
                raise ValueError(f"class group {name!r}: {m!r} is neither a class index nor a name")
            items.append(int(m) if not isinstance(m, str) else m)
        if len(set(items)) != len(items):
            raise ValueError(f"class group {name!r} lists a class twice: {items}")
        object.__setattr__(self, "name", name.strip())
        object.__setattr__(self, "members", tuple(items))

    @property
    def indices(self) -> tuple[int, ...]:
        """The member indices; raises ValueError while members are still given by name."""
        named = [m for m in self.members if isinstance(m, str)]
        if named:
            raise ValueError(f"class group {self.name!r} names classes ({', '.join(named)}); "
                             "resolve it with group.resolve(class_names) first")
        return tuple(int(m) for m in self.members)

    def resolve(self, class_names: Sequence[str]) -> ClassGroup:
        """The same group with every member as an index into ``class_names``.

        Raises
        ------
        ValueError
            A member that is neither a class name nor an index in range (the message lists the
            classes), or two members naming the same class.
        """
        names = [str(c) for c in class_names]
        indices = [class_index(m, names, self.name) for m in self.members]
        if len(set(indices)) != len(indices):
            raise ValueError(f"class group {self.name!r} lists a class twice")
        return ClassGroup(self.name, indices)

    def member_names(self, class_names: Sequence[str]) -> list[str]:
        """The members' class names, in the group's order."""
        return [str(class_names[i]) for i in self.resolve(class_names).indices]

    def formula(self, class_names: Sequence[str]) -> str:
        """``"P(referable DR) = P(moderate) + P(severe) + P(proliferative)"``."""
        parts = " + ".join(f"P({n})" for n in self.member_names(class_names))
        return f"P({self.name}) = {parts}"

    def spec(self) -> str:
        """The group as the audit's ``--target`` syntax, ``"NAME=C1,C2,..."``."""
        return f"{self.name}={','.join(str(m) for m in self.members)}"


def class_index(member: int | str, names: Sequence[str], group: str | None) -> int:
    """The index in ``names`` of a class given by name or index.

    ``group`` is the group the class belongs to, for the message (None for a single-class target).

    Raises
    ------
    ValueError
        A name that is not a class, or an index out of range; the message lists the classes.
    """
    names = [str(n) for n in names]
    where = f"class group {group!r}: class" if group is not None else "target"
    if isinstance(member, str):
        if member in names:
            return names.index(member)
        text = member.strip()
        if text in names:
            return names.index(text)
        if text.lstrip("-").isdigit():
            member = int(text)
        else:
            raise ValueError(f"class group {group!r}: {member!r} is not a class of the model; "
                             f"classes: {', '.join(names)}")
    if not 0 <= member < len(names):
        raise ValueError(f"{where} {member} is out of range for {len(names)} classes "
                         f"(0 to {len(names) - 1})")
    return member


@dataclass
class GroupExplanation(Explanation):
    """An :class:`~medig.attr.Explanation` of a class group's summed probability.

    ``score`` and ``baseline_score`` are ``P(group)`` at the input and at the baseline; ``target``
    is None (no single class is explained) and ``group`` holds the group (member indices).
    """

    group: ClassGroup | None = None

    @classmethod
    def of(cls, explanation: Explanation, group: ClassGroup) -> GroupExplanation:
        """``explanation`` (of ``P(group)`` through a single-output forward) as the group's."""
        fields = {f.name: getattr(explanation, f.name) for f in dataclasses.fields(Explanation)}
        fields["target"] = None
        return cls(**fields, group=ClassGroup(group.name, group.indices))
