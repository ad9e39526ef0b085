# SPDX-License-Identifier: Apache-2.0
"""Errors of model loading: one-line messages naming the file or spec and the reason."""
from __future__ import annotations

__all__ = ["ModelArgumentError", "ModelLoadError"]


class ModelLoadError(Exception):
    """A model spec or weights file that medig cannot (or will not) load; one-line message."""


class ModelArgumentError(ModelLoadError):
    """A user-given model argument is wrong (a keyword the architecture does not take, a class
    group naming an unknown class, a malformed value): a usage error rather than a bad file."""
