"""The shapes ids may take in requests, as pydantic types (bodies, query and path parameters).

Ids end up in Temporal workflow and schedule ids, search attribute queries, file names and log
lines: only letters, digits and a few separators, never a path. ``config_name`` must also name one
of the configs that exist.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from flywheel.config import available_config_names

SCHEDULE_PREFIX = "flywheel-schedule-"

WORKLOAD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
CLIENT_ID_PATTERN = WORKLOAD_ID_PATTERN
# Candidate names: NIM-style "meta/llama-3.2-1b-instruct", customised "customized-x@<job>", tags "x:latest".
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,255}$"
# 24 hex (API-started) or "sched-<timestamp>" (schedule-started) job ids.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
SCHEDULE_ID_PATTERN = rf"^{SCHEDULE_PREFIX}[A-Za-z0-9_.-]{{1,260}}$"
CONFIG_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


def _existing_config(name: str) -> str:
    available = available_config_names()
    if name not in available:
        raise ValueError(f"no config named {name!r} (available: {', '.join(available)})")
    return name


WorkloadId = Annotated[str, StringConstraints(pattern=WORKLOAD_ID_PATTERN)]
ClientId = Annotated[str, StringConstraints(pattern=CLIENT_ID_PATTERN)]
ModelName = Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN)]
JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
ScheduleId = Annotated[str, StringConstraints(pattern=SCHEDULE_ID_PATTERN)]
ConfigName = Annotated[str, StringConstraints(pattern=CONFIG_NAME_PATTERN), AfterValidator(_existing_config)]


def _path(pattern: str, description: str) -> object:
    from fastapi import Path

    return Path(pattern=pattern, description=description)


def _query(pattern: str, description: str) -> object:
    from fastapi import Query

    return Query(pattern=pattern, description=description)


# Path and query parameters of the API (FastAPI validates them with the same patterns: 422 otherwise).
JobIdPath = Annotated[str, _path(JOB_ID_PATTERN, "Job id.")]
ScheduleIdPath = Annotated[str, _path(SCHEDULE_ID_PATTERN, f"Schedule id (always starts with {SCHEDULE_PREFIX}).")]
WorkloadIdQuery = Annotated[str | None, _query(WORKLOAD_ID_PATTERN, "Only this workload.")]
ClientIdQuery = Annotated[str | None, _query(CLIENT_ID_PATTERN, "Only this client.")]
