# SPDX-License-Identifier: Apache-2.0
"""Old import paths and names, kept for one release with a :class:`DeprecationWarning`.

A module that moved leaves a shim at its old path that re-exports the new module's names and calls
:func:`warn_moved` on import; a name that was renamed is served by the module's ``__getattr__``
through :func:`renamed_attribute`, which warns on every use. medig's own code imports neither.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["renamed_attribute", "warn_moved"]


def warn_moved(old: str, new: str) -> None:
    """Warn that module ``old`` is now ``new``; called at the top of the shim left at ``old``."""
    # stacklevel 3: the line importing the old path (warnings skips the import machinery's frames)
    warnings.warn(f"{old} is deprecated and will be removed in the next release; "
                  f"import from {new} instead", DeprecationWarning, stacklevel=3)


def renamed_attribute(module: str, renamed: Mapping[str, str], namespace: Mapping[str, Any],
                      name: str) -> Any:
    """The body of a module ``__getattr__`` that serves renamed names.

    Parameters
    ----------
    module : str
        The module's name, for the messages.
    renamed : mapping of str to str
        Old name to new name.
    namespace : mapping
        The module's ``globals()``, where the new names live.
    name : str
        The attribute asked for.

    Raises
    ------
    AttributeError
        ``name`` is neither an old name nor defined in the module.
    """
    if name in renamed:
        new = renamed[name]
        warnings.warn(f"{module}.{name} is deprecated and will be removed in the next release; "
                      f"use {module}.{new}", DeprecationWarning, stacklevel=3)
        return namespace[new]
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
