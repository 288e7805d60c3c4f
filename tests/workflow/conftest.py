"""Workflow tests against a REAL Temporal dev server (``temporal_env`` in tests/conftest.py), with fake activities.

Settings, workers and polling helpers: tests/helpers/temporal_workers.py and tests/helpers/polling.py.
"""

from __future__ import annotations

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client
