"""`flywheel schedule ...`: one Temporal Schedule per (workload, client), overlap policy SKIP."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from starter.cli_session import Session, console, state

schedule_app = typer.Typer(help="Recurring flywheel runs (one Temporal Schedule per workload/client).",
                           no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})


def _schedules() -> Any:
    # Lazy: the Temporal client behind it is only needed by schedule commands (CLI start-up time).
    from starter import schedules

    return schedules


def _session(ctx: typer.Context) -> Any:
    return Session(state(ctx).settings())


def _print(value: Any) -> None:
    schedules = _schedules()
    print(json.dumps(schedules.to_json(value), indent=2, default=str))


@schedule_app.command("create")
def create(
    ctx: typer.Context,
    workload_id: str = typer.Option(..., "--workload-id", help="Workload to run on a schedule."),
    client_id: str = typer.Option(..., "--client-id", help="Client id."),
    cron: str = typer.Option(..., "--cron", help="Cron spec, e.g. '0 3 * * *' (daily at 03:00 UTC)."),
    paused: bool = typer.Option(False, "--paused", help="Create it paused."),
    note: str | None = typer.Option(None, "--note", help="Why this schedule exists."),
) -> None:
    """Create the schedule for a workload/client."""
    schedules = _schedules()
    with _session(ctx) as s:
        created = s.run(lambda: schedules.create_schedule(
            s.client, s.settings, workload_id=workload_id, client_id=client_id, cron=cron, paused=paused, note=note))

    console.print(f"created schedule {schedules.to_json(created)} ({cron}, overlap policy: skip)", highlight=False)


@schedule_app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List flywheel schedules."""
    schedules = _schedules()
    with _session(ctx) as s:
        items = schedules.to_json(s.run(lambda: schedules.list_schedules(s.client)))
    if as_json or not items or not isinstance(items[0], dict):
        _print(items)
        return

    columns = list(dict.fromkeys(k for item in items for k in item))[:8]
    table = Table(title=f"{len(items)} schedule(s)")
    for col in columns:
        table.add_column(col)
    for item in items:
        table.add_row(*(str(item.get(c, "")) for c in columns))
    console.print(table)


@schedule_app.command("describe")
def describe(ctx: typer.Context, schedule_id: str = typer.Argument(..., help="Schedule id.")) -> None:
    """Show one schedule: spec, state, recent and next runs."""
    schedules = _schedules()
    with _session(ctx) as s:
        _print(s.run(lambda: schedules.describe_schedule(s.client, schedule_id)))


def _action(name: str, done: str, doc: str) -> None:
    def command(ctx: typer.Context, schedule_id: str = typer.Argument(..., help="Schedule id.")) -> None:
        schedules = _schedules()
        with _session(ctx) as s:
            s.run(lambda: getattr(schedules, f"{name}_schedule")(s.client, schedule_id))
        console.print(f"schedule {schedule_id}: {done}", highlight=False)

    command.__doc__ = doc
    schedule_app.command(name)(command)


_action("pause", "paused", "Pause a schedule (no new runs until unpaused).")
_action("unpause", "unpaused", "Unpause a schedule.")
_action("trigger", "triggered; a run starts now", "Start a run now (overlap policy still applies).")
_action("delete", "deleted", "Delete a schedule (running jobs are not affected).")
