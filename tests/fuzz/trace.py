# SPDX-License-Identifier: Apache-2.0
"""Which audit steps exist, and which ones an audit really ran.

:func:`step_classes` finds every step class in ``medig`` from the source text (no import): a class
whose ``__call__`` takes an :class:`~medig.audit.steps.batch.ImageBatch` (a batch step) or a
:class:`~medig.audit.finalise.FinishedAudit` (an audit step), and any class with a ``__call__`` in a
module named ``steps`` or inside a ``steps`` package. Protocol classes are left out.

``python -m tests.fuzz.trace LOG [--clock-shift SECONDS] medig-arguments...`` runs
:func:`medig.cli.main` (the same command, in the same process) with two observers, then exits
with its code (``--clock-shift``: ``datetime.datetime`` runs that far ahead, as for a re-run on a
later day):

- the ``__call__`` of every class :func:`step_classes` found records the class when it runs;
- whatever the step factories (``batch_steps``, ``audit_steps``) hand to the pipeline and is not
  such a class (a function, a class the source scan missed) is wrapped to record itself too.

A step is *called* when its ``__call__`` runs, and it *acted* when that call changed what it was
given or the audit folder: for a batch step, a result field or an attribute of the
``ImageBatch``; for an audit step, the rows or the manifest entries of the ``FinishedAudit``; for
either, a file under ``--out`` (its size or modification time). A step whose options leave it off
(``DicomExport`` without ``--dicom-out``, ``Localisation`` without masks) is called and does not
act. Each fact goes to ``LOG`` once, as ``called module.QualName`` or ``acted module.QualName``;
a step that acted once is not watched again. Nothing in ``medig`` changes on disk or needs a
test hook.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["read_log", "step_classes"]

PACKAGE = Path(__file__).resolve().parents[2] / "medig"
_STEP_ARGUMENTS = {"ImageBatch", "FinishedAudit"}


def _annotation_name(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.rsplit(".", 1)[-1].strip()
    return None


def _is_protocol(cls: ast.ClassDef) -> bool:
    return any(_annotation_name(base) == "Protocol" for base in cls.bases)


def _takes_step_argument(call: ast.FunctionDef) -> bool:
    args = call.args.posonlyargs + call.args.args
    return len(args) >= 2 and _annotation_name(args[1].annotation) in _STEP_ARGUMENTS


def step_classes(package: Path = PACKAGE) -> set[str]:
    """Dotted names (``medig.audit.steps.explain.Explain``) of every step class in ``package``."""
    found: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        in_steps = "steps" in parts
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or _is_protocol(node):
                continue
            calls = [f for f in node.body
                     if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                     and f.name == "__call__"]
            if calls and (in_steps or any(_takes_step_argument(f) for f in calls)):
                found.add(f"{module}.{node.name}")
    return found


def read_log(path: Path) -> tuple[set[str], set[str]]:
    """(steps called, steps that acted) according to a traced run's log."""
    called: set[str] = set()
    acted: set[str] = set()
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines:
        what, _, name = line.partition(" ")
        (acted if what == "acted" else called).add(name)
    return called, acted


def _files(out: Path | None) -> dict[str, tuple[int, int]]:
    if out is None or not out.is_dir():
        return {}
    found = {}
    for path in out.rglob("*"):
        try:
            st = path.lstat()
        except OSError:
            continue
        found[str(path)] = (st.st_mtime_ns, st.st_size)
    return found


def _state(arg: Any) -> Any:
    """What a step may change in its argument, as a comparable value."""
    if dataclasses.is_dataclass(arg):
        parts = []
        for f in dataclasses.fields(arg):
            value = getattr(arg, f.name)
            if f.name in ("fields", "rows"):
                parts.append(repr(value))
            elif f.name == "manifest":
                parts.append(json.dumps(value, sort_keys=True, default=repr))
            else:  # tensors and lists are replaced by the steps that produce them
                parts.append((id(value), len(value) if isinstance(value, list) else None))
        return parts
    return id(arg)


