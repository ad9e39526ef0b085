# SPDX-License-Identifier: Apache-2.0
"""What the colours mean: the report's "target" section, the overlay caption and the per-image
class-probability table.

The section says, on the first page, which output every overlay explains: one class or group for
the whole cohort (``P(referable DR) = P(moderate) + P(severe) + P(proliferative)``, with the
cohort's distribution of that probability), or each image's predicted class, in which case the
caption under every overlay names the class its green refers to. Models without class names get
a note. Everything is read from ``manifest.json`` (``target``, ``model_metadata``) and the rows,
so ``medig report`` rebuilds it without the model.
"""
from __future__ import annotations

from statistics import median
from typing import Any

from reportlab.lib import colors
from reportlab.platypus import CondPageBreak, Flowable, Spacer

from medig.report.layout import ReportContext, fill, format_percent, table
from medig.report.rows import ResultRow

__all__ = ["declared_where", "overlay_caption", "prediction_text", "probability_table",
           "target_info", "target_section"]


def prediction_text(r: ResultRow) -> str:
    """The predicted class with its probability, e.g. ``"referable DR (p = 0.912)"``."""
    pred = r.get("predicted")
    if pred is None:
        return "n/a"
    prob = (r.get("probabilities") or {}).get(pred)
    return f"{pred} (p = {prob:.3f})" if isinstance(prob, (int, float)) else str(pred)


def declared_where(source: object) -> str | None:
    """Where the model declared its target, from a ``target_source`` as recorded in the manifest
    (``"declared by the model (JSON demo.json positive_class)"``); None when it was not declared."""
    text = str(source or "")
    if not text.startswith("declared"):
        return None
    return text.removeprefix("declared by the model").strip(" ()") or "model metadata"


GROUP_BG = colors.HexColor("#e3f1e3")  # the members of the explained group, in the table
#: Classes beyond which the per-image probability table is split into several rows.
_COLUMNS = 7
_GENERIC = "generic (none given)"


def target_info(ctx: ReportContext) -> dict[str, Any]:
    """The manifest's ``target`` entry, or what the rows say when an older audit lacks it."""
    info = dict(ctx.data.manifest.get("target") or {})
    if info.get("kind"):
        return info
    targets = {r.get("target") for r in ctx.data.ok if r.get("target") is not None}
    members = next((r.get("target_members") for r in ctx.data.ok if r.get("target_members")),
                   None)
    if members:
        return {"kind": "group", "name": next(iter(targets), None), "members": members}
    settings = ctx.data.manifest.get("settings") or {}
    if settings.get("target") not in (None, "pred") and len(targets) == 1:
        return {"kind": "class", "name": next(iter(targets)), "members": list(targets)}
    return {"kind": "predicted"}


def _quantity(info: dict[str, Any], output: str | None) -> str:
    name = info.get("name")
    if output == "logit":
        return f"the logit (un-normalised score) of {name}"
    return f"P({name})"


def _member_probability(r: ResultRow, members: list[str]) -> float | None:
    probs = r.get("probabilities") or {}
    values = [probs.get(m) for m in members]
    numbers = [v for v in values if isinstance(v, (int, float))]
    if not values or len(numbers) != len(values):
        return None
    return float(sum(numbers))


def _sources_line(ctx: ReportContext) -> str | None:
    pieces = ((ctx.data.manifest.get("model_metadata") or {}).get("pieces") or {})
    labels = {"class_names": "class names", "mean": "normalisation", "input_size": "input size"}
    parts = [f"{label}: {pieces[key]['source']}" for key, label in labels.items()
             if isinstance(pieces.get(key), dict) and pieces[key].get("source")]
    return "; ".join(parts) if parts else None


def target_section(ctx: ReportContext) -> list[Flowable]:
    """Section ``target``: which output the colours explain, for the whole cohort or per image."""
    info = target_info(ctx)
    m = ctx.data.manifest
    output = m.get("output") or (m.get("settings") or {}).get("output")
    out: list[Flowable] = [CondPageBreak(120), ctx.heading("target")]
    kind = info.get("kind")
    if kind in ("group", "class"):
        name = info.get("name")
        values = {"name": name, "quantity": _quantity(info, output),
                  "formula": info.get("formula") or _formula(name, info.get("members") or [])}
        out += ctx.text("target_group" if kind == "group" else "target_class", **values)
        where = declared_where(info.get("source"))
        if where is not None:
            out += ctx.text("target_declared", source=where)
        probs = [p for p in (_member_probability(r, info.get("members") or [])
                             for r in ctx.data.ok) if p is not None]
        if probs:
            high = sum(p >= 0.5 for p in probs)
            out += ctx.text("target_cohort", quantity=f"P({name})", n_high=high, n_ok=len(probs),
                            share=format_percent(high / len(probs), 1),
                            median=f"{median(probs):.3f}", low=f"{min(probs):.3f}",
                            high=f"{max(probs):.3f}")
    else:
        out += ctx.text("target_predicted")
    pieces = ((m.get("model_metadata") or {}).get("pieces") or {})
    if (pieces.get("class_names") or {}).get("source") == _GENERIC and ctx.data.class_names:
        names = ctx.data.class_names
        out += ctx.text("generic_class_names", first=names[0], last=names[-1])
    sources = _sources_line(ctx)
    if sources:
        out.append(ctx.P(fill(ctx.t["text"]["metadata_sources"], {"sources": sources}),
                         ctx.s.small))
    return out


def _formula(name: Any, members: list[str]) -> str:
    return f"P({name}) = " + " + ".join(f"P({c})" for c in members) if members else f"P({name})"


def overlay_caption(ctx: ReportContext, r: ResultRow) -> str:
    """The caption under an overlay, naming the class or group its green is evidence for."""
    return fill(ctx.t["text"]["overlay_caption"], {"target": r.get("target") or "the class"})


def probability_table(ctx: ReportContext, r: ResultRow) -> list[Flowable]:
    """Per-image class probabilities for models with more than two classes (five DR grades):
    the predicted class in bold, the explained group's members shaded, the group's sum last."""
    probs = r.get("probabilities") or {}
    names = [c for c in ctx.data.class_names if c in probs] or list(probs)
    if r.get("status") != "ok" or len(names) < 3:
        return []
    members = set(r.get("target_members") or ())
    cells = [(c, probs[c]) for c in names]
    total = _member_probability(r, sorted(members)) if members and r.get("target") else None
    if total is not None:
        cells.append((f"P({r['target']})", total))
    shaded = {j for j, (c, _) in enumerate(cells[:len(names)]) if c in members}
    if total is not None:
        shaded.add(len(cells) - 1)
    out: list[Flowable] = []
    for start in range(0, len(cells), _COLUMNS):
        chunk = cells[start:start + _COLUMNS]
        head = [ctx.P(c, ctx.s.cell_bold if c == r.get("predicted") else ctx.s.cell)
                for c, _ in chunk]
        body = [ctx.P(f"{p:.3f}" if isinstance(p, (int, float)) else "n/a",
                      ctx.s.cell_bold if c == r.get("predicted") else ctx.s.cell)
                for c, p in chunk]
        shade = [("BACKGROUND", (j, 0), (j, 1), GROUP_BG) for j in range(len(chunk))
                 if start + j in shaded]
        out.append(table([head, body], [ctx.fw / _COLUMNS] * len(chunk), header=False,
                         extra=shade))
    return [Spacer(1, 2), *out]
