"""`flywheel demo`: the whole flywheel on the embedded stack, from sample logs to a results table.

Steps: load the sample logs into the SQLite log store → start the Temporal dev server (with UI),
the workers and the starter API → POST /api/jobs → follow GET /api/jobs/{id} live → print the
results table, write job.json and report.html → shut everything down. ``--continuous`` runs
aiva-1, aiva-2 and aiva-3 (300 → 500 → 1,000 records) in sequence and shows how each candidate's
accuracy moves with more data. Logs of the Temporal server, workers and API go to <output>/logs/.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from flywheel.config import Settings, load_settings
from flywheel.ingest import load_jsonl
from flywheel.jobdoc import JobDocument, RunStatus
from flywheel.logstore import open_logstore
from flywheel.metrics import ACCURACY_METRIC
from flywheel.report import gate_table, write_report
from flywheel.vocabulary import JobType, SplitName
from starter import demo_embedding
from starter.api_client import auth_headers
from starter.auth import KeyStore
from starter.auth.authenticator import default_keys_file
from starter.cli_progress import EVAL_TYPES, follow_job, results_table
from starter.cli_session import format_ingest_error
from starter.stack import REPO_ROOT, EmbeddedStack, StackError

WORKLOAD_ID = "primary_assistant"
DATA_DIR = REPO_ROOT / "data"
CLIENTS = ("aiva-1", "aiva-2", "aiva-3")
JOB_TIMEOUT_S = 3 * 3600
METRIC = ACCURACY_METRIC


def sample_file(client_id: str) -> Path:
    return DATA_DIR / f"{WORKLOAD_ID}-{client_id}.jsonl"


def ensure_samples(clients: tuple[str, ...], console: Console) -> None:
    """The sample logs are shipped; regenerate them (seeded, identical) if they were removed."""
    if all(sample_file(c).exists() for c in clients):
        return
    console.print("sample logs missing; generating them with data/generate_samples.py")
    subprocess.run([sys.executable, str(DATA_DIR / "generate_samples.py")], check=True, cwd=REPO_ROOT)


def load_logs(settings: Settings, clients: tuple[str, ...], console: Console) -> dict[str, int]:
    """Load each client's sample file into the log store; returns records loaded per client."""
    loaded: dict[str, int] = {}
    store = open_logstore(settings)
    try:
        for client_id in clients:
            path = sample_file(client_id)
            with console.status(f"loading {path.name} into the log store…"):
                report = load_jsonl(path, store, workload_id=WORKLOAD_ID, client_id=client_id)
            loaded[client_id] = report.loaded
            console.print(f"  {path.name}: loaded {report.loaded}, skipped {report.skipped}", highlight=False)
            for err in list(report.errors or [])[:3]:
                console.print(f"    {format_ingest_error(err)}", highlight=False, markup=False)
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    return loaded


