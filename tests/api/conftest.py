"""API tests run against a REAL Temporal dev server (``temporal_env``, tests/conftest.py) and a stand-in
FlywheelRun workflow (tests/api/fake_flywheel.py, candidates ``FAKE_CANDIDATES``)."""

from __future__ import annotations

import uuid

import pytest
from temporalio.worker import Worker

from flywheel.config import load_settings
from starter.api import create_app
from starter.auth import KeyStore
from starter.auth.authenticator import default_keys_file
from tests.api.fake_flywheel import FAKE_CANDIDATES, FakeFlywheelRun
from tests.helpers.api import NEVER_ISSUED_KEY, ROLES, authed_client


@pytest.fixture(scope="session")
def task_queue() -> str:
    return f"api-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
async def fake_worker(temporal_env, task_queue):
    async with Worker(temporal_env.client, task_queue=task_queue, workflows=[FakeFlywheelRun]):
        yield


@pytest.fixture(scope="session")
def api_settings(tmp_path_factory, task_queue):
    data_dir = tmp_path_factory.mktemp("api-data")
    return load_settings(
        environ={},
        overrides={
            "platform": {"data_dir": str(data_dir)},
            "temporal": {"task_queues": {"orchestrator": task_queue}},
            "nims": [{"model_name": name} for name in FAKE_CANDIDATES],
        },
    )


@pytest.fixture(scope="session")
async def app(api_settings, temporal_env, fake_worker):
    application = create_app(api_settings, temporal_client=temporal_env.client, max_log_batch_records=50)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def role_keys(api_settings) -> dict[str, str]:
    """One API key per role (and "none": a well-formed key that was never issued)."""
    store = KeyStore(default_keys_file(api_settings))
    keys = {role: store.create(f"test-{role}", [role])[0] for role in ROLES}
    keys["none"] = NEVER_ISSUED_KEY
    return keys


@pytest.fixture(scope="session")
async def api(app, role_keys):
    """The API as an admin (the tests of behaviour; test_api_security.py checks who may do what)."""
    async with authed_client(app, role_keys["admin"]) as client:
        yield client


@pytest.fixture
def jobstore(app):
    return app.state.flywheel.jobstore
