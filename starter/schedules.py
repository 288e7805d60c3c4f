"""Temporal Schedules: one per (workload_id, client_id), cron spec, overlap policy ALLOW_ALL.

Why ALLOW_ALL: a run ends its work (deployments torn down, results stored) before it waits up to a week
for review, and every run's names derive from its own run key, so runs of one workload never share or
block anything. With SKIP a daily schedule ran about once per review; now a scheduled run never waits
behind another run's review (docs/versioning.md, "Review and schedules").

Each scheduled run starts FlywheelRun with an empty job id; Temporal names the run
``flywheel-{workload}-{client}-sched-<timestamp>`` and FlywheelRun derives the job id
(``sched-<timestamp>``) from it, so the job document is findable under the usual id format.
The action carries a settings snapshot taken when the schedule is created.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)

from flywheel.config import DataSplitConfig, Settings
from flywheel.jobdoc import Stage
from starter.job_requests import job_search_attributes
from workflows.models import (
    FLYWHEEL_WORKFLOW,
    FlywheelJobInput,
    schedule_id,
    schedule_workflow_id_prefix,
)


@dataclass
class ScheduleInfo:
    schedule_id: str
    workload_id: str | None
    client_id: str | None
    cron: list[str]
    paused: bool
    note: str | None = None
    recent_runs: list[str] | None = None
    next_runs: list[datetime] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule_id": self.schedule_id, "workload_id": self.workload_id, "client_id": self.client_id,
            "cron": self.cron, "paused": self.paused, "note": self.note,
            "recent_runs": self.recent_runs or [], "next_runs": [t.isoformat() for t in self.next_runs or []],
        }


def to_json(value: Any) -> Any:
    """ScheduleInfo (or a list of them) as JSON-ready dicts; anything else unchanged (API and CLI output)."""
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value.to_dict() if isinstance(value, ScheduleInfo) else value


# Runs of one schedule never block each other (see the module docstring).
OVERLAP = ScheduleOverlapPolicy.ALLOW_ALL


async def create_schedule(
    client: Client,
    settings: Settings,
    workload_id: str,
    client_id: str,
    cron: str,
    *,
    data_split_config: DataSplitConfig | None = None,
    paused: bool = False,
    job_type: str = "llm_job",
    note: str | None = None,
    requested_by: str | None = None,
) -> str:
    """Create the schedule (id ``flywheel-schedule-{workload}-{client}``); returns its id.

    Raises ``temporalio.client.ScheduleAlreadyRunningError`` if it already exists.
    """
    sid = schedule_id(workload_id, client_id)
    job = FlywheelJobInput(job_id="", workload_id=workload_id, client_id=client_id, settings=settings,
                           data_split_config=data_split_config, job_type=job_type,
                           config_name=settings.config_name, timeouts=settings.temporal.activity_timeouts,
                           requested_by=requested_by)
    action = ScheduleActionStartWorkflow(
        FLYWHEEL_WORKFLOW,
        job,
        id=schedule_workflow_id_prefix(workload_id, client_id),
        task_queue=settings.temporal.task_queues.orchestrator,
        typed_search_attributes=job_search_attributes(workload_id, client_id, job_type, Stage.pending),
    )
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(cron_expressions=[cron]),
        policy=SchedulePolicy(overlap=OVERLAP),
        state=ScheduleState(paused=paused, note=note or f"flywheel {workload_id}/{client_id}"),
    )
    await client.create_schedule(sid, schedule, memo={"workload_id": workload_id, "client_id": client_id, "cron": cron})
    return sid


async def describe_schedule(client: Client, sid: str) -> ScheduleInfo:
    desc = await client.get_schedule_handle(sid).describe()
    memo = await desc.memo()
    spec = desc.schedule.spec
    recent = [getattr(a.action, "workflow_id", "") for a in desc.info.recent_actions]
    return ScheduleInfo(
        schedule_id=sid, workload_id=memo.get("workload_id"), client_id=memo.get("client_id"),
        # The server stores cron as calendar specs; the memo keeps the cron string as given.
        cron=[memo["cron"]] if memo.get("cron") else list(spec.cron_expressions),
        paused=desc.schedule.state.paused, note=desc.schedule.state.note,
        recent_runs=recent, next_runs=list(desc.info.next_action_times),
    )


async def list_schedules(client: Client, workload_id: str | None = None) -> list[ScheduleInfo]:
    """Flywheel schedules (optionally for one workload). Visibility is eventually consistent."""
    prefix = "flywheel-schedule-"
    out: list[ScheduleInfo] = []
    async for entry in await client.list_schedules():
        if not entry.id.startswith(prefix):
            continue
        memo = await entry.memo()
        if workload_id is not None and memo.get("workload_id") != workload_id:
            continue
        info = entry.schedule
        out.append(ScheduleInfo(
            schedule_id=entry.id, workload_id=memo.get("workload_id"), client_id=memo.get("client_id"),
            cron=[memo["cron"]] if memo.get("cron") else [], paused=bool(info and info.state.paused),
            note=info.state.note if info else None,
        ))
    return sorted(out, key=lambda s: s.schedule_id)


async def pause_schedule(client: Client, sid: str, note: str | None = None) -> None:
    await client.get_schedule_handle(sid).pause(note=note)


async def unpause_schedule(client: Client, sid: str, note: str | None = None) -> None:
    await client.get_schedule_handle(sid).unpause(note=note)


async def trigger_schedule(client: Client, sid: str, *, wait_s: float = 5.0) -> str | None:
    """Start a run now; returns the started run's workflow id, or None if none showed within ``wait_s``."""
    handle = client.get_schedule_handle(sid)
    before = (await handle.describe()).info.num_actions
    await handle.trigger(overlap=OVERLAP)
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        desc = await handle.describe()
        if desc.info.num_actions > before and desc.info.recent_actions:
            return getattr(desc.info.recent_actions[-1].action, "workflow_id", None)
        if asyncio.get_running_loop().time() > deadline:
            return None
        await asyncio.sleep(0.2)


async def delete_schedule(client: Client, sid: str) -> None:
    await client.get_schedule_handle(sid).delete()