class DemoAPI:
    """The few starter-API calls the demo makes (the same ones users' notebooks make), with the demo's key."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30.0, headers=auth_headers(api_key))

    def start_job(self, client_id: str, data_split_config: dict[str, Any] | None = None,
                  job_type: str = "llm_job") -> str:
        body: dict[str, Any] = {"workload_id": WORKLOAD_ID, "client_id": client_id, "job_type": job_type}
        if data_split_config:
            body["data_split_config"] = data_split_config
        resp = self.http.post("/api/jobs", json=body)
        if resp.status_code >= 400:
            raise StackError(f"POST /api/jobs failed ({resp.status_code}): {resp.text[:500]}")
        return resp.json()["id"]

    def get_job(self, job_id: str) -> dict[str, Any]:
        resp = self.http.get(f"/api/jobs/{job_id}")
        resp.raise_for_status()
        return resp.json()

    def cancel_job(self, job_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.http.post(f"/api/jobs/{job_id}/cancel", timeout=5.0)

    def close(self) -> None:
        self.http.close()


def write_outputs(doc: JobDocument, out_dir: Path, console: Console) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "job.json").write_text(doc.model_dump_json(indent=2))
    try:
        page = write_report(doc, out_dir)
        console.print(f"wrote {out_dir / 'job.json'} and {page}", highlight=False)
    except Exception as exc:  # noqa: BLE001 - the JSON is the record; the HTML page is a convenience
        console.print(f"wrote {out_dir / 'job.json'}; report.html not written ({type(exc).__name__}: {exc})",
                      style="yellow", highlight=False)


def run_one(stack: EmbeddedStack, api: DemoAPI, settings: Settings, client_id: str, records: int,
            out_dir: Path, console: Console, eval_size: int | None = None,
            job_type: str = JobType.llm) -> JobDocument:
    embedding = job_type == JobType.embedding
    # Let the run see every record of this client (the demo profile caps extraction at 300).
    split: dict[str, Any] = (dict(demo_embedding.SPLIT) if embedding
                             else {"limit": max(settings.data_split_config.limit, records)})
    if eval_size is not None:  # a larger eval split: the gate can then decide instead of saying inconclusive
        split["eval_size"] = eval_size
    job_id = api.start_job(client_id, split, job_type)
    console.print(f"\n[bold]job {job_id}[/] — {WORKLOAD_ID}/{client_id}, {records:,} records in the log store")
    try:
        doc = follow_job(lambda: api.get_job(job_id), console, interval_s=1.0, timeout_s=JOB_TIMEOUT_S,
                         title=f"{WORKLOAD_ID}/{client_id}", health_check=stack.check_alive)
    except BaseException:
        console.print(f"cancelling job {job_id}…")
        api.cancel_job(job_id)
        raise
    console.print(demo_embedding.retrieval_table(doc) if embedding else results_table(doc))
    if not embedding and (note := training_scale_note(doc, settings)):
        console.print(note, style="yellow", highlight=False)
    if doc.gate:
        console.print(gate_table(doc))
    write_outputs(doc, out_dir, console)
    link = stack.workflow_url(doc.workflow_id) if doc.workflow_id else None
    if link:
        console.print(f"Temporal UI (this run): {link}", highlight=False)
    console.print(f"Job document: {api.base_url}/api/jobs/{job_id}", highlight=False)
    return doc


def training_scale_note(doc: JobDocument, settings: Settings) -> str | None:
    """How much of the train split the demo's short fine-tune saw: its customized-eval is a check that the
    loop works end to end, not a trained model (a 270M model after a few dozen examples)."""
    steps = max((c.steps_completed for nim in doc.nims for c in nim.customizations), default=0)
    if not steps:
        return None
    seen = steps * settings.training_config.batch_size
    train = next((d.num_records for d in doc.datasets if d.split == SplitName.train), None)
    of = f" of {train:,}" if train else ""
    return (f"customized-eval: the adapter trained {steps} steps, {seen:,}{of} training examples "
            f"(training_config.max_steps / batch_size) — a check that fine-tuning, serving and scoring work "
            f"end to end, not a trained model; raise max_steps for one.")


def accuracy_trajectory(runs: list[tuple[str, JobDocument]]) -> Table:
    """Candidate × eval type rows; one column per run, ordered by data volume."""
    table = Table(title=f"How accuracy ({METRIC}) moves with more data", show_lines=False)
    table.add_column("candidate", style="bold")
    table.add_column("eval")
    for client_id, doc in runs:
        table.add_column(f"{client_id}\n{doc.num_records or 0:,} records", justify="right")
    models = list(dict.fromkeys(n.model_name for _, doc in runs for n in doc.nims))
    for model in models:
        for eval_type in EVAL_TYPES:
            cells = []
            for _, doc in runs:
                nim = doc.nim(model)
                ev = nim.evaluation(eval_type) if nim else None
                value = ev.scores.get(METRIC) if ev and not ev.error else None
                cells.append("—" if value is None else f"{value:.3f}")
            table.add_row(model, eval_type.removesuffix("-eval"), *cells)
        table.add_section()
    return table


DEMO_KEY_NAME = "demo"


def demo_api_key(settings: Settings) -> str:
    """A fresh local key for this demo (operator + reviewer); the previous demo's key is revoked."""
    store = KeyStore(default_keys_file(settings))
    store.revoke(DEMO_KEY_NAME)
    token, _ = store.create(DEMO_KEY_NAME, ["operator", "reviewer"])
    return token


def print_key_usage(api_key: str, api_url: str | None, console: Console) -> None:
    console.print("API key for this demo (roles operator, reviewer; shown once, valid until the next demo):",
                  highlight=False)
    console.print(f"  export FLYWHEEL_API_KEY={api_key}", highlight=False, markup=False, soft_wrap=True)
    console.print(f'  curl -H "Authorization: Bearer $FLYWHEEL_API_KEY" {api_url}/api/jobs', highlight=False,
                  markup=False, soft_wrap=True)
    console.print("  Reads from this machine need no key (the demo profile enables anonymous read-only access "
                  "on the loopback bind); starting, cancelling and reviewing jobs do.", highlight=False)


