"""`flywheel` command line: run and watch jobs, review candidates, load logs, manage schedules.

Global options pick the configuration (`--config PATH` or `--config-name NAME`, else the
FLYWHEEL_CONFIG / FLYWHEEL_CONFIG_NAME env vars, else config/default.yaml). An invalid
configuration exits with code 2 and a message naming each offending field.
Heavy modules (Temporal client, API, worker assembly, demo stack) are imported only by the commands that
use them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from flywheel.config import ConfigError
from flywheel.ingest import load_jsonl
from flywheel.logstore import open_logstore
from flywheel.scoring import score_triples
from flywheel.vocabulary import JobType
from starter.cli_progress import as_document, follow_job, is_settled, progress_view, results_table
from starter.cli_remote import keys_app, remote_app
from starter.cli_schedule import schedule_app
from starter.cli_session import CLIState, Session, console, fail, format_ingest_error, state, valid_id

HELP = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(help="Temporal Data Flywheel: turn production LLM traffic into cheaper, evaluated models.",
                  no_args_is_help=True, context_settings=HELP, rich_markup_mode="rich", add_completion=False)
logs_app = typer.Typer(help="Production logs: load OpenAI-format JSONL into the log store.",
                       no_args_is_help=True, context_settings=HELP)
app.add_typer(logs_app, name="logs")
app.add_typer(schedule_app, name="schedule")
app.add_typer(keys_app, name="keys")
app.add_typer(remote_app, name="remote")


def cli_principal() -> str:
    """Who acts through the direct (Temporal) commands, for the audit trail: the operating-system user.
    (These commands need Temporal's own credentials; `flywheel remote` goes through the API's roles.)"""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no USER/LOGNAME (some containers)
        return "cli:unknown"


def _jsonable(obj: Any) -> Any:
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="Path to a YAML config (wins over --config-name).",
                                       dir_okay=False),
    config_name: str | None = typer.Option(None, "--config-name", help="Named config in config/ (e.g. demo)."),
) -> None:
    """Temporal Data Flywheel."""
    ctx.obj = CLIState(config_path=config, config_name=config_name)
    import structlog  # library modules log for operators; the CLI talks to people

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@app.command()
def demo(
    ctx: typer.Context,
    keep_running: bool = typer.Option(False, "--keep-running", help="Keep the stack up after the run (Ctrl-C stops)."),
    continuous: bool = typer.Option(False, "--continuous", help="Run aiva-1, aiva-2, aiva-3 in sequence and show "
                                    "how accuracy moves with more data."),
    output: Path = typer.Option(Path("demo-output"), "--output", help="Where job.json, report.html and logs go."),
    eval_size: int | None = typer.Option(None, "--eval-size", min=1,
                                         help="Eval records per run (the demo profile uses 20: the gate is then "
                                              "mostly inconclusive; ~200 lets it decide)."),
    job_type: str = typer.Option("llm_job", "--job-type", help="llm_job (tool-calling sample) or embedding_job "
                                 "(retrieval sample: base vs fine-tuned MiniLM, Recall@k / nDCG@k)."),
) -> None:
    """Run the whole flywheel on the embedded stack (Temporal dev server, workers, API, SQLite)."""
    # lazy: the demo loads the embedded stack and the API key store (FastAPI); keeps every other command quick.
    from starter.demo import run_demo

    st = state(ctx)
    st.settings(default_name="demo")  # a bad config exits 2 before anything starts
    if job_type not in {t.value for t in JobType}:
        console.print(f"--job-type must be one of {', '.join(t.value for t in JobType)} (got {job_type!r})")
        raise typer.Exit(2)
    code = run_demo(output=output, keep_running=keep_running, continuous=continuous, job_type=JobType(job_type),
                    config_name=st.config_name or (None if st.config_path else "demo"), config_path=st.config_path,
                    console=console, eval_size=eval_size)
    raise typer.Exit(code)


@app.command()
def run(
    ctx: typer.Context,
    workload_id: str = typer.Option(..., "--workload-id", callback=valid_id("workload_id"),
                                  help="Workload (agent node) whose traffic to use."),
    client_id: str = typer.Option(..., "--client-id", callback=valid_id("client_id"),
                                  help="Client / deployment id."),
    eval_size: int | None = typer.Option(None, "--eval-size", min=1, help="Records in the eval split."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Max records to extract."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed for splits and sampling."),
    wait: bool = typer.Option(False, "--wait", help="Show live progress and print the results table."),
) -> None:
    """Start a flywheel job for a workload/client."""
    settings = state(ctx).settings()
    given = {"eval_size": eval_size, "limit": limit, "random_seed": seed}
    split = {k: v for k, v in given.items() if v is not None} or None
    with Session(settings) as s:
        started = s.run(lambda: s.jobs.start(workload_id=workload_id, client_id=client_id, data_split_config=split,
                                             requested_by=cli_principal()))
        job_id = started.id
        console.print(f"started job [bold]{job_id}[/] for {workload_id}/{client_id} "
                      f"(workflow {started.workflow_id})", highlight=False, soft_wrap=True)
        if settings.temporal.ui_url:
            console.print(f"Temporal UI: {settings.temporal.ui_url}/namespaces/{settings.temporal.namespace}"
                          f"/workflows/{started.workflow_id}", highlight=False, soft_wrap=True)
        if not wait:
            return
        try:
            doc = follow_job(lambda: s.run(lambda: s.jobs.get(job_id)), console)
        except KeyboardInterrupt:
            console.print(f"stopped watching; the job keeps running (flywheel status {job_id})")
            raise typer.Exit(130) from None
        console.print(results_table(doc))
        if doc.status.value == "failed":
            raise typer.Exit(1)


@app.command()
def status(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="Job id."),
    as_json: bool = typer.Option(False, "--json", help="Print the job document as JSON."),
) -> None:
    """Show a job: stage, candidates, evaluation progress and results."""
    with Session(state(ctx).settings()) as s:
        raw = s.run(lambda: s.jobs.get(job_id))
    if raw is None:
        raise fail(f"job {job_id} not found")
    if as_json:
        print(json.dumps(_jsonable(raw), indent=2, default=str))
        return
    doc = as_document(_jsonable(raw))
    console.print(progress_view(doc, 0.0 if not doc.started_at else _age(doc)))
    if is_settled(doc):
        console.print(results_table(doc))


def _age(doc: Any) -> float:
    end = doc.finished_at or datetime.now(UTC)
    return (end - doc.started_at).total_seconds()


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    workload_id: str | None = typer.Option(None, "--workload-id", callback=valid_id("workload_id"),
                                  help="Only this workload."),
    client_id: str | None = typer.Option(None, "--client-id", callback=valid_id("client_id"),
                                  help="Only this client."),
    status_filter: str | None = typer.Option(None, "--status", help="pending|running|completed|cancelled|failed"),
    limit: int = typer.Option(20, "--limit", min=1, help="How many jobs to show."),
) -> None:
    """List jobs (newest first)."""
    with Session(state(ctx).settings()) as s:
        jobs, total = s.run(lambda: s.jobs.list({"workload_id": workload_id, "client_id": client_id,
                                                      "status": status_filter}, 0, limit))
    rows = [j.model_dump(mode="json") for j in jobs]
    table = Table(title=f"{len(rows)} of {total} job(s), newest first")
    columns = ("id", "workload_id", "client_id", "status", "stage", "started_at")
    for col in columns:
        table.add_column(col, no_wrap=col == "id", overflow="fold")
    for row in rows:
        table.add_row(*(str(row.get(c) or "")[:19] if c == "started_at" else str(row.get(c) or "") for c in columns))
    console.print(table)


@app.command()
def cancel(ctx: typer.Context, job_id: str = typer.Argument(..., help="Job id.")) -> None:
    """Cancel a running job (candidates are torn down)."""
    with Session(state(ctx).settings()) as s:
        s.run(lambda: s.jobs.cancel(job_id))
    console.print(f"cancellation requested for job {job_id}")


@app.command()
def delete(ctx: typer.Context, job_id: str = typer.Argument(..., help="Job id.")) -> None:
    """Delete a finished job: what its run created (platform, artifact store, MLflow), then its record."""
    with Session(state(ctx).settings()) as s:
        deletion = s.run(lambda: s.jobs.delete(job_id))
    console.print(f"deleted job {job_id}", highlight=False)
    for item in deletion.removed:
        console.print(f"  removed {item}", highlight=False, markup=False)
    for item in deletion.kept:
        console.print(f"  kept {item}", highlight=False, markup=False)


@app.command()
def promote(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="Job id (must be awaiting review)."),
    model: str = typer.Argument(..., help="Candidate model to promote."),
    note: str | None = typer.Option(None, "--note", help="Why; kept with the decision."),
) -> None:
    """Promote a candidate of a job that awaits review."""
    with Session(state(ctx).settings()) as s:
        result = s.run(lambda: s.jobs.promote(job_id, model_name=model, note=note, by=cli_principal()))
    console.print(f"promoted {model} for job {job_id}", _jsonable(result) or "")


@app.command()
def reject(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="Job id (must be awaiting review)."),
    reason: str | None = typer.Option(None, "--reason", help="Why; kept with the decision."),
) -> None:
    """Reject all candidates of a job that awaits review."""
    with Session(state(ctx).settings()) as s:
        result = s.run(lambda: s.jobs.reject(job_id, reason=reason, by=cli_principal()))
    console.print(f"rejected job {job_id}", _jsonable(result) or "")


def _lines_with_progress(path: Path, progress: Any, task: Any) -> Iterator[str]:
    with path.open("rb") as fh:
        for raw in fh:
            progress.advance(task, len(raw))
            yield raw.decode("utf-8", errors="replace")


@logs_app.command("load")
def logs_load(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL: one request/response record a line."),
    workload_id: str = typer.Option(..., "--workload-id", callback=valid_id("workload_id"),
                                  help="Workload id to store the records under."),
    client_id: str = typer.Option(..., "--client-id", callback=valid_id("client_id"),
                                  help="Client id to store the records under."),
    show_errors: int = typer.Option(10, "--show-errors", min=0, help="How many line errors to print."),
) -> None:
    """Load a JSONL file of production logs. Loading the same file again stores nothing new. Exits 0 if any
    record is stored (now or before; bad lines are reported), else 1."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    settings = state(ctx).settings()
    columns = (TextColumn("loading {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with open_logstore(settings) as store, \
            Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(file.name, total=file.stat().st_size)
        report = load_jsonl(_lines_with_progress(file, progress, task), store,
                            workload_id=workload_id, client_id=client_id)
    already = f" ({report.duplicates} already stored)" if report.duplicates else ""
    console.print(f"loaded {report.loaded}, skipped {report.skipped}{already}", highlight=False)
    if report.reasons:
        console.print("  skipped by reason: " + ", ".join(f"{k}={v}" for k, v in report.reasons.items()),
                      highlight=False, markup=False)
    errors = list(report.errors or [])
    for err in errors[:show_errors]:
        console.print(f"  {format_ingest_error(err)}", highlight=False, markup=False, soft_wrap=True)
    if report.skipped > min(len(errors), show_errors):
        console.print(f"  … {report.skipped - min(len(errors), show_errors)} more skipped line(s)", highlight=False)
    if report.loaded == 0 and report.duplicates == 0:
        raise typer.Exit(1)


@app.command()
def score(triples: Path = typer.Argument(..., exists=True, dir_okay=False,
                                         help="JSONL of (request, reference, prediction) triples.")) -> None:
    """Score prediction triples with the evaluator of record; prints metrics JSON."""
    with triples.open() as fh:
        result = score_triples(fh)
    print(json.dumps(_jsonable(result), indent=2, default=str))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, **HELP})
def worker(
    ctx: typer.Context,
    queue: str = typer.Option("all", "--queue", help="orchestrator | cpu | gpu | all"),
) -> None:
    """Run a worker (same as `flywheel-worker`); extra options are passed through."""
    st = state(ctx)
    st.settings()  # fail fast with exit 2 on a bad config
    argv = ["--queue", queue]
    if st.config_path:
        argv += ["--config", str(st.config_path)]
    elif st.config_name:
        argv += ["--config-name", st.config_name]
    from workers.main import main as worker_main  # lazy: the whole worker assembly

    raise typer.Exit(worker_main(argv + list(ctx.args)) or 0)


@app.command()
def api(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Bind address (default: api.host from config)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: api.port from config)."),
) -> None:
    """Serve the starter API (blueprint-compatible /api/jobs)."""
    import uvicorn

    from starter.api import create_app  # lazy: FastAPI and the Temporal client

    settings = state(ctx).settings()
    bind = host or settings.api.host
    try:
        application = create_app(settings, bind_host=bind)  # refuses insecure security settings for this bind
    except ConfigError as exc:
        raise fail(f"configuration error: {exc}", code=2) from exc
    uvicorn.run(application, host=bind, port=port or settings.api.port)


if __name__ == "__main__":
    app()
