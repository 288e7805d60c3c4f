"""Quick activities heartbeat on a timer, so a worker that died during one is noticed within
``short_heartbeat_s`` (the chaos test measured 300 s — start-to-close — without it)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.common import heartbeat_on_a_timer
from activities.persistence import aggregate_results, log_mlflow, persist_job, write_report
from activities.promotion import register_champion
from flywheel.activity_timeouts import ActivityTimeouts
from workflows.common import short_options


async def test_the_body_runs_while_heartbeats_go_out():
    beats: list[tuple] = []

    @heartbeat_on_a_timer
    async def slow(x: int) -> int:
        await asyncio.sleep(0.7)
        return x + 1

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=0.8))  # one beat per 0.2 s
    env.on_heartbeat = lambda *details: beats.append(details)
    assert await env.run(slow, 41) == 42
    assert len(beats) >= 3


def test_quick_activities_heartbeat_and_their_options_say_so():
    for fn in (persist_job, aggregate_results, write_report, log_mlflow, register_champion):
        assert hasattr(fn, "__wrapped__"), fn  # wrapped by heartbeat_on_a_timer
        assert activity._Definition.from_callable(fn) is not None  # still a registrable activity
    assert short_options(ActivityTimeouts(), "q")["heartbeat_timeout"] == timedelta(seconds=30)
    assert "heartbeat_timeout" not in short_options(ActivityTimeouts(short_heartbeat_s=0), "q")
    # An activity that reports its own progress keeps its own heartbeat timeout.
    own = short_options(ActivityTimeouts(), "q", heartbeat_timeout=timedelta(seconds=60))
    assert own["heartbeat_timeout"] == timedelta(seconds=60)
