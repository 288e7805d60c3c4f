"""Typed progress reports: what platforms pass to their ``ProgressFn`` and activities heartbeat.

Every platform builds its reports with these models, and the starter's live view
(``starter/live_progress.py``) reads heartbeats back through them, so a field one platform reports
(NeMo's evaluation percentage, the training loss) shows up live for all. Reports travel as plain JSON
dicts (:meth:`ProgressReport.details`): extra, platform-specific fields are kept as they are.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

R = TypeVar("R", bound="ProgressReport")
Number = int | float  # kept as reported: a count stays an int in the heartbeat


class ProgressReport(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str | None = None  # the platform's own job state ("running", "pending", ...)
    progress: Number | None = None  # percent done (0..100) when the platform reports only a percentage

    def details(self) -> dict[str, Any]:
        """The heartbeat form: the fields that were set (an explicit None included), JSON-able."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def read(cls: type[R], details: dict[str, Any]) -> R | None:
        """A heartbeat's details as this report; None when they do not fit (then nothing is shown)."""
        try:
            return cls.model_validate(details)
        except ValidationError:
            return None


def _percent(done: Number | None, total: Number | None) -> float | None:
    if done is not None and total is not None and total > 0:
        return round(100.0 * min(done, total) / total, 1)
    return None


class EvaluationProgress(ProgressReport):
    eval_type: str | None = None
    done: Number | None = None  # records answered
    total: Number | None = None
    errors: Number | None = None

    def percent_done(self) -> float | None:
        counted = _percent(self.done, self.total)
        return counted if counted is not None else self.progress


class TrainingProgress(ProgressReport):
    phase: str | None = None  # loading | training | finished
    step: Number | None = None
    total_steps: Number | None = None
    steps_completed: Number | None = None  # remote trainers' name for step
    epoch: Number | None = None  # fractional
    epochs_completed: Number | None = None
    loss: Number | None = None
    checkpoint: str | None = None

    def percent_done(self) -> float | None:
        counted = _percent(self.step, self.total_steps)
        return counted if counted is not None else self.progress

    def steps(self) -> int | None:
        value = self.steps_completed if self.steps_completed is not None else self.step
        return None if value is None else int(value)

    def epochs(self) -> int | None:
        value = self.epochs_completed if self.epochs_completed is not None else self.epoch
        return None if value is None else int(value)


class DeploymentProgress(ProgressReport):
    stage: str | None = None  # model_server_starting, model_server_loading, redeploying, ...
    deployment: str | None = None
