"""View models for the reviewer's page (starter/ui.py): plain dicts the templates render, built from job documents.

The gate is read generically, so the page shows whatever the gate wrote: a job-level report
(``doc.gate`` with ``verdicts`` per candidate and eval type, ``paired`` comparisons, a recommendation)
when there is one, otherwise each candidate's ``nim.gate`` ({verdict | passed, reasons, ...}).
Every verdict row carries its reason sentence(s); fields we do not know are shown as key/value details.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from flywheel.jobdoc import JobDocument, Stage
from flywheel.report import ACCURACY, plot_png, results_rows

VERDICT_CLASSES = {"pass": "pass", "passed": "pass", "fail": "fail", "failed": "fail", "inconclusive": "inconclusive"}
# Keys a verdict row shows in its own columns; everything else scalar goes to "details".
_VERDICT_KEYS = {"model_name", "eval_type", "verdict", "passed", "reason", "reasons", "constraints"}
_REPORT_SECTIONS = {"verdicts", "paired"}
_PLOT_CACHE_SIZE = 32


def verdict_class(verdict: Any) -> str:
    """A CSS class from a fixed set (never the raw value)."""
    return VERDICT_CLASSES.get(str(verdict).lower(), "other") if verdict is not None else "none"


def fmt_value(value: Any) -> str:
    """Numbers to 3 decimals, pairs as intervals, lists joined, nested data as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.4g}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{fmt_value(float(value[0]))}, {fmt_value(float(value[1]))}]"
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(fmt_value(v) for v in value) or "—"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def _verdict_of(entry: dict[str, Any]) -> str | None:
    if entry.get("verdict") is not None:
        return str(entry["verdict"])
    if "passed" in entry:
        return "pass" if entry["passed"] else "fail"
    return None


def _reason_of(entry: dict[str, Any]) -> str:
    reasons = entry.get("reasons")
    parts = [str(entry["reason"])] if entry.get("reason") else []
    if isinstance(reasons, list):
        parts += [str(r) for r in reasons if r]
    elif reasons:
        parts.append(str(reasons))
    return "; ".join(parts)


def _constraints(entry: dict[str, Any]) -> list[dict[str, str]]:
    items = entry.get("constraints")
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        if isinstance(item, dict):
            status = item.get("status")
            out.append({"name": str(item.get("name", "")), "status": str(status) if status is not None else "",
                        "css": verdict_class(status), "reason": str(item.get("reason", ""))})
    return out


def _details(entry: dict[str, Any], skip: set[str]) -> list[tuple[str, str]]:
    return [(str(k), fmt_value(v)) for k, v in entry.items() if k not in skip]


def verdict_row(entry: dict[str, Any], model_name: str | None = None) -> dict[str, Any]:
    verdict = _verdict_of(entry)
    return {
        "model_name": str(entry.get("model_name") or model_name or "—"),
        "eval_type": str(entry["eval_type"]) if entry.get("eval_type") else "—",
        "verdict": verdict or "—",
        "css": verdict_class(verdict),
        "reason": _reason_of(entry),
        "constraints": _constraints(entry),
        "details": _details(entry, _VERDICT_KEYS),
    }


def gate_view(doc: JobDocument) -> dict[str, Any] | None:
    """What the gate said, or None when no gate ran. Keys: summary, verdicts, paired, source."""
    report = getattr(doc, "gate", None)
    if isinstance(report, dict) and isinstance(report.get("verdicts"), list):
        paired = [
            {"pair": f"{p.get('a', '?')} vs {p.get('b', '?')}", "reason": _reason_of(p),
             "details": _details(p, {"a", "b", "reason", "reasons"})}
            for p in report.get("paired") or [] if isinstance(p, dict)
        ]
        summary = [(k, fmt_value(v)) for k, v in _flatten(
            {k: v for k, v in report.items() if k not in _REPORT_SECTIONS})]
        return {"source": "report", "summary": summary,
                "verdicts": [verdict_row(v) for v in report["verdicts"] if isinstance(v, dict)], "paired": paired}
    rows = [verdict_row(nim.gate, nim.model_name) for nim in doc.nims if isinstance(nim.gate, dict) and nim.gate]
    if not rows:
        return None
    return {"source": "candidates", "summary": [], "verdicts": rows, "paired": []}


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += _flatten(value, f"{name}.")
        else:
            out.append((name, value))
    return out


def result_rows(doc: JobDocument) -> list[dict[str, Any]]:
    """flywheel.report's rows with the keys the page shows, missing ones as None."""
    keys = ("model_name", "eval_type", "num_records", "function_name", ACCURACY, f"{ACCURACY}_ci",
            "tool_calling_correctness", "similarity", "latency_p50_ms", "latency_p95_ms", "cost_per_1k_requests",
            "gate", "note")
    rows = []
    for row in results_rows(doc):
        view = {k: row.get(k) for k in keys}
        view["accuracy"], view["accuracy_ci"] = view.pop(ACCURACY), view.pop(f"{ACCURACY}_ci")
        view["gate_css"] = verdict_class(view["gate"])
        rows.append(view)
    return rows


def job_view(doc: JobDocument) -> dict[str, Any]:
    """Everything the job page's live part shows, plus what its buttons need to know."""
    finished = doc.status.finished
    return {
        "doc": doc,
        "status": doc.status.value,
        "stage": doc.stage.value,
        "finished": finished,
        "awaiting_review": doc.stage is Stage.awaiting_review,
        "cancellable": not finished,
        "rows": result_rows(doc),
        "gate": gate_view(doc),
        "candidates": [n.model_name for n in doc.nims],
        "curation": [(k, fmt_value(v)) for k, v in _flatten(doc.curation)],
        "review": [(k, fmt_value(v)) for k, v in _flatten(doc.review or {})],
        "llm_judge": [(k, fmt_value(v)) for k, v in _flatten(doc.llm_judge.model_dump(mode="json"))]
        if doc.llm_judge else [],
        "accuracy_metric": ACCURACY,
    }


# ---------------------------------------------------------------------------------------------- plot

_plot_lock = threading.Lock()  # pyplot keeps global state: one figure at a time
_plot_cache: OrderedDict[str, bytes] = OrderedDict()


def warm_plotting() -> None:
    """Import matplotlib the way the plot does, under the plot's lock (concurrent first imports break)."""
    with _plot_lock:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot  # noqa: F401


def cached_plot_png(doc: JobDocument) -> bytes:
    """flywheel.report's plot, cached on the numbers it draws (a polling page re-renders unchanged documents)."""
    key = hashlib.sha256(json.dumps(results_rows(doc), default=str, sort_keys=True).encode()).hexdigest()
    with _plot_lock:
        if key in _plot_cache:
            _plot_cache.move_to_end(key)
            return _plot_cache[key]
        png = plot_png(doc)
        _plot_cache[key] = png
        while len(_plot_cache) > _PLOT_CACHE_SIZE:
            _plot_cache.popitem(last=False)
        return png
