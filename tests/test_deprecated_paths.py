# SPDX-License-Identifier: Apache-2.0
"""Old import paths and names keep working for one release, each with a DeprecationWarning, and
nothing in the repository uses them any more."""
from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Shim module -> (the module that now holds its names, a name it must still provide).
MOVED = {
    "medig.render": ("medig.visualize", "overlay"),
    "medig.synthetic_degrade": ("medig.synthetic.degrade", "degrade"),
    "medig.preprocess.fov": ("medig.preprocess.fov_detection", "detect_fov"),
}
#: Old MONAI names -> new names, in each module that served them.
RENAMED = {
    "medig.monai.array": {"FundusPreprocess": "PreprocessFundus",
                          "IntegratedGradients": "ComputeIntegratedGradients"},
    "medig.monai.dictionary": {
        **{f"FundusPreprocess{s}": "PreprocessFundusd" for s in ("d", "D", "Dict")},
        **{f"IntegratedGradients{s}": "ComputeIntegratedGradientsd" for s in ("d", "D", "Dict")},
    },
}
RENAMED["medig.monai"] = {**RENAMED["medig.monai.array"], **RENAMED["medig.monai.dictionary"]}


def _fresh_import(name: str) -> object:
    """Import ``name`` as if for the first time (the warning is issued once, on import)."""
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    if hasattr(sys.modules.get(parent), child):
        delattr(sys.modules[parent], child)
    return importlib.import_module(name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_warns_on_import_and_serves_the_new_objects(old):
    new, name = MOVED[old]
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated .* import from .*{new}"):
        shim = _fresh_import(old)
    target = importlib.import_module(new)
    assert getattr(shim, name) is getattr(target, name)
    for exported in shim.__all__:
        assert getattr(shim, exported) is not None


def test_the_moved_names_are_all_still_there():
    from medig.preprocess import field_of_view, fov_detection
    from medig.synthetic import degrade
    from medig.visualize import overlays

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        render = _fresh_import("medig.render")
        synthetic_degrade = _fresh_import("medig.synthetic_degrade")
        fov = _fresh_import("medig.preprocess.fov")
    # every name the old path had is still there, as the same object (new names need no shim)
    assert set(render.__all__) <= set(overlays.__all__)
    assert all(getattr(render, n) is getattr(overlays, n) for n in render.__all__)
    assert set(synthetic_degrade.__all__) >= set(degrade.__all__)
    assert set(fov.__all__) == ({"FOV_SHAPES", "FieldOfView", "circle_mask"}
                                | set(fov_detection.__all__))
    assert fov.circle_mask is field_of_view.circle_mask


@pytest.mark.parametrize("module", sorted(RENAMED))
def test_a_renamed_monai_transform_warns_on_use_and_is_the_new_class(module):
    mod = importlib.import_module(module)
    for old, new in RENAMED[module].items():
        with pytest.warns(DeprecationWarning, match=rf"{module}\.{old} is deprecated.*{new}"):
            value = getattr(mod, old)
        assert value is getattr(mod, new)
    with pytest.raises(AttributeError, match="no attribute 'FundusPreprocez'"):
        mod.FundusPreprocez  # noqa: B018


def test_new_names_and_from_imports_of_old_names():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        from medig.monai import (  # noqa: F401 - the new names import without a warning
            ComputeIntegratedGradients,
            PreprocessFundusd,
        )
        from medig.synthetic import generate  # noqa: F401 - the package, not a shim
    with pytest.warns(DeprecationWarning, match="medig.monai.FundusPreprocessd is deprecated"):
        from medig.monai import FundusPreprocessd
    assert FundusPreprocessd is PreprocessFundusd


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import in ``path``, functions included."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [a.name for a in node.names]))
    return found


def test_nothing_in_the_repository_uses_an_old_path_or_name():
    shims = {ROOT / "medig" / "render.py", ROOT / "medig" / "synthetic_degrade.py",
             ROOT / "medig" / "preprocess" / "fov.py", Path(__file__).resolve()}
    users = []
    for folder in ("medig", "tests", "bench", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path in shims:
                continue
            for module, names in _imports(path):
                full = {module, *(f"{module}.{n}" for n in names)}
                old_names = set(names) & set(RENAMED.get(module, {}))
                if full & (set(MOVED) | {"medig.preprocess._synthetic_disk"}) or old_names:
                    users.append(f"{path.relative_to(ROOT)}: {module} {sorted(old_names)}")
    assert users == []
