"""Chaos-test helpers: a restartable file-backed Temporal dev server, a live view of a run's workflow
histories, the run's pending activities, and the emulator's requests sorted into classes of work.

An activity is named by a *label*: its type plus what it works on, read from its input (``deploy:base``,
``evaluate:icl-eval``, ``persist_job#3``...). The same run, disturbed or not, schedules the same labels:
that is how the chaos test tells "retried the same activity" (fine) from "scheduled the work again" (a bug).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState, TimeoutType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from tests.conftest import TEMPORAL_CLI
from tests.emulators.openai_scripted import free_port
from workflows.search_attributes import KEY_STAGE, dev_server_args

E = EventType
CLOSED_WORKFLOW = {E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
                   E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED, E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
                   E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT}
STICKY_TIMEOUT = TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START
CLOSED_OTHERWISE = {E.EVENT_TYPE_ACTIVITY_TASK_FAILED: "failed", E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "timed out",
                    E.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "cancelled"}


# -- the Temporal server ---------------------------------------------------------------------------
class DevServer:
    """``temporal server start-dev`` persisting to a file, so a stop + start keeps every run; same ports each time."""

    def __init__(self, workdir: Path) -> None:
        self.db, self.log = workdir / "temporal.db", workdir / "temporal-server.log"
        self.port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(TEMPORAL_CLI), "server", "start-dev", "--db-filename", str(self.db), "--port", str(self.port),
             "--http-port", str(self.http_port), "--metrics-port", str(self.metrics_port), "--headless",
             "--log-level", "warn", *dev_server_args()],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server's whole process group (its own session) and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    async def client(self, timeout: float = 60) -> Client:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await Client.connect(self.address, data_converter=pydantic_data_converter)
            except Exception:
                if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                    raise
                await asyncio.sleep(0.3)


# -- activities by label ---------------------------------------------------------------------------
def _json(payloads: Any) -> Any:
    try:
        return json.loads(payloads.payloads[0].data)
    except (IndexError, ValueError, AttributeError):
        return None


def activity_label(activity_type: str, inp: Any) -> str:
    """``type`` plus what the activity works on (input of the flywheel's activities; see module docstring)."""
    inp = inp if isinstance(inp, dict) else {}
    if activity_type == "deploy":
        return "deploy:customized" if inp.get("adapter_uri") else "deploy:base"
    if activity_type == "teardown":
        endpoint = inp.get("endpoint") or {}  # a long deployment name is cut and hashed: look at both names
        names = f"{endpoint.get('deployment_name')} {endpoint.get('served_model')}"
        return "teardown:customized" if "customized" in names else "teardown:base"
    if activity_type == "evaluate":
        return f"evaluate:{(inp.get('spec') or {}).get('eval_type')}"
    if activity_type in ("persist_job", "write_report"):
        doc = inp.get("doc") or {}
        return f"{activity_type}#{doc.get('revision')}" if activity_type == "persist_job" else \
            f"{activity_type}@{doc.get('stage')}"
    return activity_type


@dataclass
class ActivityRecord:
    workflow: str  # "run" or "candidate"
    activity_id: str
    label: str
    completed: list[tuple[float, str]] = field(default_factory=list)  # (event time, worker identity)
    closed_otherwise: list[str] = field(default_factory=list)
    attempt: int = 0  # of the started event, which Temporal writes for the final attempt only
    last_failure: str = ""  # how the attempt before the final one ended


def _event_time(event: HistoryEvent) -> float:
    return event.event_time.ToMicroseconds() / 1e6  # epoch seconds, server clock (this machine)


class RunHistory:
    """What a run's workflows (``{"run": id, "candidate": id}``) have recorded, followed live by long-polling
    each history (a restart of the server, or a workflow that does not exist yet, is retried)."""

    def __init__(self, client: Client, workflow_ids: dict[str, str]) -> None:
        self.client, self.workflow_ids = client, workflow_ids
        self.activities: dict[tuple[str, int], ActivityRecord] = {}
        self.stages: dict[str, float] = {}  # FlywheelStage upserts → first event time
        self.identities: list[tuple[float, str]] = []  # worker identities that completed tasks, with event times
        self.child_closed_at: float | None = None
        self.closed: dict[str, float] = {}  # workflow name → when it closed
        self.workflow_task_failures: list[str] = []
        self.workflow_task_timeouts: list[tuple[float, str]] = []  # (event time, "sticky" or "start-to-close")
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> RunHistory:
        self._tasks = [asyncio.create_task(self._follow(name, wf_id)) for name, wf_id in self.workflow_ids.items()]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _follow(self, name: str, wf_id: str) -> None:
        last = 0
        while True:
            try:
                async for event in self.client.get_workflow_handle(wf_id).fetch_history_events(wait_new_event=True):
                    if event.event_id > last:
                        last = event.event_id
                        self.add(name, event)
                return  # the workflow closed
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - not started yet, or the server is restarting: follow again
                await asyncio.sleep(0.3)

    def add(self, name: str, event: HistoryEvent) -> None:
        t, kind = _event_time(event), event.event_type
        if kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = event.activity_task_scheduled_event_attributes
            self.activities[(name, event.event_id)] = ActivityRecord(
                name, a.activity_id, activity_label(a.activity_type.name, _json(a.input)))
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            a = event.activity_task_started_event_attributes
            record = self.activities[(name, a.scheduled_event_id)]
            record.attempt, record.last_failure = a.attempt, failure_text(a.last_failure)
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            a = event.activity_task_completed_event_attributes
            self.activities[(name, a.scheduled_event_id)].completed.append((t, a.identity))
            self.identities.append((t, a.identity))
        elif kind in CLOSED_OTHERWISE:
            attrs = getattr(event, event.WhichOneof("attributes"))
            self.activities[(name, attrs.scheduled_event_id)].closed_otherwise.append(CLOSED_OTHERWISE[kind])
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            self.identities.append((t, event.workflow_task_completed_event_attributes.identity))
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            # SCHEDULE_TO_START: the task waited on a dead worker's sticky queue until the server gave it to all.
            sticky = event.workflow_task_timed_out_event_attributes.timeout_type == STICKY_TIMEOUT
            self.workflow_task_timeouts.append((t, "sticky" if sticky else "start-to-close"))
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            a = event.workflow_task_failed_event_attributes
            self.workflow_task_failures.append(f"{name}: {a.cause} {a.failure.message[:200]}")
        elif kind == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if KEY_STAGE.name in fields:
                self.stages.setdefault(json.loads(fields[KEY_STAGE.name].data), t)
        elif kind == E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            self.child_closed_at = t
        elif kind in CLOSED_WORKFLOW:
            self.closed[name] = t

    def completed_at(self, label: str) -> float | None:
        """Event time of the first completion of the activity ``label``, or None."""
        times = [c[0][0] for c in (r.completed for r in self.activities.values() if r.label == label) if c]
        return min(times) if times else None

    def record(self, workflow: str, activity_id: str) -> ActivityRecord | None:
        return next((r for r in self.activities.values() if r.workflow == workflow and r.activity_id == activity_id),
                    None)

    def label_of(self, workflow: str, activity_id: str) -> str:
        record = self.record(workflow, activity_id)
        return record.label if record else f"{workflow}:{activity_id}"

    def labels(self) -> Counter[tuple[str, str]]:
        """(workflow, label) of every scheduled activity, with multiplicity."""
        return Counter((r.workflow, r.label) for r in self.activities.values())

    def run_twice(self) -> list[str]:
        """Finished work done twice: an activity completed more than once, one closed other than by completing
        (the workflow saw it fail), or a label scheduled more than once (the workflow started the work anew)."""
        out = [f"{r.workflow}/{r.label}: completed {len(r.completed)}x, {r.closed_otherwise or ''}"
               for r in self.activities.values() if len(r.completed) != 1 or r.closed_otherwise]
        out += [f"{wf}/{label}: scheduled {n}x" for (wf, label), n in self.labels().items() if n > 1]
        return out

    def retried(self) -> list[str]:
        return sorted(f"{r.label}#{r.attempt}" for r in self.activities.values() if r.attempt > 1)


def failure_text(failure: Any) -> str:
    return (failure.message or failure.cause.message or "")[:100]


@dataclass
class Pending:
    workflow: str
    activity_id: str
    state: str
    attempt: int
    identity: str
    last_seen: float  # latest of last started / last heartbeat (epoch seconds)
    last_failure: str = ""  # why the previous attempt ended


async def pending_activities(client: Client, workflow_ids: dict[str, str]) -> list[Pending]:
    """The run's pending activities right now (a workflow not started yet has none)."""
    out: list[Pending] = []
    for name, wf_id in workflow_ids.items():
        try:
            desc = await client.get_workflow_handle(wf_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        for p in desc.raw_description.pending_activities:
            seen = max(p.last_started_time.ToMicroseconds(), p.last_heartbeat_time.ToMicroseconds()) / 1e6
            out.append(Pending(name, p.activity_id, PendingActivityState.Name(p.state).removeprefix(
                "PENDING_ACTIVITY_STATE_"), p.attempt, p.last_worker_identity, seen, failure_text(p.last_failure)))
    return out


# Why an attempt ended (the server's last failure of the activity), in short.
ATTEMPT_ENDED = {"Worker is shutting down and this activity did not complete in time": "worker shutdown",
                 "activity Heartbeat timeout": "heartbeat timeout",
                 "activity StartToClose timeout": "start-to-close timeout"}


# -- the emulator: what is in flight, requests as work ---------------------------------------------
def in_flight(emu: Any) -> dict[str, int]:
    """Every remote thing the v1 emulator still sees polled: deployments and unfinished jobs → poll counters."""
    out = {f"dep:{k}": d["step"] for k, d in emu.deployments.items() if d["state"] != "ready"}
    out.update({j.id: j.step for j in emu.jobs.values() if j.state.get("status") not in ("completed", "cancelled")})
    return out


_CLASSES = [
    ("cancel", "POST", r".*/cancel"),
    ("create", "POST", r"/v1/(evaluation/jobs|customization/jobs|customization/configs|deployment/model-deployments)"),
    ("upload", "POST", r"/v1/(hf/.*|datasets|models|namespaces|datastore/namespaces)"),
    ("lookup", "GET", r"/v1/(evaluation/jobs|customization/jobs|customization/configs/.+|datasets/.+|namespaces/.+)"),
    ("poll", "GET", r".*"),
    ("delete", "DELETE", r".*"),
]


def request_class(method: str, path: str) -> str:
    """create / cancel / upload (datasets, entities) / lookup (find by name: a retry re-attaching) / poll."""
    return next((name for name, m, pattern in _CLASSES if m == method and re.fullmatch(pattern, path)), "other")


def request_classes(calls: list[tuple[str, str]]) -> Counter[str]:
    return Counter(request_class(m, p) for m, p in calls)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
