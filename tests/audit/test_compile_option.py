# SPDX-License-Identifier: Apache-2.0
"""``medig audit --compile``: the same numbers as eager, and a failing compiler never fails the audit."""
from __future__ import annotations

import json
import logging

import pytest
import torch

import medig.attr.compiled as compiled
from medig.audit import read_results
from medig.cli import EXIT_SOME_FILES_FAILED, main
from tests.audit.conftest import TINY

BASE = ["--model", TINY, "--classes", "healthy", "referable", "--size", "64",
        "--batch-size", "4", "--workers", "0", "--quiet", "--baseline", "black", "--threads", "1"]


def _numbers(out):
    return {r["path"]: (r["delta"], r["n_steps"], r["flagged"])
            for r in read_results(out / "results.jsonl") if r["status"] == "ok"}


@pytest.mark.slow
def test_compiled_audit_matches_eager(audit_folder, tmp_path, monkeypatch):
    real = torch.compile
    graphs = []

    def backend(gm, example_inputs):  # trace with dynamo, run the traced graph: fast, no C compiler
        graphs.append(tuple(example_inputs[0].shape))
        return gm.forward

    torch._dynamo.reset()
    monkeypatch.setattr(compiled.torch, "compile",
                        lambda m, dynamic=False: real(m, backend=backend, dynamic=dynamic))
    eager, comp = tmp_path / "eager", tmp_path / "compiled"
    assert main(["audit", str(audit_folder), "--out", str(eager), *BASE]) == EXIT_SOME_FILES_FAILED
    assert main(["audit", str(audit_folder), "--out", str(comp), *BASE, "--compile"]) == \
        EXIT_SOME_FILES_FAILED
    assert json.loads((comp / "manifest.json").read_text())["settings"]["compile"] is True
    assert json.loads((eager / "manifest.json").read_text())["settings"]["compile"] is False
    assert len(graphs) == 1  # one padded pass shape for the whole audit
    a, b = _numbers(eager), _numbers(comp)
    assert a.keys() == b.keys()
    for path in a:
        assert b[path][0] == pytest.approx(a[path][0], abs=1e-5)


def test_compile_failure_runs_eagerly_with_one_warning(audit_folder, tmp_path, monkeypatch,
                                                       caplog):
    def broken(module, dynamic=False):
        raise RuntimeError("inductor: no working C compiler")

    monkeypatch.setattr(compiled.torch, "compile", broken)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="medig"):
        code = main(["audit", str(audit_folder), "--out", str(out), *BASE, "--compile"])
    assert code == EXIT_SOME_FILES_FAILED  # the two unreadable test files, nothing else
    rows = read_results(out / "results.jsonl")
    assert sum(r["status"] == "ok" for r in rows) == 6
    failures = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(failures) == 1