def _print_urls(stack: EmbeddedStack, console: Console) -> None:
    console.print(f"Temporal UI: {stack.ui_url}", highlight=False)
    console.print(f"Starter API: {stack.api_url}/api/jobs  (OpenAPI docs: {stack.api_url}/docs)", highlight=False)


def run_demo(
    *,
    output: Path = Path("demo-output"),
    keep_running: bool = False,
    continuous: bool = False,
    config_name: str | None = "demo",
    config_path: Path | None = None,
    console: Console | None = None,
    eval_size: int | None = None,
    job_type: str = JobType.llm,
) -> int:
    """Run the demo; returns the process exit code (0 ok, 1 a run failed, 130 interrupted)."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    started = time.monotonic()
    output = Path(output)
    state_dir = output / "state"
    overrides = {"platform": {"data_dir": str(state_dir)}}
    settings = load_settings(path=config_path, config_name=config_name, overrides=overrides)
    embedding = job_type == JobType.embedding
    clients = (demo_embedding.CLIENT_ID,) if embedding else CLIENTS if continuous else CLIENTS[:1]
    continuous = continuous and not embedding
    console.rule(f"[bold]Temporal Data Flywheel — demo ({job_type})")
    if embedding:
        demo_embedding.ensure_sample()
    else:
        ensure_samples(clients, console)
    # Fresh Temporal database and log store each demo: no abandoned run from an earlier demo resumes
    # and competes for the CPU, and re-loading the samples does not duplicate records.
    logstore = Path(settings.logstore.path or state_dir / "logs.sqlite")
    for stale in [*state_dir.glob("temporal.db*"), *logstore.parent.glob(logstore.name + "*")]:
        stale.unlink()
    console.print("[bold]1. sample logs → SQLite log store[/]")
    records = load_logs(settings, clients, console)
    if not any(records.values()):
        console.print("no records could be loaded; see the errors above", style="red")
        return 1
    console.print("[bold]2. embedded stack[/] (logs in " f"{output / 'logs'})")
    stack = EmbeddedStack(config_name=config_name, config_path=config_path, log_dir=output / "logs",
                          db_file=state_dir / "temporal.db", namespace=settings.temporal.namespace,
                          extra_env={"FLYWHEEL__PLATFORM__DATA_DIR": str(state_dir.resolve()),
                                     **(demo_embedding.stack_env() if embedding else {})},
                          on_status=lambda msg: console.print(f"  {msg}…"))
    runs: list[tuple[str, JobDocument]] = []
    code = 0
    try:
        with stack:
            _print_urls(stack, console)
            api_key = demo_api_key(settings)
            print_key_usage(api_key, stack.api_url, console)
            api = DemoAPI(stack.api_url or "", api_key)
            console.print("[bold]3. flywheel run(s)[/]")
            for client_id in clients:
                out_dir = output if not continuous else output / client_id
                doc = run_one(stack, api, settings, client_id, records.get(client_id, 0), out_dir, console,
                              eval_size=eval_size, job_type=job_type)
                runs.append((client_id, doc))
                if doc.status == RunStatus.failed:
                    code = 1
            if continuous:
                console.print(accuracy_trajectory(runs))
                last = runs[-1][1]
                write_outputs(last, output, console)
            console.print(f"wall time: {time.monotonic() - started:,.0f}s")
            _print_urls(stack, console)
            if keep_running:
                console.print("stack is still running (--keep-running); press Ctrl-C to stop it")
                while True:
                    stack.check_alive()
                    time.sleep(2)
    except KeyboardInterrupt:
        console.print("\ninterrupted; the stack has been stopped", style="yellow")
        return 130 if not keep_running else code
    except (StackError, TimeoutError, httpx.HTTPError) as exc:
        console.print(f"demo failed: {exc}", style="red", highlight=False)
        console.print(f"logs: {output / 'logs'}", highlight=False)
        return 1
    console.print(f"stack stopped. total wall time: {time.monotonic() - started:,.0f}s")
    return code


def main() -> None:  # `python -m starter.demo`
    raise SystemExit(run_demo())


if __name__ == "__main__":
    main()
