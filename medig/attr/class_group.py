# SPDX-License-Identifier: Apache-2.0
"""Groups of classes as explanation targets: e.g. referable DR = moderate + severe + proliferative.

Diabetic-retinopathy models predict the five ICDR grades, while the clinical decision is a group
of them. IG explains the group's probability, ``P(group) = sum of P(c) over its classes``, through
a wrapped forward (:class:`~medig.attr.outputs.GroupProbability`); the integral is linear in the
output, so this equals the sum of the classes' attributions computed on a common path, but one
integration of the summed output needs only one adaptive schedule.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from medig.attr.explanation import Explanation

if TYPE_CHECKING:  # pragma: no cover
    from medig.attr.fundus_integrated_gradients import FundusIntegratedGradients

__all__ = ["ClassGroup", "GroupExplanation", "explain_class_group", "parse_target"]

#: Tolerance of the check that a forward returns probabilities (rows summing to one).
_PROBABILITY_ATOL = 1e-3


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
        indices = [_class_index(m, names, self.name) for m in self.members]
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


def _class_index(member: int | str, names: list[str], group: str | None) -> int:
    """The index of a class given by name or index (``group``: the group it belongs to, for the
    message; None for a single-class target)."""
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
        return _class_index(text, names, None)
    text = str(text)
    if text in names:
        return names.index(text)
    if text.strip().lstrip("-").isdigit():
        return _class_index(int(text), names, None)
    if "=" in text:
        name, _, members = text.partition("=")
        parts = [m.strip() for m in members.split(",")]
        if not name.strip() or not members.strip() or any(not p for p in parts):
            raise ValueError(f"target {text!r}: a group is NAME=C1,C2,... with classes by name "
                             "or index, e.g. 'referable DR=2,3,4'")
        return ClassGroup(name, parts).resolve(names)
    raise ValueError(f"target {text!r} is not a class name; classes: {', '.join(names)} "
                     "(or 'pred', an index, or a group NAME=C1,C2,...)")


@dataclass
class GroupExplanation(Explanation):
    """An :class:`~medig.attr.Explanation` of a class group's summed probability.

    ``score`` and ``baseline_score`` are ``P(group)`` at the input and at the baseline; ``target``
    is None (no single class is explained) and ``group`` holds the group (member indices).
    """

    group: ClassGroup | None = None


def explain_class_group(ig: FundusIntegratedGradients, inputs: Tensor, group: ClassGroup,
                        **kwargs: Any) -> GroupExplanation:
    """``ig.explain(inputs, target=group, **kwargs)``: IG of ``P(group)``.

    ``ig``'s forward must return class probabilities (rows of non-negative numbers summing to one,
    e.g. :func:`medig.explained_output`): a sum of logits has no meaning, so logits are refused
    rather than silently passed through a softmax medig cannot know the model lacks.
    """
    from medig.attr.fundus_integrated_gradients import FundusIntegratedGradients
    from medig.attr.outputs import GroupProbability

    indices = group.indices
    extra = kwargs.get("additional_forward_args")
    with torch.no_grad():
        outputs = ig._forward(inputs, extra)
    if outputs.ndim != 2 or max(indices) >= outputs.shape[1] or min(indices) < 0:
        raise ValueError(f"class group {group.name!r} ({list(indices)}) does not index the "
                         f"model's outputs of shape {tuple(outputs.shape)}")
    sums = outputs.detach().double().sum(dim=1)
    if bool((outputs < 0).any()) or not torch.allclose(sums, torch.ones_like(sums),
                                                        atol=_PROBABILITY_ATOL):
        raise ValueError(
            f"target=ClassGroup({group.name!r}, ...) explains a summed probability, but the "
            "forward function does not return probabilities (rows must be non-negative and sum "
            "to 1); build FundusIntegratedGradients on medig.explained_output(model)")
    grouped = FundusIntegratedGradients(GroupProbability(ig.forward_func, indices),
                                        baselines=ig.baselines,
                                        multiply_by_inputs=ig.multiplies_by_inputs)
    expl = grouped.explain(inputs, target=None, **kwargs)
    fields = {f.name: getattr(expl, f.name) for f in dataclasses.fields(Explanation)}
    fields["target"] = None
    return GroupExplanation(**fields, group=ClassGroup(group.name, indices))