class _Recorder:
    """Writes each (fact, step) to the log once."""

    def __init__(self, log: Path, out: Path | None) -> None:
        self.log, self.out, self.seen = log, out, set()

    def __call__(self, what: str, name: str) -> None:
        if (what, name) not in self.seen:
            self.seen.add((what, name))
            with open(self.log, "a", encoding="utf-8") as fh:
                fh.write(f"{what} {name}\n")

    def run(self, name: str, step: Callable, *args: Any) -> Any:
        """Run ``step`` (the original ``__call__`` with its ``self``, or a step function) on the
        batch or finished audit ``args[-1]``, recording what it did."""
        self("called", name)
        if ("acted", name) in self.seen:
            return step(*args)
        state, files = _state(args[-1]), _files(self.out)
        try:
            return step(*args)
        finally:
            if _state(args[-1]) != state or _files(self.out) != files:
                self("acted", name)


def _observe_classes(record: _Recorder, names: Iterable[str]) -> set[type]:
    patched: set[type] = set()
    for dotted in sorted(names):
        module_name, _, cls_name = dotted.rpartition(".")
        cls = getattr(importlib.import_module(module_name), cls_name, None)
        if not isinstance(cls, type) or "__call__" not in vars(cls):
            continue
        original = cls.__call__

        @functools.wraps(original)
        def call(self: Any, arg: Any, _original: Callable = original,
                 _name: str = dotted) -> Any:
            return record.run(_name, _original, self, arg)

        cls.__call__ = call
        patched.add(cls)
    return patched


class _Unlisted:
    """A step of a kind :func:`step_classes` did not find, recording itself; its other
    attributes (``problem``, ``console_lines``) are the step's own."""

    def __init__(self, step: Any, record: _Recorder) -> None:
        target = step if inspect.isfunction(step) or inspect.ismethod(step) else type(step)
        self._step, self._record = step, record
        self._name = f"{target.__module__}.{target.__qualname__}"

    def __call__(self, arg: Any) -> Any:
        return self._record.run(self._name, self._step, arg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._step, name)


def _observe_factories(record: _Recorder, patched: set[type]) -> None:
    from medig.audit import auditor, pipeline

    batch_steps, audit_steps = auditor.batch_steps, pipeline.audit_steps

    def wrap(steps: Iterable[Any]) -> list[Any]:
        return [s if type(s) in patched else _Unlisted(s, record) for s in steps]

    def traced_batch_steps(*args: Any, **kwargs: Any) -> list[Any]:
        return wrap(batch_steps(*args, **kwargs))

    def traced_audit_steps(*args: Any, **kwargs: Any) -> tuple[list[Any], list[Any]]:
        before, after = audit_steps(*args, **kwargs)
        return wrap(before), wrap(after)

    auditor.batch_steps = traced_batch_steps
    pipeline.audit_steps = traced_audit_steps


def _shift_clock(seconds: float) -> None:
    """Make ``datetime.datetime.now`` (``utcnow``, ``today``) and ``datetime.date.today`` run
    ``seconds`` ahead, for every module that reads the clock through ``datetime`` after this
    call. The stand-in classes pass ``isinstance`` both ways (as freezegun's do), so libraries
    that check for a ``datetime`` accept the real ones and the shifted ones alike."""
    import datetime

    real_datetime, real_date = datetime.datetime, datetime.date
    delta = datetime.timedelta(seconds=seconds)

    class _Like(type):
        def __instancecheck__(cls, obj: Any) -> bool:
            return isinstance(obj, cls.__bases__[0])

        def __subclasscheck__(cls, sub: type) -> bool:
            return issubclass(sub, cls.__bases__[0])

    class ShiftedDatetime(real_datetime, metaclass=_Like):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real_datetime.now(tz) + delta

        @classmethod
        def utcnow(cls) -> Any:
            return real_datetime.utcnow() + delta

        @classmethod
        def today(cls) -> Any:
            return real_datetime.today() + delta

    class ShiftedDate(real_date, metaclass=_Like):
        @classmethod
        def today(cls) -> Any:
            return (real_datetime.now() + delta).date()

    datetime.datetime, datetime.date = ShiftedDatetime, ShiftedDate  # type: ignore[misc]


def main(argv: list[str]) -> int:
    log, args = Path(argv[0]), argv[1:]
    if args[:1] == ["--clock-shift"]:
        _shift_clock(float(args[1]))
        args = args[2:]
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    record = _Recorder(log, out)
    patched = _observe_classes(record, step_classes())
    _observe_factories(record, patched)
    from medig.cli import main as medig_main

    return medig_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
