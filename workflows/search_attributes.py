"""The custom search attributes a flywheel run carries (all Keyword): the one definition the workflow
(upserts), the job service (sets them at start), schedules, the dev server and the tests use."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

KEY_WORKLOAD_ID = SearchAttributeKey.for_keyword("WorkloadId")
KEY_CLIENT_ID = SearchAttributeKey.for_keyword("ClientId")
KEY_STAGE = SearchAttributeKey.for_keyword("FlywheelStage")
KEY_JOB_TYPE = SearchAttributeKey.for_keyword("JobType")

SEARCH_ATTRIBUTE_KEYS = [KEY_WORKLOAD_ID, KEY_CLIENT_ID, KEY_STAGE, KEY_JOB_TYPE]
SEARCH_ATTRIBUTE_NAMES = tuple(key.name for key in SEARCH_ATTRIBUTE_KEYS)


def dev_server_args() -> list[str]:
    """``temporal server start-dev`` arguments that register every attribute."""
    out: list[str] = []
    for name in SEARCH_ATTRIBUTE_NAMES:
        out += ["--search-attribute", f"{name}=Keyword"]
    return out
