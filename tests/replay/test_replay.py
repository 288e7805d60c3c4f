"""Every recorded history (tests/replay/histories/<release>/<stage>/<workflow id>.json) replays against the current
workflow code. A change to workflow code that would break a run parked at any recorded stage — one more
activity call, a reordered step, a removed timer — raises NondeterminismError here; gate such a change
with ``workflow.patched`` (docs/versioning.md). Record a release's corpus with
scripts/record_replay_histories.py. No server needed: the Replayer runs the workflows in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.candidate_run import CandidateRun
from workflows.flywheel_run import FlywheelRun
from workflows.models import CANDIDATE_WORKFLOW, CandidateInput, CandidateResult

HISTORIES = Path(__file__).parent / "histories"
STAGES = {"preparing", "evaluating", "training", "awaiting_review", "cancelled"}
FILES = sorted(HISTORIES.glob("*/*/*.json"))


def _history(path: Path) -> WorkflowHistory:
    text = path.read_text()
    first = json.loads(text)["events"][0]
    workflow_id = path.stem  # the recorded workflow's own id: child workflow ids are checked on replay
    assert first["eventType"] in ("EVENT_TYPE_WORKFLOW_EXECUTION_STARTED", "WorkflowExecutionStarted"), path
    return WorkflowHistory.from_json(workflow_id, text)


def test_corpus_covers_every_stage_of_every_release() -> None:
    releases = {p.parent.parent.name for p in FILES}
    assert releases, f"no recorded histories under {HISTORIES}"
    for release in releases:
        stages = {p.parent.name for p in FILES if p.parent.parent.name == release}
        assert stages == STAGES, f"release {release}: stages {sorted(stages)}"
        assert any("-cand-" in p.stem for p in FILES if p.parent.parent.name == release), release


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(HISTORIES)) for p in FILES])
async def test_history_replays_against_current_code(path: Path) -> None:
    replayer = Replayer(workflows=[FlywheelRun, CandidateRun], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(_history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.relative_to(HISTORIES)}: {result.replay_failure!r}"


@workflow.defn(name=CANDIDATE_WORKFLOW, sandboxed=False)
class CandidateRunWithAnExtraStep(CandidateRun):
    """What an unpatched change looks like: one more command (a timer) before the candidate's first step."""

    @workflow.run
    async def run(self, inp: CandidateInput) -> CandidateResult:
        await workflow.sleep(1)
        return await super().run(inp)


async def test_an_unpatched_change_fails_the_replay() -> None:
    """The corpus catches the finding it exists for: a parked run replayed against a build with one more step."""
    paths = [p for p in FILES if "-cand-" in p.stem and p.parent.name == "awaiting_review"]
    assert paths
    replayer = Replayer(workflows=[FlywheelRun, CandidateRunWithAnExtraStep], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(_history(paths[0]), raise_on_replay_failure=False)
    assert result.replay_failure is not None and "Nondeterminism" in str(result.replay_failure)
