"""`flywheel keys ...` (manage API keys) and `flywheel remote ...` (use a starter API over HTTP).

The other commands talk to Temporal and the stores directly (they need Temporal's credentials and,
with encryption, the payload keys). `remote` goes through the API instead, with its roles and audit
trail: the key comes from FLYWHEEL_API_KEY, the URL from --api-url or FLYWHEEL_API_URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from starter.api_client import API_KEY_ENV, API_URL_ENV, ApiCallError, ApiClient

HELP = {"help_option_names": ["-h", "--help"]}
keys_app = typer.Typer(help="API keys of the starter API (stored hashed; a new key is shown once).",
                       no_args_is_help=True, context_settings=HELP)
remote_app = typer.Typer(help=f"Use a starter API over HTTP (key from ${API_KEY_ENV}).",
                         no_args_is_help=True, context_settings=HELP)
ROLE_HELP = "viewer | operator | reviewer | admin (repeatable)"
INGEST_BATCH = 1000


def _store(ctx: typer.Context) -> Any:
    from starter.auth import KeyStore
    from starter.auth.authenticator import default_keys_file
    from starter.cli_session import state

    return KeyStore(default_keys_file(state(ctx).settings()))


def _fail(message: str, code: int = 1) -> typer.Exit:
    from starter.cli_session import fail

    return fail(message, code)


@keys_app.command("create")
def keys_create(ctx: typer.Context, name: str = typer.Option(..., "--name", help="Who or what uses the key."),
                role: list[str] = typer.Option(..., "--role", help=ROLE_HELP)) -> None:
    """Create a key; prints it once (store it in a secret manager or an env var)."""
    try:
        token, stored = _store(ctx).create(name, role)
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    typer.echo(f"created key {stored.id} for {stored.name} ({', '.join(sorted(r.value for r in stored.roles))})")
    typer.echo(f"export {API_KEY_ENV}={token}")


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """Key ids, names, roles and creation times (never the keys)."""
    for key in _store(ctx).keys().values():
        typer.echo(f"{key.id}  {key.name}  {','.join(sorted(r.value for r in key.roles))}  {key.created_at}")


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key: str = typer.Argument(..., help="Key id or name.")) -> None:
    """Remove keys by id or name; a running API refuses them from the next request on."""
    removed = _store(ctx).revoke(key)
    typer.echo(f"revoked {removed} key(s)")
    if not removed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------- remote


def _client(api_url: str | None) -> ApiClient:
    import os

    return ApiClient(api_url or os.environ.get(API_URL_ENV) or "http://127.0.0.1:8000")


def _call(api_url: str | None, method: str, path: str, body: Any = None, **params: Any) -> Any:
    with _client(api_url) as api:
        try:
            return api.request(method, path, json=body, **params)
        except ApiCallError as exc:
            hint = f" (set {API_KEY_ENV})" if exc.status_code == 401 else ""
            raise _fail(f"{method} {path}: {exc.status_code} {exc.detail}{hint}") from exc
        except Exception as exc:  # connection refused, timeouts
            raise _fail(f"{method} {api.base_url}{path}: {type(exc).__name__}: {exc}") from exc


API_URL = typer.Option(None, "--api-url", help=f"Starter API URL (default ${API_URL_ENV} or http://127.0.0.1:8000).")


def _show(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@remote_app.command("list")
def remote_list(api_url: str | None = API_URL, workload_id: str | None = typer.Option(None, "--workload-id"),
                limit: int = typer.Option(20, "--limit", min=1)) -> None:
    """Recent jobs, newest first."""
    _show(_call(api_url, "GET", "/api/jobs", workload_id=workload_id, limit=limit))


@remote_app.command("status")
def remote_status(job_id: str = typer.Argument(...), api_url: str | None = API_URL) -> None:
    """A job document."""
    _show(_call(api_url, "GET", f"/api/jobs/{job_id}"))


@remote_app.command("run")
def remote_run(workload_id: str = typer.Option(..., "--workload-id"), client_id: str = typer.Option(..., "--client-id"),
               config_name: str | None = typer.Option(None, "--config-name"), api_url: str | None = API_URL) -> None:
    """Start a job (operator)."""
    body = {"workload_id": workload_id, "client_id": client_id, "config_name": config_name}
    _show(_call(api_url, "POST", "/api/jobs", {k: v for k, v in body.items() if v is not None}))


@remote_app.command("cancel")
def remote_cancel(job_id: str = typer.Argument(...), api_url: str | None = API_URL) -> None:
    """Cancel a job (operator)."""
    _show(_call(api_url, "POST", f"/api/jobs/{job_id}/cancel"))


@remote_app.command("promote")
def remote_promote(job_id: str = typer.Argument(...), model: str = typer.Argument(...),
                   note: str | None = typer.Option(None, "--note"), api_url: str | None = API_URL) -> None:
    """Promote a candidate (reviewer); the decision is recorded as yours."""
    _show(_call(api_url, "POST", f"/api/jobs/{job_id}/promote", {"model_name": model, "note": note}))


@remote_app.command("reject")
def remote_reject(job_id: str = typer.Argument(...), reason: str | None = typer.Option(None, "--reason"),
                  api_url: str | None = API_URL) -> None:
    """Reject a run's candidates (reviewer)."""
    _show(_call(api_url, "POST", f"/api/jobs/{job_id}/reject", {"reason": reason}))


@remote_app.command("load")
def remote_load(file: Path = typer.Argument(..., exists=True, dir_okay=False),
                workload_id: str = typer.Option(..., "--workload-id"),
                client_id: str = typer.Option(..., "--client-id"), api_url: str | None = API_URL) -> None:
    """POST a JSONL file to /api/logs in batches (operator). Safe to rerun: stored records are not duplicated."""
    totals = {"loaded": 0, "duplicates": 0, "skipped": 0}
    batch: list[tuple[int, Any]] = []  # (line number, record)
    with file.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                batch.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                typer.echo(f"line {number}: bad_json: {exc}")
                totals["skipped"] += 1
            if len(batch) >= INGEST_BATCH:
                _send(api_url, batch, workload_id, client_id, totals)
                batch = []
    _send(api_url, batch, workload_id, client_id, totals)
    typer.echo(f"loaded {totals['loaded']}, skipped {totals['skipped']} ({totals['duplicates']} already stored)")
    if totals["loaded"] == 0 and totals["duplicates"] == 0:
        raise typer.Exit(1)


def _send(api_url: str | None, batch: list[tuple[int, Any]], workload_id: str, client_id: str,
          totals: dict[str, int]) -> None:
    if not batch:
        return
    body = {"records": [record for _, record in batch], "workload_id": workload_id, "client_id": client_id}
    report = _call(api_url, "POST", "/api/logs", body)
    for key in totals:
        totals[key] += int(report.get(key, 0))
    for err in report.get("errors", []):
        typer.echo(f"line {batch[err['index']][0]}: {err['reason']}: {err.get('detail', '')}")
