"""Live progress and result tables for people: shared by `flywheel run --wait` and `flywheel demo`.

Works on the job document (docs/api.md) whether it comes from the starter API as JSON or from
the Temporal status query as a :class:`JobDocument`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from flywheel.jobdoc import CustomizationDoc, EvaluationDoc, JobDocument, NimDoc, Stage
from flywheel.metrics import ACCURACY_METRIC
from flywheel.report import render_table
from flywheel.vocabulary import ALL_EVAL_TYPES, EvalType

EVAL_TYPES = ALL_EVAL_TYPES
SETTLED_STAGES = {Stage.awaiting_review, Stage.promoted, Stage.rejected, Stage.completed, Stage.cancelled,
                  Stage.failed}
_STATUS_STYLE = {"completed": "green", "ready": "green", "failed": "red", "cancelled": "yellow",
                 "running": "cyan", "running-evals": "cyan", "deploying-nim": "blue", "pending": "dim"}


def as_document(doc: JobDocument | dict[str, Any]) -> JobDocument:
    return doc if isinstance(doc, JobDocument) else JobDocument.model_validate(doc)


def is_settled(doc: JobDocument) -> bool:
    """Nothing more will happen without a person: finished, or waiting for promote/reject."""
    return doc.status.finished or doc.stage in SETTLED_STAGES


def _value(enum_or_str: Any) -> str:
    return getattr(enum_or_str, "value", enum_or_str) or ""


def _styled(status: Any) -> Text:
    text = _value(status)
    return Text(text, style=_STATUS_STYLE.get(text, ""))


def _fmt(score: float | None) -> str:
    return "—" if score is None else f"{score:.3f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _bar(percent: float, label: str) -> RenderableType:
    grid = Table.grid(padding=(0, 1))
    grid.add_row(ProgressBar(total=100, completed=max(0.0, min(100.0, percent)), width=12), Text(label))
    return grid


def eval_cell(ev: EvaluationDoc | None) -> RenderableType:
    if ev is None:
        return Text("waiting", style="dim")
    if ev.error:
        return Text(f"✗ {ev.error[:60]}", style="red")
    if ev.finished_at or ev.progress >= 100:
        if ACCURACY_METRIC not in ev.scores and "ndcg_at_10" in ev.scores:  # an embedding_job's evaluation
            return Text(f"✓ nDCG@10 {_fmt(ev.scores['ndcg_at_10'])}", style="green")
        return Text(f"✓ args {_fmt(ev.scores.get(ACCURACY_METRIC))}", style="green")
    return _bar(ev.progress, f"{ev.progress:.0f}%")


def customization_cell(nim: NimDoc) -> RenderableType:
    if not nim.customizations:
        return Text("—", style="dim")
    cust: CustomizationDoc = nim.customizations[-1]
    if cust.error:
        return Text(f"✗ {cust.error[:60]}", style="red")
    loss = f" · loss {cust.loss:.3f}" if cust.loss is not None else ""
    if cust.finished_at or cust.progress >= 100:
        return Text(f"✓ {cust.steps_completed} steps{loss}", style="green")
    return _bar(cust.progress, f"step {cust.steps_completed}{loss}")


def progress_view(doc: JobDocument, elapsed_s: float, title: str | None = None) -> RenderableType:
    """One frame: the run's stage, then a row per candidate with a cell per eval type."""
    header = Text.assemble(
        (title or f"job {doc.id}", "bold"), "  ",
        ("stage ", "dim"), (_value(doc.stage), "bold cyan"), "  ",
        ("status ", "dim"), _styled(doc.status), "  ",
        ("records ", "dim"), str(doc.num_records if doc.num_records is not None else "…"), "  ",
        ("elapsed ", "dim"), f"{elapsed_s:,.0f}s",
    )
    table = Table(expand=False, show_lines=False)
    table.add_column("candidate", style="bold")
    table.add_column("status")
    table.add_column("deployment")
    for eval_type in EVAL_TYPES[:2]:
        table.add_column(eval_type)
    table.add_column("customization")
    table.add_column(EVAL_TYPES[2])
    for nim in doc.nims:
        table.add_row(
            nim.model_name, _styled(nim.status), _styled(nim.deployment_status),
            eval_cell(nim.evaluation(EvalType.base)), eval_cell(nim.evaluation(EvalType.icl)),
            customization_cell(nim), eval_cell(nim.evaluation(EvalType.customized)),
        )
    parts: list[RenderableType] = [header]
    if doc.nims:
        parts.append(table)
    else:
        parts.append(Text("preparing data (extract → curate → split → upload)…", style="dim"))
    if doc.error:
        parts.append(Text(f"error: {doc.error}", style="red"))
    return Group(*parts)


def progress_line(doc: JobDocument) -> str:
    """A plain one-line summary for logs and non-terminal output."""
    parts = [f"stage={_value(doc.stage)} status={_value(doc.status)}"]
    for nim in doc.nims:
        evals = " ".join(f"{e.eval_type}={e.progress:.0f}%" for e in nim.evaluations)
        training = ""
        if nim.customizations and nim.customizations[-1].finished_at is None:
            cust = nim.customizations[-1]
            loss = f" loss={cust.loss:.3f}" if cust.loss is not None else ""
            training = f" training={cust.progress:.0f}% step={cust.steps_completed}{loss}"
        parts.append(f"{nim.model_name}: {_value(nim.status)} {evals}{training}".rstrip())
    return " | ".join(parts)


def follow_job(
    fetch: Callable[[], JobDocument | dict[str, Any]],
    console: Console | None = None,
    *,
    interval_s: float = 1.0,
    timeout_s: float | None = None,
    title: str | None = None,
    health_check: Callable[[], None] | None = None,
) -> JobDocument:
    """Poll ``fetch`` and render live progress until the run settles. Returns the last document.

    ``health_check`` runs each poll and may raise (e.g. the embedded stack lost its worker).
    Transient fetch errors are shown and retried; a timeout raises :class:`TimeoutError`.
    """
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    started = time.monotonic()
    doc: JobDocument | None = None
    last_line = ""
    fetch_error = ""

    def frame() -> RenderableType:
        elapsed = time.monotonic() - started
        if doc is None:
            return Text(f"waiting for the job… {fetch_error}", style="dim")
        view = progress_view(doc, elapsed, title)
        return Group(view, Text(f"(retrying: {fetch_error})", style="yellow")) if fetch_error else view

    live_view = Live(frame(), console=console, refresh_per_second=4) if console.is_terminal else None
    with live_view or contextlib.nullcontext() as live:
        while True:
            if health_check:
                health_check()
            try:
                doc = as_document(fetch())
                fetch_error = ""
            except Exception as exc:  # noqa: BLE001 - the API/Temporal can blip; keep showing the last state
                fetch_error = f"{type(exc).__name__}: {exc}"[:200]
            if console.is_terminal:
                live.update(frame())
            elif doc is not None and (line := progress_line(doc)) != last_line:
                console.print(line, highlight=False)
                last_line = line
            if doc is not None and is_settled(doc):
                if console.is_terminal:
                    live.update(frame(), refresh=True)
                return doc
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise TimeoutError(f"job did not settle within {timeout_s:.0f}s; last state: "
                                   f"{progress_line(doc) if doc else fetch_error}")
            time.sleep(interval_s)


def results_table(doc: JobDocument) -> RenderableType:
    """Model × base-eval / icl-eval / customized-eval (scores, latency p50/p95, cost, gate); empty cells say
    why. One table for the CLI, the demo and the HTML report: :func:`flywheel.report.render_table`."""
    return render_table(doc)
