"""From a job request to a run's identity and inputs: job and workflow ids, search attributes, the settings
and the data split a job runs with (shared by the job service and the schedules)."""

from __future__ import annotations

import secrets
from typing import Any

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from flywheel.config import ConfigError, DataSplitConfig, Settings, format_validation_error, load_settings
from flywheel.jobdoc import JobDocument, Stage
from flywheel.vocabulary import JobType
from starter.job_errors import InvalidJobRequestError
from workflows import models
from workflows.search_attributes import KEY_CLIENT_ID, KEY_JOB_TYPE, KEY_STAGE, KEY_WORKLOAD_ID

JOB_TYPES = tuple(JobType)


def new_job_id() -> str:
    """24 lowercase hex characters, the shape of the blueprint's Mongo ObjectId."""
    return secrets.token_hex(12)


def is_job_id(value: str) -> bool:
    return len(value) == 24 and all(c in "0123456789abcdef" for c in value)


def workflow_id_of(doc: JobDocument) -> str:
    return doc.workflow_id or models.flywheel_workflow_id(doc.workload_id, doc.client_id, doc.id)


def job_search_attributes(workload_id: str, client_id: str, job_type: str, stage: Stage) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(KEY_WORKLOAD_ID, workload_id),
            SearchAttributePair(KEY_CLIENT_ID, client_id),
            SearchAttributePair(KEY_STAGE, stage.value),
            SearchAttributePair(KEY_JOB_TYPE, job_type),
        ]
    )


def resolve_data_split_config(settings: Settings, override: DataSplitConfig | dict[str, Any] | None,
                              ) -> DataSplitConfig | None:
    """A per-job override merged over the configured split settings (fields not given keep config values)."""
    if override is None:
        return None
    given = override.model_dump(exclude_unset=True) if isinstance(override, DataSplitConfig) else dict(override)
    merged = {**settings.data_split_config.model_dump(), **given}
    try:
        return DataSplitConfig.model_validate(merged)
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        detail = format_validation_error(exc) if hasattr(exc, "errors") else str(exc)
        raise InvalidJobRequestError(f"data_split_config: {detail}") from exc


def settings_for(settings: Settings, config_name: str | None) -> Settings:
    """The settings a job runs with: the served ones, or the named config when one is asked for."""
    if not config_name or config_name == settings.config_name:
        return settings
    try:
        return load_settings(config_name=config_name)
    except ConfigError as exc:
        raise InvalidJobRequestError(str(exc)) from exc
