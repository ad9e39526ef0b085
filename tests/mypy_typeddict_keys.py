# SPDX-License-Identifier: Apache-2.0
"""mypy plugin: ``row.get("key")`` on a TypedDict must name one of its keys.

mypy checks ``row["key"]`` against a TypedDict's keys but, following PEP 589, accepts any string in
``row.get(...)`` (it returns ``object``), so a misspelt field read with ``.get`` would pass
silently. medig reads result rows with ``.get`` (their fields are optional, see
:mod:`medig.report.rows`), so this plugin reports a literal key that the TypedDict does not have,
with mypy's own error code for an unknown key (``typeddict-item``), and leaves the inferred return
type to mypy's default plugin. Configured in ``pyproject.toml`` ([tool.mypy] plugins).
"""
from __future__ import annotations

from collections.abc import Callable

from mypy.errorcodes import TYPEDDICT_ITEM
from mypy.plugin import MethodContext, Plugin
from mypy.plugins.default import typed_dict_get_callback
from mypy.typeops import try_getting_str_literals
from mypy.types import Type, TypedDictType, get_proper_type

_GET = "typing.Mapping.get"  # how mypy names TypedDict.get for its plugins


def _checked_get(ctx: MethodContext) -> Type:
    receiver = get_proper_type(ctx.type)
    if isinstance(receiver, TypedDictType) and ctx.args and len(ctx.args[0]) == 1:
        keys = try_getting_str_literals(ctx.args[0][0], ctx.arg_types[0][0]) or []
        for key in keys:
            if key not in receiver.items:
                name = receiver.fallback.type.name
                ctx.api.fail(f'TypedDict "{name}" has no key "{key}"', ctx.context,
                             code=TYPEDDICT_ITEM)
    return typed_dict_get_callback(ctx)


class TypedDictKeysPlugin(Plugin):
    """Reports ``.get`` of a literal key that a TypedDict does not define."""

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return _checked_get if fullname == _GET else None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return TypedDictKeysPlugin
